"""Versions of a turn: listing them, comparing two, correcting one by hand, branching into a new thread.

Generating a new version (edit with a fresh answer, regenerate) lives in chat.py with the runs.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from sqlalchemy import select

from convo.db.models import Message, Thread, User, utcnow
from convo.db.session import Database
from convo.domain.chat import Chat, Started
from convo.domain.threads import (
    MessageView,
    ThreadView,
    active_branch,
    message_view,
    owned_message,
    version_views,
)
from convo.domain.tree import load_tree
from convo.errors import Conflict, InvalidInput

# Han, kana, and other scripts written without spaces: compared a character at a time.
_UNSPACED = (
    "\u2e80-\u2fdf\u3000-\u303f\u3040-\u309f\u30a0-\u30ff\u3100-\u312f\u3190-\u31ff"
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef\u0e00-\u0e7f"
)
_TOKEN = re.compile(rf"[{_UNSPACED}]|[^\s{_UNSPACED}\w]|[^\W{_UNSPACED}]+|\s+")


def tokenize(text: str) -> list[str]:
    """Words, runs of whitespace, single punctuation marks, and single CJK/Thai characters.
    Joined back together they give the text unchanged."""
    return _TOKEN.findall(text)


@dataclass(frozen=True)
class Change:
    op: str  # equal | insert | delete
    text: str


@dataclass(frozen=True)
class Diff:
    from_id: int
    to_id: int
    unified: str
    changes: list[Change]


def word_changes(old: str, new: str) -> list[Change]:
    a, b = tokenize(old), tokenize(new)
    changes: list[Change] = []

    def add(op: str, text: str) -> None:
        if not text:
            return
        if changes and changes[-1].op == op:
            changes[-1] = Change(op, changes[-1].text + text)
        else:
            changes.append(Change(op, text))

    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            add("equal", "".join(a[i1:i2]))
        else:
            add("delete", "".join(a[i1:i2]))
            add("insert", "".join(b[j1:j2]))
    return changes


def unified_diff(old: str, new: str, old_name: str, new_name: str) -> str:
    lines = difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True), old_name, new_name, lineterm=""
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


class Versions:
    def __init__(self, db: Database, chat: Chat) -> None:
        self.db = db
        self.chat = chat

    async def edit(self, user: User, message_id: int, content: str, *, regenerate: bool) -> Started | MessageView:
        """A new version of a message. A question is answered afresh unless `regenerate` is false;
        an answer edited by hand is saved as it is."""
        async with self.db.read() as session:
            original = await owned_message(session, user, message_id)
        if original.role == "user" and regenerate:
            return await self.chat.edit(user, message_id, content)
        return await self.correct(user, message_id, content)

    async def list(self, user: User, message_id: int) -> list[MessageView]:
        async with self.db.read() as session:
            message = await owned_message(session, user, message_id)
            tree = await load_tree(session, message.thread_id)
            ids = tree.version(message.id).sibling_ids
            rows = {m.id: m for m in await session.scalars(select(Message).where(Message.id.in_(ids)))}
            return version_views(tree, [rows[i] for i in ids])

    async def diff(self, user: User, message_id: int, against_id: int) -> Diff:
        """How `message_id` changed into `against_id` (both the caller's)."""
        async with self.db.read() as session:
            old = await owned_message(session, user, message_id)
            new = await owned_message(session, user, against_id)
        return Diff(
            from_id=old.id,
            to_id=new.id,
            unified=unified_diff(old.content, new.content, f"message {old.id}", f"message {new.id}"),
            changes=word_changes(old.content, new.content),
        )

    async def correct(self, user: User, message_id: int, content: str) -> MessageView:
        """A hand-written version of a turn, beside the original, with no generation: a corrected
        answer, or a reworded question that is not sent yet."""
        if not content.strip():
            raise InvalidInput("The message is empty.", code="empty_message")
        async with self.db.write() as session:
            original = await owned_message(session, user, message_id)
            if original.status == "streaming":
                raise Conflict("This answer is still being written; cancel it first.", code="message_streaming")
            version = Message(
                thread_id=original.thread_id, user_id=user.id, parent_id=original.parent_id, role=original.role,
                content=content, status="complete", model=original.model, temperature=original.temperature,
                meta={"edited_from": original.id},
            )
            session.add(version)
            await session.flush()
            thread = await session.get(Thread, original.thread_id)
            assert thread is not None
            thread.current_leaf_id = version.id
            thread.updated_at = utcnow()
            return await message_view(session, version)

    async def branch(self, user: User, message_id: int) -> ThreadView:
        """A new thread holding a copy of the conversation from the root down to `message_id`."""
        async with self.db.write() as session:
            last = await owned_message(session, user, message_id)
            source = await session.get(Thread, last.thread_id)
            assert source is not None
            tree = await load_tree(session, source.id)
            ids = tree.path_to(last.id)
            rows = {m.id: m for m in await session.scalars(select(Message).where(Message.id.in_(ids)))}
            if any(rows[i].status == "streaming" for i in ids):
                raise Conflict("Wait for the answer to finish before branching from it.", code="message_streaming")
            copy = Thread(
                user_id=user.id, title=f"{source.title or 'Untitled'} (branch)"[:300], model=source.model,
                temperature=source.temperature, system_prompt=source.system_prompt,
            )
            session.add(copy)
            await session.flush()
            parent_id = None
            for i in ids:
                m = rows[i]
                clone = Message(
                    thread_id=copy.id, user_id=user.id, parent_id=parent_id, role=m.role, content=m.content,
                    status=m.status, model=m.model, temperature=m.temperature,
                    meta={**(m.meta or {}), "branched_from": m.id}, event_seq=m.event_seq, created_at=m.created_at,
                )
                session.add(clone)
                await session.flush()
                parent_id = clone.id
            copy.current_leaf_id = parent_id
            return ThreadView(copy, await active_branch(session, copy))
