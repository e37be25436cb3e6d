"""What every model provider offers: a list of models and a stream of text deltas and usage."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from convo.errors import ConvoError


@dataclass(frozen=True)
class ChatMessage:
    role: str  # system | user | assistant
    content: str


@dataclass(frozen=True)
class ChatRequest:
    model: str  # the provider's own model id
    messages: list[ChatMessage]
    temperature: float | None = None
    max_tokens: int | None = None


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int


Chunk = TextDelta | Usage


@dataclass(frozen=True)
class ModelInfo:
    id: str  # what users and the API call it (unique across providers)
    provider: str
    upstream_id: str  # what the provider calls it
    label: str
    context_window: int | None = None
    input_usd_per_mtok: float | None = None
    output_usd_per_mtok: float | None = None

    def cost_usd(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (
            prompt_tokens * (self.input_usd_per_mtok or 0.0)
            + completion_tokens * (self.output_usd_per_mtok or 0.0)
        ) / 1_000_000


@dataclass(frozen=True)
class ModelSpec:
    """A model as configured (providers file) or known (built-in table), before ids are made unique."""

    id: str
    label: str | None = None
    context_window: int | None = None
    input_usd_per_mtok: float | None = None
    output_usd_per_mtok: float | None = None
    extra: dict[str, str] = field(default_factory=dict)


# What an upstream may echo of a credential: keys shaped like OpenAI's and Anthropic's (whole or masked
# with stars, as OpenAI's 401 does), other masked fragments, and a long token right after a word that
# names a credential ("Incorrect API key provided: AIza...", "Bearer ...").
_KEYS = re.compile(r"\bsk-[\w*.\-]{3,}|[\w.\-]*\*{4,}[\w.\-]*")
_AFTER_NAME = re.compile(r"(\b(?:key|token|secret|password|bearer)\b[\s:=\"']*(?:provided[\s:=\"']*)?)"
                         r"([\w*.~+/\-]{12,})", re.IGNORECASE)


def redact(text: str) -> str:
    """`text` without anything that looks like a secret, for errors that are stored, shown or logged."""
    return _AFTER_NAME.sub(r"\1[redacted]", _KEYS.sub("[redacted]", text))


class UpstreamError(ConvoError):
    """The model server failed; `code` says how (unreachable, timeout, auth, rate_limited, ...). Its
    message is stored with the answer and exported, so text from the upstream is redacted here."""

    status = 502
    code = "upstream_error"

    def __init__(self, message: str, **kwargs: Any) -> None:
        super().__init__(redact(message), **kwargs)


class Provider(Protocol):
    name: str
    kind: str

    async def models(self) -> list[ModelSpec]: ...

    def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]: ...

    def count_tokens(self, model: str, text: str) -> int: ...

    async def count_prompt(self, request: ChatRequest) -> int | None:
        """The prompt's tokens as the provider will bill them, when `count_tokens` is only an estimate
        that may come out low; None when `count_tokens` is already exact."""
        ...

    async def aclose(self) -> None: ...
