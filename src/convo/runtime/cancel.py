"""Cancel requests: published by whichever process receives the request, acted on by the one that
runs the generation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class CancelBus(Protocol):
    def on_cancel(self, handler: Callable[[int], None]) -> None: ...

    async def request(self, message_id: int) -> None: ...


class LocalCancelBus:
    """One process: a request reaches this process's runs directly."""

    def __init__(self) -> None:
        self._handlers: list[Callable[[int], None]] = []

    def on_cancel(self, handler: Callable[[int], None]) -> None:
        self._handlers.append(handler)

    async def request(self, message_id: int) -> None:
        for handler in self._handlers:
            handler(message_id)
