"""Answers being generated in this process: each a task independent of any HTTP connection.

A run appends every event to the message's stream log (which readers follow and replay), checkpoints the
partial answer to the database about once a second with a heartbeat (so a restart loses little), and
writes the final state before it publishes `usage` and `done`, so a client never sees an event the
database does not hold. A reaper, in every process, ends the answers whose process stopped beating.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import bindparam, case, func, select, update

from convo import observability as obs
from convo.config import Settings
from convo.db.models import Message, utcnow
from convo.db.session import Database
from convo.domain.billing import Billing
from convo.domain.stream_events import interrupted_error
from convo.domain.threads import message_view
from convo.errors import ConvoError
from convo.llm.base import ChatRequest, ModelInfo, Provider, TextDelta, UpstreamError, Usage
from convo.runtime.cancel import CancelBus
from convo.runtime.streams import StreamLog
from convo.schemas import message_json

log = logging.getLogger(__name__)


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


class Runs:
    def __init__(
        self, db: Database, streams: StreamLog, cancels: CancelBus, settings: Settings, billing: Billing
    ) -> None:
        self.db = db
        self.streams = streams
        self.cancels = cancels
        self.settings = settings
        self.billing = billing
        self._runs: dict[int, Run] = {}
        self._background: list[asyncio.Task[None]] = []
        cancels.on_cancel(self.cancel_local)

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
                event, data = "error", interrupted_error()
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
                self.cancel_local(message_id)

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

    async def launch(self, run: Run, start_data: dict[str, Any]) -> None:
        await self.streams.open(run.message_id)
        await self.streams.append(run.message_id, "start", start_data)
        if run.citations:
            run.seq = await self.streams.append(run.message_id, "citations", {"items": run.citations})
        self._runs[run.message_id] = run
        run.task = asyncio.create_task(self._generate(run), name=f"generate-{run.message_id}")

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
            await self.streams.append(run.message_id, "error", interrupted_error())
        else:
            await self.streams.append(
                run.message_id,
                "usage",
                {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
                 "cost_usd": cost},
            )
            await self.streams.append(run.message_id, "done", {"message": finished})

    def cancel_local(self, message_id: int) -> None:
        run = self._runs.get(message_id)
        if run is not None and run.stop_reason is None and run.task is not None:
            run.stop_reason = "cancelled"
            run.task.cancel()
