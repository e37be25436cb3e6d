"""Generation runs: a user turn and the assistant's streamed answer.

A run is an asyncio task independent of any HTTP connection. It appends every event to the message's
stream log (which readers follow and replay), checkpoints the partial answer to the database about
once a second (so a restart loses little and marks it `interrupted`), and writes the final state
before it publishes `usage` and `done`, so a client never sees an event the database does not hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import bindparam, case, func, select, update

from convo import observability as obs
from convo.config import Settings
from convo.db.models import Message, Thread, User, utcnow
from convo.db.session import Database
from convo.domain.billing import Billing
from convo.domain.retrieval.grounding import Grounder, Grounding
from convo.domain.threads import MessageView, message_view, owned_message, owned_thread
from convo.domain.tree import Node, Tree, load_tree
from convo.errors import Conflict, ConvoError, InvalidInput, NotFound, TooManyRequests
from convo.llm.base import ChatMessage, ChatRequest, ModelInfo, Provider, TextDelta, UpstreamError, Usage
from convo.llm.registry import Registry
from convo.runtime.cancel import CancelBus
from convo.runtime.streams import PING, LogMissing, StreamLog, encode
from convo.schemas import message_json

log = logging.getLogger(__name__)

TERMINAL = ("complete", "cancelled", "error", "interrupted")
# Tokens kept free for the answer when the request names no max_tokens.
DEFAULT_ANSWER_RESERVE = 1024


@dataclass
class Run:
    message_id: int
    thread_id: int
    user_id: int
    provider: Provider
    model: ModelInfo
    request: ChatRequest
    prompt_tokens: int
    answer_json: dict[str, Any]  # the answer as `start` showed it; `done` shows it finished
    started: float = field(default_factory=time.perf_counter)
    parts: list[str] = field(default_factory=list)
    seq: int = 1  # `start` is event 1
    usage: Usage | None = None
    ttft: float | None = None
    dirty: bool = True
    stop_reason: str | None = None  # "cancelled" by a user, "interrupted" by shutdown
    task: asyncio.Task[None] | None = None
    citations: list[dict[str, Any]] = field(default_factory=list)  # the sources put in the prompt

    @property
    def content(self) -> str:
        return "".join(self.parts)


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
        self._runs: dict[int, Run] = {}
        self._background: list[asyncio.Task[None]] = []
        cancels.on_cancel(self._cancel_local)
        # Retrieval over the thread's files (set by Services); None answers from the conversation alone.
        self.grounder: Grounder | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def lease(self) -> timedelta:
        """A run whose heartbeat is older than this belongs to a process that died."""
        if self.settings.run_lease_seconds is not None:
            return timedelta(seconds=self.settings.run_lease_seconds)
        return timedelta(seconds=max(10.0, 5 * self.settings.checkpoint_seconds))

    def _now(self) -> Any:
        """The clock heartbeats are written and judged by: the database's when several hosts share it,
        so their clocks cannot disagree about who is alive."""
        return utcnow() if self.db.is_sqlite else func.now()

    async def start(self, *, sole_process: bool) -> None:
        # A process that is the only server knows that nothing else can be generating right now; one of
        # several only ends answers whose process stopped beating.
        await self.streams.start()
        await self.cancels.start()
        await self.reap(all_streaming=sole_process)
        self._background.append(asyncio.create_task(self._housekeeping()))

    async def stop(self) -> None:
        for task in self._background:
            task.cancel()
        runs = list(self._runs.values())
        for run in runs:
            run.stop_reason = run.stop_reason or "interrupted"
            if run.task:
                run.task.cancel()
        tasks = [r.task for r in runs if r.task]
        if tasks:
            await asyncio.wait(tasks, timeout=10)
        for task in self._background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.cancels.stop()
        await self.streams.stop()

    async def reap(self, *, all_streaming: bool = False) -> int:
        """End answers that no live process is generating, keeping their text: `cancelled` if someone
        asked to stop them, else `interrupted`. Several processes may reap at once: the guarded UPDATE
        gives each answer to one of them."""
        # The reservation is released, not charged: what the dead process spent upstream is unknown.
        query = (
            update(Message).where(Message.status == "streaming")
            .values(status=case((Message.cancel_requested_at.is_(None), "interrupted"), else_="cancelled"),
                    reserved_usd=None, updated_at=utcnow())
            .returning(Message.id, Message.status, Message.event_seq)
        )
        if self._runs:
            query = query.where(Message.id.not_in(list(self._runs)))
        if not all_streaming:
            query = query.where(Message.heartbeat_at < self._now() - self.lease)
        async with self.db.write() as session:
            reaped = (await session.execute(query)).all()
        for message_id, status, event_seq in reaped:
            await self._end_orphan(message_id, status, event_seq)
            obs.RUNS_REAPED.labels(status).inc()
        if reaped:
            log.warning("ended %d answers whose process stopped", len(reaped))
        return len(reaped)

    async def _end_orphan(self, message_id: int, status: str, event_seq: int) -> None:
        """Give the answer of a dead process its end: in its stream log, when another process can
        still read it (with every token the dead process streamed), and in the database."""
        values: dict[str, Any] = {"event_seq": event_seq + 1}
        for _ in range(3):
            recovered = await self.streams.recover(message_id)
            if recovered is None or recovered.ended:
                break
            async with self.db.read() as session:
                message = await session.get(Message, message_id)
                if message is None:
                    return
                content = recovered.text if len(recovered.text) > len(message.content) else message.content
                view = await message_view(session, message)
            if status == "cancelled":
                event, data = "done", {"message": {**message_json(view), "content": content}}
            else:
                event, data = "error", _interrupted_error()
            if await self.streams.seal(message_id, recovered.last_seq, event, data):
                values = {"event_seq": recovered.last_seq + 1, "content": content}
                break
        async with self.db.write() as session:
            await session.execute(update(Message).where(Message.id == message_id).values(**values))

    async def _housekeeping(self) -> None:
        tick = min(self.settings.checkpoint_seconds, 0.5)
        last_checkpoint = last_reap = time.monotonic()
        while True:
            await asyncio.sleep(tick)
            try:
                now = time.monotonic()
                if now - last_checkpoint >= self.settings.checkpoint_seconds:
                    last_checkpoint = now
                    await self._checkpoint()
                await self._poll_cancels()
                self.streams.sweep()
                if now - last_reap > self.lease.total_seconds():
                    last_reap = now
                    await self.reap()
            except Exception:
                log.exception("housekeeping failed; retrying")

    async def _poll_cancels(self) -> None:
        """The backstop of the cancel bus: requests recorded in the database for answers running here."""
        if not self._runs:
            return
        running = list(self._runs)
        async with self.db.read() as session:
            rows = (await session.execute(select(Message.id, Message.cancel_requested_at).where(
                Message.id.in_(running)))).all()
        wanted = {message_id for message_id, asked in rows if asked is None}
        for message_id in running:
            if message_id not in wanted:  # asked to stop, or its chat was deleted
                self._cancel_local(message_id)

    async def _checkpoint(self) -> None:
        """Write every live answer's text so far, and its heartbeat, in one transaction of two
        executemany statements (one row per answer)."""
        if not self._runs:
            return
        now = self._now()
        grown, beating = [], []
        for run in list(self._runs.values()):
            if run.dirty:
                run.dirty = False
                grown.append({"mid": run.message_id, "text": run.content, "seq": run.seq})
            else:
                beating.append({"mid": run.message_id})
        table = Message.__table__
        live = (table.c.id == bindparam("mid")) & (table.c.status == "streaming")
        async with self.db.write() as session:
            if grown:
                await session.execute(
                    update(table).where(live).values(
                        content=bindparam("text"), event_seq=bindparam("seq"), heartbeat_at=now),
                    grown,
                )
            if beating:
                await session.execute(update(table).where(live).values(heartbeat_at=now), beating)

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
        return await self._answer(user, message.thread_id, parent_id=message.parent_id, content=content)

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
                history = await self._history(session, tree, question_id, expect=("user",))
            else:
                # Under an answer; or under a question nobody answered yet (one edited without a new
                # answer, or an import's last turn): the new message follows it, and the answer
                # reads both, as it would two messages sent in a row.
                unanswered = parent_id is not None and not tree.children.get(parent_id)
                history = await self._history(session, tree, parent_id,
                                              expect=("assistant", "user") if unanswered else ("assistant",))
                history.append(ChatMessage("user", content or ""))
        resolved = await self.registry.resolve(model or thread.model)
        if temperature is None:
            temperature = thread.temperature
        prompt = [ChatMessage("system", thread.system_prompt)] if thread.system_prompt else []
        grounding = await self._ground(user, thread.id, resolved, prompt, history, max_tokens, attachment_ids)
        if grounding is not None:
            prompt.append(ChatMessage("system", grounding.prompt))
        citations = grounding.citations if grounding is not None else []
        fitted, prompt_tokens = await self._fit(resolved.provider, resolved.model, prompt + history, max_tokens)
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
                    status="complete", meta={}, created_at=now, updated_at=now,
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
            title = _title_from(content) if content and not thread.title else thread.title
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
        await self._launch(
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

    async def _ground(
        self, user: User, thread_id: int, resolved: Any, prompt: list[ChatMessage], history: list[ChatMessage],
        max_tokens: int | None, attachment_ids: list[int] | None,
    ) -> Grounding | None:
        """Sources from the thread's files for the question, within what the prompt can spare: at most
        half of the context left beside the answer, and never so much that the question stops fitting."""
        if self.grounder is None or not history:
            return None
        model = resolved.model
        window = model.context_window or 8192
        reserve = max_tokens or min(DEFAULT_ANSWER_RESERVE, window // 4)

        def count(text: str) -> int:
            return resolved.provider.count_tokens(model.upstream_id, text) + 4

        def budget() -> int:
            # Counted only once there are sources to place: most threads have no files.
            fixed = sum(count(m.content) for m in prompt + history[-1:])
            return min((window - reserve) // 2, window - reserve - fixed)

        return await self.grounder.ground(user, thread_id, history[-1].content, attachment_ids, count=count,
                                          budget=budget)

    async def _history(
        self, session: Any, tree: Tree, last_id: int | None, *, expect: tuple[str, ...]
    ) -> list[ChatMessage]:
        """The conversation from the root down to `last_id`, as the model should see it."""
        if last_id is None:
            return []
        if last_id not in tree:
            raise NotFound("No such parent message in this thread.")
        ids = tree.path_to(last_id)
        rows = {m.id: m for m in await session.scalars(select(Message).where(Message.id.in_(ids)))}
        last = rows[last_id]
        if last.role not in expect:
            raise InvalidInput("This question has its answer already; send the new message under the answer.",
                               code="invalid_parent")
        if last.status == "streaming":
            raise Conflict("The previous answer is still being written; wait or cancel it.", code="parent_streaming")
        return [ChatMessage(rows[i].role, rows[i].content) for i in ids if rows[i].content]

    async def _fit(
        self, provider: Provider, model: ModelInfo, prompt: list[ChatMessage], max_tokens: int | None
    ) -> tuple[list[ChatMessage], int]:
        """Drop the oldest turns until the prompt and the answer fit the model's context window."""
        window = model.context_window or 8192
        reserve = max_tokens or min(DEFAULT_ANSWER_RESERVE, window // 4)
        if reserve >= window:
            raise InvalidInput(f"max_tokens must be below the model's context window ({window}).",
                               code="max_tokens_too_large")

        def fit() -> tuple[list[ChatMessage], int]:
            def cost(m: ChatMessage) -> int:
                return provider.count_tokens(model.upstream_id, m.content) + 4  # role and framing

            system = [m for m in prompt if m.role == "system"]
            turns = [m for m in prompt if m.role != "system"]
            used = sum(cost(m) for m in system) + cost(turns[-1])
            budget = window - reserve
            if used > budget:
                raise InvalidInput(
                    f"The message is too long for {model.label}: about {used} tokens, "
                    f"{budget} fit beside a {reserve}-token answer.",
                    code="context_length_exceeded",
                )
            kept = [turns[-1]]
            for m in reversed(turns[:-1]):
                tokens = cost(m)
                if used + tokens > budget:
                    break
                kept.append(m)
                used += tokens
            return system + kept[::-1], used

        return await asyncio.to_thread(fit)

    async def _launch(self, run: Run, start_data: dict[str, Any]) -> None:
        await self.streams.open(run.message_id)
        await self.streams.append(run.message_id, "start", start_data)
        if run.citations:
            run.seq = await self.streams.append(run.message_id, "citations", {"items": run.citations})
        self._runs[run.message_id] = run
        run.task = asyncio.create_task(self._generate(run), name=f"generate-{run.message_id}")

    # -- the run ---------------------------------------------------------------------------------

    async def _generate(self, run: Run) -> None:
        error: ConvoError | None = None
        try:
            async with contextlib.aclosing(run.provider.stream(run.request)) as chunks:
                async for chunk in chunks:
                    if isinstance(chunk, TextDelta):
                        if run.ttft is None:
                            run.ttft = time.perf_counter() - run.started
                        run.parts.append(chunk.text)
                        run.seq = await self.streams.append(run.message_id, "delta", {"text": chunk.text})
                        run.dirty = True
                    elif isinstance(chunk, Usage):
                        run.usage = chunk
            status = "complete"
        except asyncio.CancelledError:
            if run.stop_reason is None:
                raise
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
            status = run.stop_reason
        except UpstreamError as exc:
            status, error = "error", exc
        except Exception as exc:
            log.exception("generation %s failed", run.message_id)
            status, error = "error", UpstreamError(f"Generation failed: {type(exc).__name__}", code="internal_error")
        try:
            await self._finish(run, status, error)
        except Exception:
            # The final write failed (database down, disk full): followers still get an end, not silence.
            log.exception("recording the end of answer %s failed", run.message_id)
            with contextlib.suppress(Exception):
                await self.streams.append(run.message_id, "error", {
                    "code": "internal_error", "message": "The answer could not be saved; try again."})
        finally:
            self._runs.pop(run.message_id, None)
            await self.streams.close(run.message_id)

    async def _finish(self, run: Run, status: str, error: ConvoError | None) -> None:
        elapsed = time.perf_counter() - run.started
        content = run.content
        usage = run.usage or Usage(
            run.prompt_tokens, await asyncio.to_thread(run.provider.count_tokens, run.model.upstream_id, content)
        )
        cost = run.model.cost_usd(usage.prompt_tokens, usage.completion_tokens)
        meta: dict[str, Any] = {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "cost_usd": cost,
            "ttft_ms": round(run.ttft * 1000, 1) if run.ttft is not None else None,
            "latency_ms": round(elapsed * 1000, 1),
            "provider": run.provider.name,
        }
        if run.citations:
            meta["citations"] = run.citations
        if error is not None:
            meta["error"] = {"code": error.code, "message": error.message}
        # Events that follow the write: usage and done, or error (and interrupted runs end with error).
        final = ["error"] if status in ("error", "interrupted") else ["usage", "done"]
        now = utcnow()
        async with self.db.write() as session:
            written = await session.execute(
                update(Message)
                # Still streaming: a run that stalled past its lease was ended by a reaper, and its
                # end stands.
                .where(Message.id == run.message_id, Message.status == "streaming")
                .values(content=content, status=status, meta=meta, event_seq=run.seq + len(final),
                        cost_usd=cost, reserved_usd=None, heartbeat_at=None, updated_at=now)
            )
            # Charged even when the chat was deleted meanwhile: the tokens were spent all the same.
            self.billing.charge(session, run.user_id, run.message_id, run.model.id, cost)
        if written.rowcount != 1:
            # A reaper ended it (this process stalled past its lease): its end stands. Or the chat was
            # deleted while answering: followers are told so.
            async with self.db.read() as session:
                deleted = await session.get(Message, run.message_id) is None
            if deleted:
                await self.streams.append(run.message_id, "error", {
                    "code": "thread_deleted", "message": "This chat was deleted while the answer was written."})
            return
        finished = {**run.answer_json, "content": content, "status": status, "meta": meta}

        obs.TOKENS.labels(run.model.id, "prompt").inc(usage.prompt_tokens)
        obs.TOKENS.labels(run.model.id, "completion").inc(usage.completion_tokens)
        obs.COST.labels(run.model.id).inc(cost)
        obs.GENERATION.observe(elapsed)
        if run.ttft is not None:
            obs.TTFT.observe(run.ttft)
        if error is not None:
            obs.UPSTREAM_ERRORS.labels(run.provider.name, error.code).inc()

        if status == "error":
            assert error is not None
            await self.streams.append(run.message_id, "error", {"code": error.code, "message": error.message})
        elif status == "interrupted":
            await self.streams.append(run.message_id, "error", _interrupted_error())
        else:
            await self.streams.append(
                run.message_id,
                "usage",
                {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
                 "cost_usd": cost},
            )
            await self.streams.append(run.message_id, "done", {"message": finished})

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

    def _cancel_local(self, message_id: int) -> None:
        run = self._runs.get(message_id)
        if run is not None and run.stop_reason is None and run.task is not None:
            run.stop_reason = "cancelled"
            run.task.cancel()

    async def open_stream(self, user: User, message_id: int, after: int) -> AsyncIterator[bytes]:
        """Check access now, then hand back the SSE bytes of this answer after event `after`."""
        async with self.db.read() as session:
            message = await owned_message(session, user, message_id)
        if message.role != "assistant":
            raise NotFound("No stream for this message.")
        return self.stream(message_id, after)

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
        for seq, event, data in _replay(view, after):
            yield encode(seq, event, data)


def _replay(view: Any, after: int) -> list[tuple[int, str, dict[str, Any]]]:
    """Events of a finished answer whose live log is gone: `start`, its whole text, and the end under
    its original id. A client that saw part of the live stream gets the end, whose message holds
    the complete text."""
    message = view.message
    final = message.event_seq
    if message.status == "interrupted":
        # The process died after sending events its last checkpoint did not count: a client may be
        # past `final`. It still gets the end, numbered after what it saw.
        final = max(final, after + 1)
    events: list[tuple[int, str, dict[str, Any]]] = []
    if after < 1:
        events.append((1, "start", {"thread_id": message.thread_id, "user_message": None,
                                    "assistant_message": message_json(view)}))
    citations = (message.meta or {}).get("citations")
    first_delta = 3 if citations else 2
    if citations and after < 2 < final:
        events.append((2, "citations", {"items": citations}))
    if after < first_delta < final and message.content:
        events.append((first_delta, "delta", {"text": message.content}))
    if after < final:
        if message.status == "error":
            events.append((final, "error", (message.meta or {}).get("error") or {"code": "upstream_error",
                                                                                 "message": "Failed."}))
        elif message.status == "interrupted":
            events.append((final, "error", _interrupted_error()))
        else:
            meta = message.meta or {}
            if final - 1 > first_delta:
                events.append((final - 1, "usage", {k: meta.get(k) for k in
                                                    ("prompt_tokens", "completion_tokens", "cost_usd")}))
            events.append((final, "done", {"message": message_json(view)}))
    return events


def _interrupted_error() -> dict[str, str]:
    return {"code": "interrupted", "message": "The server stopped before this answer was finished."}


def _title_from(content: str) -> str:
    line = " ".join(content.split())
    return line if len(line) <= 60 else line[:57].rstrip() + "…"
