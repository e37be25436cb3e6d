"""Background jobs, addressed by name with JSON arguments: run in this process, or on Celery workers.

The in-process runner keeps every job as an asyncio task; a handler does its CPU work in threads
(asyncio.to_thread), so the event loop never waits for it. The Celery runner (scale mode) sends the
name and arguments to the broker; a `convo worker` process runs the same handler (see convo/worker.py).
A failing job is logged and handed to the `on_error` of its registration, which records the failure on
the job's object for users to read. Delivery may repeat (a worker that dies mid-job has its job sent
again), so handlers are idempotent and count their attempts on their own rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[None]]
ErrorHandler = Callable[[dict[str, Any], BaseException], Awaitable[None]]


class JobRunner(Protocol):
    def register(self, name: str, handler: Handler, on_error: ErrorHandler | None = None) -> None: ...

    async def enqueue(self, name: str, args: dict[str, Any]) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    @property
    def in_process(self) -> bool:
        """Whether jobs run in this process (then it resumes what it left unfinished when it starts)."""
        ...


@dataclass
class _Registration:
    handler: Handler
    on_error: ErrorHandler | None


class InProcessJobs:
    """Runs jobs in this process, at most `concurrency` at a time (CPU-heavy ingestion on few cores
    goes faster one after another than interleaved)."""

    def __init__(self, concurrency: int = 1, stop_timeout: float = 10.0) -> None:
        self._jobs: dict[str, _Registration] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots: asyncio.Semaphore | None = None
        self._concurrency = concurrency
        self._stop_timeout = stop_timeout
        self._stopping = False

    in_process = True

    def register(self, name: str, handler: Handler, on_error: ErrorHandler | None = None) -> None:
        self._jobs[name] = _Registration(handler, on_error)

    async def start(self) -> None:
        self._slots = asyncio.Semaphore(self._concurrency)
        self._stopping = False

    async def enqueue(self, name: str, args: dict[str, Any]) -> None:
        if name not in self._jobs:
            raise KeyError(f"no job named {name!r}")
        if self._stopping:
            raise RuntimeError("the job runner is stopping")
        # The same constraint a broker imposes: arguments must survive JSON.
        payload = json.loads(json.dumps(args))
        task = asyncio.create_task(self._run(name, payload), name=f"job-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, name: str, args: dict[str, Any]) -> None:
        registration = self._jobs[name]
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._concurrency)
        async with self._slots:
            try:
                await registration.handler(args)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("job %s %s failed", name, args)
                if registration.on_error is not None:
                    try:
                        await registration.on_error(args, exc)
                    except Exception:
                        log.exception("recording the failure of job %s %s failed", name, args)

    async def idle(self) -> None:
        """Wait until every job enqueued so far has finished."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def stop(self) -> None:
        """Let running jobs finish for a while, then cancel the rest (their objects keep their last
        status, which a restart can pick up)."""
        self._stopping = True
        tasks = list(self._tasks)
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=self._stop_timeout)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


# Errors worth another try on another delivery: the database or the network blinked.
TRANSIENT: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)
CELERY_TASK = "convo.job"


class CeleryJobs:
    """Scale mode: `enqueue` hands the job to the broker; `run` is what a worker does with it."""

    in_process = False

    def __init__(self, app: Any) -> None:
        self.app = app  # a configured Celery app (convo/worker.py)
        self._jobs: dict[str, _Registration] = {}

    def register(self, name: str, handler: Handler, on_error: ErrorHandler | None = None) -> None:
        self._jobs[name] = _Registration(handler, on_error)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def enqueue(self, name: str, args: dict[str, Any]) -> None:
        if name not in self._jobs:
            raise KeyError(f"no job named {name!r}")
        payload = json.loads(json.dumps(args))
        # kombu publishes with blocking sockets.
        await asyncio.to_thread(self.app.send_task, CELERY_TASK, args=[name, payload])

    async def run(self, name: str, args: dict[str, Any], *, last_try: bool) -> None:
        """Run one delivery. A transient failure is raised for Celery to retry, unless this is the last
        try; any other failure is recorded through `on_error` and the job ends."""
        registration = self._jobs[name]
        try:
            await registration.handler(args)
        except Exception as exc:
            if isinstance(exc, TRANSIENT) and not last_try:
                log.warning("job %s %s failed (%s); it will be tried again", name, args, exc)
                raise
            log.exception("job %s %s failed", name, args)
            if registration.on_error is not None:
                await registration.on_error(args, exc)
