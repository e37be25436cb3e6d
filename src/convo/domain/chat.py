"""A user's turn and the answer it starts: send, regenerate, edit, cancel, and following an answer.

Starting an answer reads the conversation, builds the prompt (prompt.py), reserves its cost (billing.py)
and records both messages in one transaction, then hands the answer to a run (runs.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update

from convo.config import Settings
from convo.db.models import Message, Thread, User, utcnow
from convo.db.session import Database
from convo.domain import prompt as prompts
from convo.domain.billing import Billing
from convo.domain.retrieval.grounding import Grounder
from convo.domain.runs import Run, Runs
from convo.domain.stream_events import replay
from convo.domain.threads import MessageView, message_view, owned_message, owned_thread
from convo.domain.tree import Node, load_tree
from convo.errors import Conflict, InvalidInput, NotFound, TooManyRequests
from convo.llm.base import ChatMessage, ChatRequest
from convo.llm.registry import Registry
from convo.runtime.cancel import CancelBus
from convo.runtime.streams import PING, LogMissing, StreamLog, encode
from convo.schemas import message_json

TERMINAL = ("complete", "cancelled", "error", "interrupted")


@dataclass(frozen=True)
class Started:
    thread_id: int
    message_id: int


class Chat:
    def __init__(
        self, db: Database, registry: Registry, streams: StreamLog, cancels: CancelBus, settings: Settings,
        billing: Billing,
    ) -> None:
        self.db = db
        self.billing = billing
        self.registry = registry
        self.streams = streams
        self.cancels = cancels
        self.settings = settings
        self.runs = Runs(db, streams, cancels, settings, billing)
        self._following: dict[int, int] = {}  # open follower streams by user, in this process
        # Retrieval over the thread's files (set by Services); None answers from the conversation alone.
        self.grounder: Grounder | None = None

    async def start(self, *, sole_process: bool) -> None:
        await self.runs.start(sole_process=sole_process)

    async def stop(self) -> None:
        await self.runs.stop()

    # -- starting a turn -------------------------------------------------------------------------

    async def send(
        self,
        user: User,
        thread_id: int,
        *,
        content: str,
        parent_id: int | None = None,
        model: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        attachment_ids: list[int] | None = None,
    ) -> Started:
        """Add a user message under `parent_id` (default: the current leaf) and start its answer."""
        return await self._answer(
            user, thread_id, parent_id=parent_id, under_leaf=parent_id is None, content=content, model=model,
            temperature=temperature, max_tokens=max_tokens, attachment_ids=attachment_ids,
        )

    async def regenerate(
        self, user: User, message_id: int, *, model: str | None = None, temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> Started:
        """A new answer beside an answer (a sibling version), or under a user message that has none."""
        async with self.db.read() as session:
            message = await owned_message(session, user, message_id)
        if message.role == "assistant":
            if message.status == "streaming":
                raise Conflict("This answer is still being written; cancel it first.", code="message_streaming")
            question_id = message.parent_id
        else:
            question_id = message.id
        assert question_id is not None  # an answer always hangs under a user message
        return await self._answer(
            user, message.thread_id, question_id=question_id, model=model, temperature=temperature,
            max_tokens=max_tokens,
        )

    async def edit(self, user: User, message_id: int, content: str) -> Started:
        """A new version of a user message (a sibling under the same parent) and a fresh answer to it."""
        async with self.db.read() as session:
            message = await owned_message(session, user, message_id)
        if message.role != "user":
            raise InvalidInput("Only a user message is edited with a new answer.", code="not_a_user_message")
        return await self._answer(user, message.thread_id, parent_id=message.parent_id, content=content,
                                  attachment_ids=_named_files(message))

    async def _answer(
        self,
        user: User,
        thread_id: int,
        *,
        parent_id: int | None = None,
        under_leaf: bool = False,
        content: str | None = None,
        question_id: int | None = None,
        model: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        attachment_ids: list[int] | None = None,
    ) -> Started:
        """Start an answer: to a new user message `content` under `parent_id` (None: a new root; or the
        thread's current leaf with `under_leaf`), or to the existing user message `question_id`.

        Few statements, and fewer still inside the write transaction: on SQLite every writer waits
        for the one before it."""
        if content is not None and not content.strip():
            raise InvalidInput("The message is empty.", code="empty_message")
        async with self.db.read() as session:
            thread = await owned_thread(session, user, thread_id)
            tree = await load_tree(session, thread.id)
            if under_leaf:
                parent_id = thread.current_leaf_id if thread.current_leaf_id in tree else tree.default_leaf()
            if question_id is not None:
                history = await prompts.history(session, tree, question_id, expect=("user",))
                if attachment_ids is None:  # an answer again: grounded on the files the question named
                    attachment_ids = _named_files(await session.get(Message, question_id))
            else:
                # Under an answer; or under a question nobody answered yet (one edited without a new
                # answer, or an import's last turn): the new message follows it, and the answer
                # reads both, as it would two messages sent in a row.
                unanswered = parent_id is not None and not tree.children.get(parent_id)
                history = await prompts.history(session, tree, parent_id,
                                              expect=("assistant", "user") if unanswered else ("assistant",))
                history.append(ChatMessage("user", content or ""))
        resolved = await self.registry.resolve(model or thread.model)
        if temperature is None:
            temperature = thread.temperature
        prompt = [ChatMessage("system", thread.system_prompt)] if thread.system_prompt else []
        grounding = await prompts.ground(self.grounder, user, thread.id, resolved, prompt, history, max_tokens,
                                         attachment_ids)
        if grounding is not None:
            prompt.append(ChatMessage("system", grounding.prompt))
        citations = grounding.citations if grounding is not None else []
        fitted, prompt_tokens = await prompts.fit(resolved.provider, resolved.model, prompt + history, max_tokens)
        if self.billing.applies(user, resolved.model):
            # A reservation must not come out low: ask the provider when its local count is an estimate.
            counted = await resolved.provider.count_prompt(
                ChatRequest(resolved.model.upstream_id, fitted, temperature, max_tokens))
            prompt_tokens = counted if counted is not None else prompt_tokens

        now = utcnow()
        async with self.db.write() as session:
            # First, so that a refused answer (429, 402) writes nothing at all.
            await self._admit(session, user.id)
            reservation = await self.billing.reserve(session, user.id, resolved.model, prompt_tokens, max_tokens)
            if question_id is None:
                question = Message(
                    thread_id=thread.id, user_id=user.id, parent_id=parent_id, role="user", content=content,
                    status="complete", meta={"attachment_ids": attachment_ids} if attachment_ids else {},
                    created_at=now, updated_at=now,
                )
                session.add(question)
                await session.flush()
            else:
                question = await session.get(Message, question_id)
                if question is None:
                    raise NotFound("No such message.")
            answer = Message(
                thread_id=thread.id, user_id=user.id, parent_id=question.id, role="assistant", content="",
                status="streaming", model=resolved.model.id, temperature=temperature, heartbeat_at=now,
                reserved_usd=reservation.reserved_usd, event_seq=2 if citations else 1,
                meta={"citations": citations} if citations else {},
                created_at=now, updated_at=now,
            )
            session.add(answer)
            await session.flush()
            title = prompts.title_from(content) if content and not thread.title else thread.title
            moved = await session.execute(
                update(Thread)
                .where(Thread.id == thread.id, Thread.user_id == user.id)
                .values(current_leaf_id=answer.id, updated_at=now, title=title)
            )
            if moved.rowcount != 1:  # deleted meanwhile
                raise NotFound("No such thread.")

        if question_id is None:
            tree.add(Node(question.id, parent_id, now))
        tree.add(Node(answer.id, question.id, now))
        answer_json = message_json(MessageView(answer, tree.version(answer.id)))
        request = ChatRequest(resolved.model.upstream_id, fitted, temperature, reservation.max_tokens)
        await self.runs.launch(
            Run(answer.id, thread.id, user.id, resolved.provider, resolved.model, request, prompt_tokens, answer_json,
                citations=citations),
            {"thread_id": thread.id, "user_message": message_json(MessageView(question, tree.version(question.id))),
             "assistant_message": answer_json},
        )
        return Started(thread.id, answer.id)

    async def _admit(self, session: Any, user_id: int) -> None:
        """Inside the answer's write transaction: refuse an answer past the user's limit of answers being
        written at once, so one account cannot fill the server (or the embedded model's queue) alone.
        The user's row lock orders concurrent starts across processes (SQLite: the one writer)."""
        limit = self.settings.user_max_answers
        if not limit:
            return
        if not self.db.is_sqlite:
            await session.execute(select(User.id).where(User.id == user_id).with_for_update())
        running = await session.scalar(select(func.count(Message.id)).where(
            Message.status == "streaming", Message.user_id == user_id))
        if running >= limit:
            raise TooManyRequests(f"You have {running} answers being written at once, the most this server "
                                  "allows; wait for one to finish.", code="too_many_answers", retry_after=5)

    # -- cancel and follow -----------------------------------------------------------------------

    async def cancel(self, user: User, message_id: int) -> None:
        """Ask whichever process runs this answer to stop; the text so far is kept."""
        async with self.db.read() as session:
            message = await owned_message(session, user, message_id)
        if message.role != "assistant":
            raise InvalidInput("Only answers can be cancelled.", code="not_an_answer")
        if message.status == "streaming":
            async with self.db.write() as session:
                await session.execute(update(Message).where(
                    Message.id == message_id, Message.status == "streaming").values(cancel_requested_at=utcnow()))
            await self.cancels.request(message_id)

    async def open_stream(self, user: User, message_id: int, after: int) -> AsyncIterator[bytes]:
        """Check access now, then hand back the SSE bytes of this answer after event `after`."""
        async with self.db.read() as session:
            message = await owned_message(session, user, message_id)
        if message.role != "assistant":
            raise NotFound("No stream for this message.")
        limit = self.settings.user_max_streams
        if limit and self._following.get(user.id, 0) >= limit:
            raise TooManyRequests(f"You have {limit} answers open in other tabs or windows, the most this server "
                                  "allows; close one.", code="too_many_streams", retry_after=5)
        return self._counted(user.id, self.stream(message_id, after))

    async def _counted(self, user_id: int, frames: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """A follower's stream, counted against its user's limit while it is open (in this process)."""
        self._following[user_id] = self._following.get(user_id, 0) + 1
        try:
            async for frame in frames:
                yield frame
        finally:
            self._following[user_id] -= 1
            if not self._following[user_id]:
                del self._following[user_id]

    async def stream(self, message_id: int, after: int) -> AsyncIterator[bytes]:
        """The SSE bytes of an answer after event `after` (the caller has checked access)."""
        ping = self.settings.sse_ping_seconds
        quiet_since = time.monotonic()
        while True:
            try:
                async for batch in self.streams.follow(message_id, after, ping):
                    if batch:
                        after = batch[-1].seq
                        yield b"".join(e.frame for e in batch)
                    else:
                        yield PING
                return
            except LogMissing:
                pass
            # No log to follow: wait for the database to show the end, then replay it in short form. A
            # log that comes back (Redis again reachable) is followed again.
            async with self.db.read() as session:
                message = await session.get(Message, message_id)
                if message is None:
                    return
                if message.status in TERMINAL:
                    view = await message_view(session, message)
                    break
            await asyncio.sleep(0.5)
            if time.monotonic() - quiet_since >= ping:
                quiet_since = time.monotonic()
                yield PING
        for seq, event, data in replay(view, after):
            yield encode(seq, event, data)


def _named_files(question: Message | None) -> list[int] | None:
    """The files a question was asked about by name, which its later answers keep to."""
    named = (question.meta or {}).get("attachment_ids") if question is not None else None
    return [int(i) for i in named] if isinstance(named, list) and named else None
