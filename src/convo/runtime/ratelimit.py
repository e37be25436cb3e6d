"""Attempt limits with backoff: after `limit` hits on a key within `window` seconds the key is locked
for `lock` seconds, doubling with every further hit up to `max_lock`. A lock always ends, so a lockout
cannot be held against an account forever, and a key that stays quiet for a window is forgotten.

`Limiter` is the interface the domain uses; `MemoryLimiter` keeps the counts in this process. A shared
store (Redis) can implement the same three calls once several processes serve one site.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Backoff:
    limit: int  # hits within the window before the first lock; 0 turns the limit off
    window: float  # seconds
    lock: float  # seconds of the first lock
    max_lock: float  # seconds; locks grow up to this


class Limiter(Protocol):
    async def retry_after(self, key: str) -> float:
        """Seconds until `key` may try again; 0 when it may now."""
        ...

    async def hit(self, key: str) -> None:
        """Count one attempt (a failed log-in, a sign-up) against `key`."""
        ...

    async def clear(self, key: str) -> None:
        """Forget `key` (a successful log-in)."""
        ...

    async def prune(self) -> None:
        """Drop keys that are forgotten anyway (a store with expiring keys has nothing to do)."""
        ...


@dataclass
class _Entry:
    hits: int
    last_hit: float
    locked_until: float


class MemoryLimiter:
    def __init__(self, policy: Backoff, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self._clock = clock
        self._entries: dict[str, _Entry] = {}

    def _live(self, key: str, now: float) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is not None and self._expired(entry, now):
            del self._entries[key]
            return None
        return entry

    def _expired(self, entry: _Entry, now: float) -> bool:
        # Quiet for a whole window after the last hit and after any lock: start again from zero.
        return now - max(entry.last_hit, entry.locked_until) > self.policy.window

    async def retry_after(self, key: str) -> float:
        if not self.policy.limit:
            return 0.0
        now = self._clock()
        entry = self._live(key, now)
        return max(0.0, entry.locked_until - now) if entry else 0.0

    async def hit(self, key: str) -> None:
        policy = self.policy
        if not policy.limit:
            return
        now = self._clock()
        entry = self._live(key, now) or self._entries.setdefault(key, _Entry(0, now, 0.0))
        entry.hits += 1
        entry.last_hit = now
        if entry.hits >= policy.limit:
            # Each hit past the limit doubles the lock: slow for a guesser, bounded for the victim.
            lock = min(policy.lock * 2 ** min(entry.hits - policy.limit, 32), policy.max_lock)
            entry.locked_until = now + lock

    async def clear(self, key: str) -> None:
        self._entries.pop(key, None)

    async def prune(self) -> None:
        # Addresses and emails seen once must not stay in memory for the life of the process.
        now = self._clock()
        for key in [k for k, e in self._entries.items() if self._expired(e, now)]:
            del self._entries[key]
