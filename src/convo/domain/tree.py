"""The message tree of a thread: every edit or regeneration is a sibling under the same parent, and
the thread's active branch is the path from a root to its current leaf."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from convo.db.models import Message


@dataclass(frozen=True, slots=True)
class Node:
    id: int
    parent_id: int | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Version:
    index: int  # 1-based, oldest first
    count: int
    sibling_ids: list[int]


class Tree:
    def __init__(self, nodes: Iterable[Node]) -> None:
        self.nodes = {n.id: n for n in nodes}
        self.children: dict[int | None, list[int]] = {}
        for node in sorted(self.nodes.values(), key=lambda n: (n.created_at, n.id)):
            self.children.setdefault(node.parent_id, []).append(node.id)

    def add(self, node: Node) -> None:
        """A node created after the tree was loaded (it is the newest of its siblings)."""
        self.nodes[node.id] = node
        self.children.setdefault(node.parent_id, []).append(node.id)

    def __contains__(self, message_id: object) -> bool:
        return message_id in self.nodes

    def path_to(self, message_id: int | None) -> list[int]:
        """Ids from the root down to `message_id`."""
        path: list[int] = []
        while message_id is not None and message_id in self.nodes:
            path.append(message_id)
            message_id = self.nodes[message_id].parent_id
        path.reverse()
        return path

    def version(self, message_id: int) -> Version:
        siblings = self.children[self.nodes[message_id].parent_id]
        return Version(siblings.index(message_id) + 1, len(siblings), list(siblings))

    def newest_leaf(self, message_id: int) -> int:
        """The most recently created leaf at or below `message_id`: where the user last worked."""
        best = message_id
        best_key = (self.nodes[message_id].created_at, message_id)
        stack = [message_id]
        while stack:
            current = stack.pop()
            kids = self.children.get(current)
            if not kids:
                key = (self.nodes[current].created_at, current)
                if key > best_key or best == message_id:
                    best, best_key = current, key
                continue
            stack.extend(kids)
        return best

    def default_leaf(self) -> int | None:
        roots = self.children.get(None)
        return self.newest_leaf(roots[-1]) if roots else None


async def load_tree(session: AsyncSession, thread_id: int) -> Tree:
    rows = await session.execute(
        select(Message.id, Message.parent_id, Message.created_at).where(Message.thread_id == thread_id)
    )
    return Tree(Node(*row) for row in rows)
