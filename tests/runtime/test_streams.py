"""The stream log's contract, run against both implementations: the in-process log of the embedded mode
and the Redis Streams log of scale mode (on the machine's Redis, under a key prefix of the test's own)."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from redis.asyncio import Redis

from convo.runtime.redis_streams import RedisStreamLog
from convo.runtime.streams import LogMissing, MemoryStreamLog, StreamEvent, StreamLog


def run(coro):
    return asyncio.run(coro)


async def collect(log: StreamLog, message_id: int, after: int, idle: float = 0.2) -> list[StreamEvent]:
    seen: list[StreamEvent] = []
    async for batch in log.follow(message_id, after, idle):
        seen.extend(batch)
    return seen


@pytest.fixture(params=["memory", "redis"])
def make_log(request: pytest.FixtureRequest):
    """A factory of logs that share one backing store: two 'processes' in scale mode see each other."""
    if request.param == "memory":
        shared = MemoryStreamLog(retention_seconds=60, budget_bytes=10_000)

        async def memory() -> StreamLog:
            return shared

        yield memory
        return
    url = request.getfixturevalue("redis_url")
    prefix = f"t{uuid.uuid4().hex[:12]}:"

    async def redis() -> StreamLog:
        log = RedisStreamLog(Redis.from_url(url), Redis.from_url(url), prefix, retention_seconds=60,
                             flush_seconds=0.005, budget_bytes=10_000)
        await log.start()
        return log

    yield redis


def texts(events: list[StreamEvent]) -> list[str]:
    return [json.loads(e.frame.decode().split("data: ", 1)[1])["text"] for e in events if e.event == "delta"]


def test_events_are_numbered_replayed_after_an_id_and_followed_to_the_end(make_log) -> None:
    async def scenario() -> None:
        writer = await make_log()
        reader = await make_log()  # in scale mode: another process
        await writer.open(7)
        assert await writer.append(7, "start", {"n": 0}) == 1
        follower = asyncio.create_task(collect(reader, 7, 0))
        for n in range(1, 6):
            assert await writer.append(7, "delta", {"text": f"w{n}"}) == n + 1
            await asyncio.sleep(0.01)
        await writer.append(7, "done", {"ok": True})
        await writer.close(7)
        everything = await asyncio.wait_for(follower, 5)
        assert [e.seq for e in everything] == list(range(1, 8))
        assert [e.event for e in everything] == ["start"] + ["delta"] * 5 + ["done"]
        assert texts(everything) == [f"w{n}" for n in range(1, 6)]
        assert everything[0].frame.startswith(b"id: 1\nevent: start\ndata: ")
        resumed = await collect(reader, 7, 4)
        assert [e.seq for e in resumed] == [5, 6, 7]
        with pytest.raises(LogMissing):
            await collect(reader, 8, 0)

    run(scenario())


def test_a_quiet_log_yields_empty_batches_for_heartbeats(make_log) -> None:
    async def scenario() -> None:
        log = await make_log()
        await log.open(9)
        await log.append(9, "start", {})
        batches: list[list[StreamEvent]] = []

        async def read() -> None:
            async for batch in log.follow(9, 1, 0.05):
                batches.append(batch)
                if len(batches) >= 3:
                    return

        await asyncio.wait_for(read(), 5)
        assert batches[:3] == [[], [], []]
        await log.close(9)

    run(scenario())


def test_finished_logs_past_the_memory_budget_go_oldest_first_and_open_ones_stay(make_log) -> None:
    async def scenario() -> None:
        log = await make_log()
        for message_id in (1, 2, 3):
            await log.open(message_id)
            await log.append(message_id, "delta", {"text": "x" * 4000})
        await log.close(1)
        await log.close(2)
        log.sweep()  # 12 KB held against a 10 KB budget: the oldest finished log goes
        if isinstance(log, MemoryStreamLog):
            with pytest.raises(LogMissing):
                await collect(log, 1, 0)
        assert texts(await collect(log, 2, 0)) == ["x" * 4000]
        await log.close(3)

    run(scenario())

