"""Cancel requests: published by whichever process receives the request, acted on by the one that
runs the generation.

The request itself is recorded in the database (`messages.cancel_requested_at`) by the caller; a bus
only wakes the process that runs the answer. The runner also polls the database, so a lost wake-up
costs a moment, never the cancel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from convo import observability as obs

log = logging.getLogger(__name__)


class CancelBus(Protocol):
    def on_cancel(self, handler: Callable[[int], None]) -> None: ...

    async def request(self, message_id: int) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class LocalCancelBus:
    """One process: a request reaches this process's runs directly."""

    def __init__(self) -> None:
        self._handlers: list[Callable[[int], None]] = []

    def on_cancel(self, handler: Callable[[int], None]) -> None:
        self._handlers.append(handler)

    async def request(self, message_id: int) -> None:
        for handler in self._handlers:
            handler(message_id)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass


class RedisCancelBus:
    """Several processes: `PUBLISH {prefix}cancel:stream:{id}`; every API process listens on the pattern
    and stops the answer if it runs it. The listener survives Redis restarts: it polls with a timeout
    (never a bare `listen()`, which hangs on a dead connection) and subscribes again after any error."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self._handlers: list[Callable[[int], None]] = []
        self._listener: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()

    def channel(self, message_id: int) -> str:
        return f"{self.prefix}cancel:stream:{message_id}"

    def on_cancel(self, handler: Callable[[int], None]) -> None:
        self._handlers.append(handler)

    async def request(self, message_id: int) -> None:
        for handler in self._handlers:  # the answer may run right here
            handler(message_id)
        try:
            await self.redis.publish(self.channel(message_id), b"1")
        except (RedisError, OSError) as exc:
            obs.REDIS_ERRORS.labels("cancel_publish").inc()
            log.warning("cancel of %s not published (%s); the runner's database poll will see it", message_id, exc)

    async def start(self) -> None:
        self._listener = asyncio.create_task(self._listen(), name="cancel-listener")

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener

    async def _listen(self) -> None:
        pattern = self.channel(0)[:-1] + "*"
        backoff = 0.1
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.psubscribe(pattern)
                self.subscribed.set()
                backoff = 0.1
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    channel = message["channel"]
                    channel = channel.decode() if isinstance(channel, bytes) else channel
                    try:
                        message_id = int(channel.rsplit(":", 1)[1])
                    except ValueError:
                        continue
                    for handler in self._handlers:
                        handler(message_id)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                self.subscribed.clear()
                obs.REDIS_ERRORS.labels("cancel_listen").inc()
                log.warning("cancel listener lost Redis (%s); subscribing again in %.1f s", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
