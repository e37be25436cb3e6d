"""A small thread pool with a bounded queue, for CPU-heavy work that anonymous callers can start
(password hashing): a flood fills this pool and is turned away, instead of queueing on the event loop's
default executor that uploads, token counting and embeddings share."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from convo.errors import Busy

T = TypeVar("T")


class BoundedPool:
    def __init__(self, name: str, *, threads: int, queue: int) -> None:
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name)
        self._capacity = threads + queue
        # Running plus waiting. Released when the work ends, not when its caller stops waiting, so a
        # cancelled request cannot let more work in than the pool can hold.
        self._pending = 0
        self._lock = threading.Lock()

    def _release(self, _: Future[Any]) -> None:
        with self._lock:
            self._pending -= 1

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        with self._lock:
            if self._pending >= self._capacity:
                raise Busy("The server is busy; try again in a moment.", retry_after=1)
            self._pending += 1
        future = self._executor.submit(fn, *args)
        future.add_done_callback(self._release)
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
