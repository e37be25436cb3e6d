"""The per-message event log behind every SSE stream.

A generation appends events; any number of readers replay them after an id and then follow live.
Events are encoded as SSE frames once, when appended, and shared by every reader.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class StreamEvent:
    seq: int
    event: str
    frame: bytes


def encode(seq: int, event: str, data: dict[str, Any]) -> bytes:
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)
    return f"id: {seq}\nevent: {event}\ndata: {payload}\n\n".encode()


PING = b": ping\n\n"


class LogMissing(LookupError):
    """No live log for this message here: it finished long ago, or runs in another process."""


TERMINAL_EVENTS = ("done", "error")


@dataclass(frozen=True, slots=True)
class Recovered:
    """What the log of a run whose writer died holds: its last event id and the text of its deltas."""

    last_seq: int
    text: str
    ended: bool


class StreamLog(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def open(self, message_id: int) -> None: ...

    async def append(self, message_id: int, event: str, data: dict[str, Any]) -> int: ...

    async def close(self, message_id: int) -> None: ...

    def follow(self, message_id: int, after: int, idle_seconds: float) -> AsyncIterator[list[StreamEvent]]:
        """Batches of events after `after`; an empty batch after `idle_seconds` of silence; ends when
        the log is closed and read to its end. Raises LogMissing if there is no such log here, at the
        start or later (the caller then finishes from the database)."""
        ...

    def sweep(self) -> None:
        """Forget finished logs past their retention (housekeeping calls it about once a second)."""
        ...

    async def recover(self, message_id: int) -> Recovered | None:
        """The log of an answer whose process died, if another process can still read it."""
        ...

    async def seal(self, message_id: int, after_seq: int, event: str, data: dict[str, Any]) -> bool:
        """End such a log with `event` numbered `after_seq + 1`, unless it moved past `after_seq`."""
        ...


class _Log:
    __slots__ = ("changed", "closed_at", "events", "size")

    def __init__(self) -> None:
        self.events: list[StreamEvent] = []
        self.closed_at: float | None = None
        self.changed = asyncio.Event()
        self.size = 0  # bytes of frames held

    def add(self, events: list[StreamEvent]) -> None:
        """Append events numbered after the last one held (others are already here)."""
        last = self.events[-1].seq if self.events else 0
        fresh = [e for e in events if e.seq > last]
        if fresh:
            self.events.extend(fresh)
            self.size += sum(len(e.frame) for e in fresh)
            self.wake()

    def close(self) -> None:
        self.closed_at = time.monotonic()
        self.wake()

    def wake(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    async def follow(self, after: int, idle_seconds: float) -> AsyncIterator[list[StreamEvent]]:
        while True:
            if after < len(self.events):
                batch = self.events[after:]
                after = batch[-1].seq
                yield batch
                continue
            if self.closed_at is not None:
                return
            changed = self.changed
            try:
                await asyncio.wait_for(changed.wait(), idle_seconds)
            except TimeoutError:
                yield []


class LocalLogs:
    """Logs held in this process's memory, forgotten `retention_seconds` after they close, or sooner,
    oldest first, when finished logs hold more than `budget_bytes` (the database replays them)."""

    def __init__(self, retention_seconds: float, budget_bytes: int = 256 * 1024 * 1024) -> None:
        self.logs: dict[int, _Log] = {}
        self.retention = retention_seconds
        self.budget = budget_bytes

    def sweep(self) -> None:
        cutoff = time.monotonic() - self.retention
        closed = sorted(((log.closed_at, m) for m, log in self.logs.items() if log.closed_at is not None))
        held = sum(log.size for log in self.logs.values())
        for closed_at, message_id in closed:
            if closed_at >= cutoff and held <= self.budget:
                break
            held -= self.logs[message_id].size
            del self.logs[message_id]


class MemoryStreamLog:
    """In-process log for the embedded mode (one server process)."""

    def __init__(self, retention_seconds: float, budget_bytes: int = 256 * 1024 * 1024) -> None:
        self._local = LocalLogs(retention_seconds, budget_bytes)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def open(self, message_id: int) -> None:
        self._local.logs[message_id] = _Log()

    async def append(self, message_id: int, event: str, data: dict[str, Any]) -> int:
        log = self._local.logs[message_id]
        seq = len(log.events) + 1
        log.add([StreamEvent(seq, event, encode(seq, event, data))])
        return seq

    async def close(self, message_id: int) -> None:
        log = self._local.logs.get(message_id)
        if log is not None:
            log.close()

    async def follow(self, message_id: int, after: int, idle_seconds: float) -> AsyncIterator[list[StreamEvent]]:
        log = self._local.logs.get(message_id)
        if log is None:
            raise LogMissing(message_id)
        async for batch in log.follow(after, idle_seconds):
            yield batch

    def sweep(self) -> None:
        """Forget logs finished longer ago than the retention; the database can replay those."""
        self._local.sweep()

    async def recover(self, message_id: int) -> Recovered | None:
        return None  # one process: a run that died took its log with it

    async def seal(self, message_id: int, after_seq: int, event: str, data: dict[str, Any]) -> bool:
        return False
