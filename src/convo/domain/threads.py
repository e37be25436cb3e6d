"""Threads: create, list, read the active branch, change settings, delete."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from convo.db.models import Message, Thread, User, utcnow
from convo.db.session import Database
from convo.domain.tree import Tree, Version, load_tree
from convo.errors import InvalidInput, NotFound
from convo.llm.registry import Registry
from convo.runtime.cancel import CancelBus

_UNSET: Any = object()


@dataclass
class MessageView:
    message: Message
    version: Version


@dataclass
class ThreadView:
    thread: Thread
    messages: list[MessageView]


async def owned_thread(session: AsyncSession, user: User, thread_id: int) -> Thread:
    """The thread if it is the user's; a missing and a foreign id look the same."""
    thread = await session.get(Thread, thread_id)
    if thread is None or thread.user_id != user.id:
        raise NotFound("No such thread.")
    return thread


async def owned_message(session: AsyncSession, user: User, message_id: int) -> Message:
    message = await session.get(Message, message_id)
    if message is None or message.user_id != user.id:
        raise NotFound("No such message.")
    return message


def version_views(tree: Tree, messages: list[Message]) -> list[MessageView]:
    return [MessageView(m, tree.version(m.id)) for m in messages]


async def message_view(session: AsyncSession, message: Message) -> MessageView:
    tree = await load_tree(session, message.thread_id)
    return MessageView(message, tree.version(message.id))


async def active_branch(session: AsyncSession, thread: Thread) -> list[MessageView]:
    tree = await load_tree(session, thread.id)
    leaf = thread.current_leaf_id if thread.current_leaf_id in tree else tree.default_leaf()
    ids = tree.path_to(leaf)
    if not ids:
        return []
    rows = await session.scalars(select(Message).where(Message.id.in_(ids)))
    by_id = {m.id: m for m in rows}
    return version_views(tree, [by_id[i] for i in ids])


def _encode_cursor(updated_at: datetime, thread_id: int) -> str:
    raw = json.dumps([updated_at.isoformat(), thread_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        stamp, thread_id = json.loads(raw)
        moment, thread_id = datetime.fromisoformat(stamp), int(thread_id)
    except (ValueError, TypeError) as exc:
        raise InvalidInput("Invalid cursor.", code="invalid_cursor") from exc
    if moment.tzinfo is None or not 0 <= thread_id < 2**63:  # not one this server wrote
        raise InvalidInput("Invalid cursor.", code="invalid_cursor")
    return moment, thread_id


class Threads:
    def __init__(self, db: Database, registry: Registry, cancels: CancelBus) -> None:
        self.db = db
        self.registry = registry
        self.cancels = cancels

    async def create(
        self,
        user: User,
        *,
        title: str | None = None,
        model: str | None = None,
        temperature: float | None = None,
        system_prompt: str | None = None,
    ) -> Thread:
        if model is not None:
            model = (await self.registry.resolve(model)).model.id
        async with self.db.write() as session:
            thread = Thread(
                user_id=user.id,
                title=(title or "").strip(),
                model=model,
                temperature=temperature,
                system_prompt=system_prompt,
            )
            session.add(thread)
        return thread

    async def list(self, user: User, *, limit: int, cursor: str | None) -> tuple[list[Thread], str | None]:
        query = select(Thread).where(Thread.user_id == user.id)
        if cursor:
            stamp, last_id = _decode_cursor(cursor)
            query = query.where(
                or_(Thread.updated_at < stamp, and_(Thread.updated_at == stamp, Thread.id < last_id))
            )
        query = query.order_by(Thread.updated_at.desc(), Thread.id.desc()).limit(limit + 1)
        async with self.db.read() as session:
            threads = list(await session.scalars(query))
        more = len(threads) > limit
        threads = threads[:limit]
        return threads, _encode_cursor(threads[-1].updated_at, threads[-1].id) if more else None

    async def get(self, user: User, thread_id: int) -> ThreadView:
        async with self.db.read() as session:
            thread = await owned_thread(session, user, thread_id)
            return ThreadView(thread, await active_branch(session, thread))

    async def update(
        self,
        user: User,
        thread_id: int,
        *,
        title: Any = _UNSET,
        model: Any = _UNSET,
        temperature: Any = _UNSET,
        system_prompt: Any = _UNSET,
    ) -> ThreadView:
        if model is not _UNSET and model is not None:
            model = (await self.registry.resolve(model)).model.id
        async with self.db.write() as session:
            thread = await owned_thread(session, user, thread_id)
            if title is not _UNSET:
                thread.title = (title or "").strip()
            if model is not _UNSET:
                thread.model = model
            if temperature is not _UNSET:
                thread.temperature = temperature
            if system_prompt is not _UNSET:
                thread.system_prompt = system_prompt
            thread.updated_at = utcnow()
        return await self.get(user, thread_id)

    async def switch(self, user: User, thread_id: int, message_id: int) -> ThreadView:
        """Make the branch through `message_id` active, down to its newest leaf."""
        async with self.db.write() as session:
            thread = await owned_thread(session, user, thread_id)
            tree = await load_tree(session, thread.id)
            if message_id not in tree:
                raise NotFound("No such message in this thread.")
            thread.current_leaf_id = tree.newest_leaf(message_id)
        return await self.get(user, thread_id)

    async def delete(self, user: User, thread_id: int) -> None:
        """Delete a thread with every version of every message, then stop its answers still being
        written, on whichever process runs them (their followers get an end that says why)."""
        async with self.db.write() as session:
            thread = await owned_thread(session, user, thread_id)
            streaming = list(
                await session.scalars(
                    select(Message.id).where(Message.thread_id == thread.id, Message.status == "streaming")
                )
            )
            # One statement removes the whole tree, so no parent outlives its children mid-way.
            await session.execute(delete(Message).where(Message.thread_id == thread.id))
            await session.delete(thread)
        for message_id in streaming:
            await self.cancels.request(message_id)
