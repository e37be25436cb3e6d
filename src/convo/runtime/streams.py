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


class StreamLog(Protocol):
    async def open(self, message_id: int) -> None: ...

    async def append(self, message_id: int, event: str, data: dict[str, Any]) -> int: ...

    async def close(self, message_id: int) -> None: ...

    def follow(self, message_id: int, after: int, idle_seconds: float) -> AsyncIterator[list[StreamEvent]]:
        """Batches of events after `after`; an empty batch after `idle_seconds` of silence; ends when
        the log is closed and read to its end. Raises LogMissing if there is no such log."""
        ...

    def sweep(self) -> None:
        """Forget finished logs past their retention (housekeeping calls it about once a second)."""
        ...


class _Log:
    __slots__ = ("changed", "closed_at", "events")

    def __init__(self) -> None:
        self.events: list[StreamEvent] = []
        self.closed_at: float | None = None
        self.changed = asyncio.Event()


class MemoryStreamLog:
    """In-process log for the embedded mode (one server process)."""

    def __init__(self, retention_seconds: float) -> None:
        self._logs: dict[int, _Log] = {}
        self._retention = retention_seconds

    async def open(self, message_id: int) -> None:
        self._logs[message_id] = _Log()

    async def append(self, message_id: int, event: str, data: dict[str, Any]) -> int:
        log = self._logs[message_id]
        seq = len(log.events) + 1
        log.events.append(StreamEvent(seq, event, encode(seq, event, data)))
        self._wake(log)
        return seq

    async def close(self, message_id: int) -> None:
        log = self._logs.get(message_id)
        if log is not None:
            log.closed_at = time.monotonic()
            self._wake(log)

    @staticmethod
    def _wake(log: _Log) -> None:
        log.changed.set()
        log.changed = asyncio.Event()

    async def follow(self, message_id: int, after: int, idle_seconds: float) -> AsyncIterator[list[StreamEvent]]:
        log = self._logs.get(message_id)
        if log is None:
            raise LogMissing(message_id)
        while True:
            if after < len(log.events):
                batch = log.events[after:]
                after = batch[-1].seq
                yield batch
                continue
            if log.closed_at is not None:
                return
            changed = log.changed
            try:
                await asyncio.wait_for(changed.wait(), idle_seconds)
            except TimeoutError:
                yield []

    def sweep(self) -> None:
        """Forget logs finished longer ago than the retention; the database can replay those."""
        cutoff = time.monotonic() - self._retention
        for message_id in [m for m, log in self._logs.items() if log.closed_at is not None and log.closed_at < cutoff]:
            del self._logs[message_id]
