"""The stream log of scale mode: every answer's events in a Redis Stream, readable by every process.

Key `{prefix}ev:{message_id}`, one entry per event, entry id `0-{seq}` = the SSE `id:`, fields `e` (the
event's name) and `f` (its SSE frame, encoded once). Explicit ids make a resend after a lost reply
harmless (Redis refuses an id at or below the top) and fence a stalled writer out of a log that the
reaper has ended.

The process running an answer keeps the log in memory too: its own followers (the POST that started the
answer, a second tab that lands here) read memory, never Redis. Events reach that memory only once Redis
holds them, so whatever any client saw is in Redis when the process dies. One flusher per process sends
every pending event of every answer in one pipeline, at most every `flush_seconds`; an idle flusher sends
at once, and `start`/`done`/`error` are awaited. When Redis cannot be reached the events still reach
memory, so answers go on streaming from their process, and are sent once Redis is back.

Followers in other processes read the key: XRANGE what is there, then XREAD BLOCK. A gap in the ids
(Redis restarted and lost part of a log) or an unreachable Redis raises LogMissing, and the caller
finishes from the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from convo import observability as obs
from convo.runtime.streams import (
    TERMINAL_EVENTS,
    LocalLogs,
    LogMissing,
    Recovered,
    StreamEvent,
    _Log,
    encode,
)

log = logging.getLogger(__name__)

# A stream key outlives a crashed writer this long at most; a finished answer's key lives `retention`.
LIVE_TTL_SECONDS = 86_400
PAGE = 1000

# Ends a log whose writer died: only if its top is still the entry the reaper read, so a writer that
# comes back cannot interleave with the end. KEYS[1] the stream; ARGV seq, event, frame, ttl.
_SEAL = """
local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #top == 0 then return 0 end
if top[1][1] ~= '0-' .. (tonumber(ARGV[1]) - 1) then return 0 end
redis.call('XADD', KEYS[1], '0-' .. ARGV[1], 'e', ARGV[2], 'f', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"""


class _Writing:
    """An answer this process runs: the next id to give, and what Redis has not confirmed yet."""

    __slots__ = ("attempted", "created", "local", "next_seq", "pending")

    def __init__(self, local: _Log) -> None:
        self.local = local
        self.next_seq = 1
        self.pending: list[StreamEvent] = []
        self.attempted = 0  # the highest id ever sent: a refusal at or below it is our own resend
        self.created = False  # whether the key exists (its first entry carried the EXPIRE)


class RedisStreamLog:
    def __init__(self, redis: Redis, reader: Redis, prefix: str, retention_seconds: float,
                 flush_seconds: float = 0.015, budget_bytes: int = 256 * 1024 * 1024) -> None:
        self.redis = redis
        self.reader = reader  # its own pool: XREAD BLOCK holds a connection while it waits
        self.prefix = prefix
        self.retention = retention_seconds
        self.flush_seconds = flush_seconds
        self._local = LocalLogs(retention_seconds, budget_bytes)
        self._writing: dict[int, _Writing] = {}
        self._dirty = asyncio.Event()
        self._lock = asyncio.Lock()  # one flush at a time keeps each key's entries in order
        self._flusher: asyncio.Task[None] | None = None
        self._failing = False  # the last flush failed
        self._seal = redis.register_script(_SEAL)

    def key(self, message_id: int) -> str:
        return f"{self.prefix}ev:{message_id}"

    async def start(self) -> None:
        self._flusher = asyncio.create_task(self._flush_loop(), name="stream-flusher")

    async def stop(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        with contextlib.suppress(RedisError, OSError):
            await self._flush()
        await self.reader.aclose()

    # -- writing ---------------------------------------------------------------------------------

    async def open(self, message_id: int) -> None:
        local = _Log()
        self._local.logs[message_id] = local
        self._writing[message_id] = _Writing(local)

    async def append(self, message_id: int, event: str, data: dict[str, Any]) -> int:
        writing = self._writing[message_id]
        seq = writing.next_seq
        writing.next_seq += 1
        writing.pending.append(StreamEvent(seq, event, encode(seq, event, data)))
        if event == "delta" or self._failing:
            # (While Redis fails, nothing waits for it: the flusher keeps trying in the background.)
            self._dirty.set()
            if self._failing:
                self._release_pending()
        else:
            # `start` must be readable everywhere before the answer's first byte leaves; the end
            # before the run lets go.
            await self._flush_quietly()
        return seq

    async def close(self, message_id: int) -> None:
        await self._flush_quietly()
        writing = self._writing.pop(message_id, None)
        if writing is None:
            return
        writing.local.add(writing.pending)  # Redis is down: these events are this process's alone
        writing.local.close()
        with contextlib.suppress(RedisError, OSError):
            await self.redis.expire(self.key(message_id), max(1, int(self.retention)))

    async def _flush_loop(self) -> None:
        backoff = self.flush_seconds
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                await self._flush()
                backoff = self.flush_seconds
            except (RedisError, OSError) as exc:
                self._failed(exc)
                backoff = min(max(backoff, 0.05) * 2, 1.0)
            # Events that arrive meanwhile go out together in the next pipeline.
            await asyncio.sleep(backoff)

    async def _flush_quietly(self) -> None:
        try:
            await self._flush()
        except (RedisError, OSError) as exc:
            self._failed(exc)

    def _failed(self, exc: BaseException) -> None:
        if not self._failing:
            log.warning("Redis unreachable (%s): answers go on from their own process until it is back", exc)
        self._failing = True
        obs.REDIS_ERRORS.labels("stream_flush").inc()
        self._release_pending()
        self._dirty.set()

    def _release_pending(self) -> None:
        """Redis is unreachable: let this process's followers have the events now; they stay queued
        for Redis as well."""
        for writing in self._writing.values():
            writing.local.add(writing.pending)

    async def _flush(self) -> None:
        async with self._lock:
            batch = [(mid, w, list(w.pending)) for mid, w in self._writing.items() if w.pending]
            if not batch:
                return
            started = time.perf_counter()
            pipe = self.redis.pipeline(transaction=False)
            sent: list[tuple[int, bool] | None] = []  # per command: (answer, is a resend), None for EXPIRE
            created = {mid: w.created for mid, w, _ in batch}
            for mid, writing, events in batch:
                key = self.key(mid)
                for ev in events:
                    fields = {"e": ev.event, "f": ev.frame}
                    if writing.created:
                        pipe.xadd(key, fields, id=f"0-{ev.seq}", nomkstream=True)
                        sent.append((mid, ev.seq <= writing.attempted))
                    else:
                        pipe.xadd(key, fields, id=f"0-{ev.seq}")
                        pipe.expire(key, LIVE_TTL_SECONDS)
                        sent += [(mid, ev.seq <= writing.attempted), None]
                        writing.created = True
                    writing.attempted = max(writing.attempted, ev.seq)
            try:
                replies = await pipe.execute(raise_on_error=False)
            except BaseException:
                for mid, writing, _ in batch:
                    writing.created = created[mid]
                raise
            lost: set[int] = set()
            fenced: set[int] = set()
            for tag, reply in zip(sent, replies, strict=True):
                if tag is None:
                    continue
                mid, resend = tag
                if isinstance(reply, ResponseError):
                    if not resend:
                        fenced.add(mid)
                elif isinstance(reply, Exception):
                    raise reply
                elif reply is None:
                    lost.add(mid)
            obs.STREAM_FLUSH.observe(time.perf_counter() - started)
            if self._failing:
                self._failing = False
                log.warning("Redis reachable again: stream logs are shared again")
            for mid, writing, events in batch:
                writing.pending = writing.pending[len(events):]
                if mid in fenced:
                    # The reaper ended this log: this process stalled past its lease. Stop writing.
                    log.warning("answer %s was ended by another process; its log is closed here", mid)
                    writing.pending.clear()
                    continue
                if mid in lost:
                    await self._reseed(mid, writing, events)
                writing.local.add(events)

    async def _reseed(self, message_id: int, writing: _Writing, flushing: list[StreamEvent]) -> None:
        """The key vanished (Redis restarted empty): write the whole log again, with its ids."""
        key = self.key(message_id)
        shown = writing.local.events[-1].seq if writing.local.events else 0
        everything = [*writing.local.events, *(e for e in flushing if e.seq > shown)]
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(key)
        for ev in everything:
            pipe.xadd(key, {"e": ev.event, "f": ev.frame}, id=f"0-{ev.seq}")
        pipe.expire(key, LIVE_TTL_SECONDS)
        await pipe.execute()
        writing.created = True
        log.warning("answer %s: its stream was gone from Redis and is written again", message_id)

    # -- reading ---------------------------------------------------------------------------------

    async def follow(self, message_id: int, after: int, idle_seconds: float) -> AsyncIterator[list[StreamEvent]]:
        local = self._local.logs.get(message_id)
        if local is not None:
            async for batch in local.follow(after, idle_seconds):
                yield batch
            return
        key = self.key(message_id)
        try:
            first = await self.redis.xrange(key, min=f"0-{after + 1}", max="+", count=PAGE)
            if not first:
                top = await self.redis.xrevrange(key, count=1)
                if not top or _str(top[0][1][b"e"]) in TERMINAL_EVENTS:
                    # No log, or one that ended at or before `after`: the database tells how it ended.
                    raise LogMissing(message_id)
            entries = first
            while True:
                if entries:
                    batch = _events(entries, after, message_id)
                    after = batch[-1].seq
                    yield batch
                    if batch[-1].event in TERMINAL_EVENTS:
                        return
                    if len(entries) == PAGE:
                        entries = await self.redis.xrange(key, min=f"0-{after + 1}", max="+", count=PAGE)
                        continue
                reply = await self.reader.xread({key: f"0-{after}"}, count=PAGE,
                                                block=max(1, int(idle_seconds * 1000)))
                entries = reply[0][1] if reply else []
                if not entries:
                    if not await self.redis.exists(key):
                        raise LogMissing(message_id)  # Redis lost it; the database has the end
                    yield []
        except (RedisError, OSError) as exc:
            obs.REDIS_ERRORS.labels("stream_follow").inc()
            raise LogMissing(message_id) from exc

    def sweep(self) -> None:
        self._local.sweep()

    # -- a run whose process died ------------------------------------------------------------------

    async def recover(self, message_id: int) -> Recovered | None:
        key = self.key(message_id)
        text: list[str] = []
        last, ended = 0, False
        try:
            while True:
                entries = await self.redis.xrange(key, min=f"0-{last + 1}", max="+", count=PAGE)
                for entry_id, fields in entries:
                    seq = _seq(entry_id)
                    if seq != last + 1:
                        return None  # a gap: the log cannot be trusted, the database can
                    last = seq
                    name = _str(fields[b"e"])
                    if name == "delta":
                        text.append(_data(fields[b"f"])["text"])
                    ended = ended or name in TERMINAL_EVENTS
                if len(entries) < PAGE:
                    break
        except (RedisError, OSError):
            return None
        return Recovered(last, "".join(text), ended) if last else None

    async def seal(self, message_id: int, after_seq: int, event: str, data: dict[str, Any]) -> bool:
        seq = after_seq + 1
        try:
            done = await self._seal(keys=[self.key(message_id)],
                                    args=[seq, event, encode(seq, event, data), max(1, int(self.retention))])
        except (RedisError, OSError):
            return False
        return bool(done)


def _seq(entry_id: bytes | str) -> int:
    return int(_str(entry_id).rsplit("-", 1)[1])


def _str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _data(frame: bytes) -> dict[str, Any]:
    line = next(x for x in frame.decode().split("\n") if x.startswith("data: "))
    return json.loads(line[len("data: "):])


def _events(entries: list[Any], after: int, message_id: int) -> list[StreamEvent]:
    events = []
    for entry_id, fields in entries:
        seq = _seq(entry_id)
        if seq != after + 1:
            raise LogMissing(message_id)  # part of the log was lost
        after = seq
        events.append(StreamEvent(seq, _str(fields[b"e"]), fields[b"f"]))
    return events
