"""Anthropic's Messages API through the official SDK."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

import anthropic
import httpx2

from convo.llm import tokens
from convo.llm.base import ChatMessage, ChatRequest, Chunk, ModelSpec, TextDelta, UpstreamError, Usage
from convo.llm.openai_compat import error_detail, sdk_http_client, sse_data, status_error
from convo.llm.prices import ANTHROPIC_DEFAULT_MODELS

log = logging.getLogger(__name__)

DEFAULT_MAX_TOKENS = 4096


class AnthropicProvider:
    kind = "anthropic"

    def __init__(
        self,
        name: str,
        *,
        api_key: str | None,
        base_url: str | None,
        models: list[ModelSpec] | None,
        timeout: float,
    ) -> None:
        self.name = name
        self._models = models if models is not None else [ModelSpec(id=m) for m in ANTHROPIC_DEFAULT_MODELS]
        self._http = sdk_http_client(timeout)
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key, base_url=base_url, max_retries=0, http_client=self._http, timeout=self._http.timeout
        )
        self._messages = self._client.messages.with_streaming_response  # imports lazily: do it now

    async def models(self) -> list[ModelSpec]:
        return self._models

    def count_tokens(self, model: str, text: str) -> int:
        # Anthropic publishes no tokenizer for current models; cl100k is the usual close estimate, good
        # enough to fit a prompt in a 200k window. Budgets use count_prompt, which does not come out low.
        return tokens.count("gpt-4", text)

    async def count_prompt(self, request: ChatRequest) -> int | None:
        """Anthropic's own count (its token-counting endpoint, free of charge); if that cannot be had,
        the prompt's UTF-8 bytes, which a byte-level BPE tokenizer never exceeds."""
        system, turns = _split_system(request.messages)
        try:
            counted = await self._client.messages.count_tokens(
                model=request.model, messages=turns, **({"system": system} if system else {}))
            return int(counted.input_tokens)
        except (anthropic.APIError, httpx2.HTTPError, AttributeError, TypeError, ValueError) as exc:
            log.warning("Anthropic token count unavailable (%s); reserving by bytes", type(exc).__name__)
            return sum(len(m.content.encode()) + 4 for m in request.messages)

    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        system, turns = _split_system(request.messages)
        kwargs: dict = {}
        if system:
            kwargs["system"] = system
        if request.temperature is not None:
            # Anthropic's range is 0..1. This SDK release no longer names the parameter, while the
            # Messages API still takes it, so it travels in the body.
            kwargs["extra_body"] = {"temperature": min(max(request.temperature, 0.0), 1.0)}
        prompt_tokens = 0
        started = False
        try:
            # Read raw like the OpenAI provider: the SDK's per-event objects cost more than the stream.
            async with self._messages.create(
                model=request.model,
                max_tokens=request.max_tokens or DEFAULT_MAX_TOKENS,
                messages=turns,
                stream=True,
                **kwargs,
            ) as response:
                finished = False
                async for data in sse_data(response.http_response.aiter_bytes()):
                    started = True
                    event = json.loads(data)
                    kind = event.get("type")
                    if kind == "message_start":
                        prompt_tokens = (event["message"].get("usage") or {}).get("input_tokens") or 0
                    elif kind == "content_block_delta":
                        delta = event.get("delta") or {}
                        if delta.get("type") == "text_delta" and delta.get("text"):
                            yield TextDelta(delta["text"])
                    elif kind == "message_delta" and event.get("usage"):
                        yield Usage(prompt_tokens, event["usage"].get("output_tokens") or 0)
                    elif kind == "message_stop":
                        finished = True
                    elif kind == "error":
                        error = event.get("error") or {}
                        raise UpstreamError(f"Anthropic failed: {error.get('message', error)}"[:500],
                                            code="upstream_error")
            if not finished:
                raise _connection_error(started=True)
        except anthropic.APITimeoutError as exc:
            raise UpstreamError("Anthropic did not answer in time.", code="upstream_timeout") from exc
        except anthropic.APIConnectionError as exc:
            raise _connection_error(started) from exc
        except anthropic.APIStatusError as exc:
            raise status_error(exc.status_code, error_detail(exc.body, exc.message)) from exc
        except (httpx2.TimeoutException, TimeoutError) as exc:
            raise UpstreamError("Anthropic stopped sending.", code="upstream_timeout") from exc
        except httpx2.TransportError as exc:
            raise _connection_error(started) from exc
        except (json.JSONDecodeError, AttributeError, KeyError, TypeError, anthropic.APIResponseValidationError) as exc:
            raise UpstreamError(
                "Anthropic sent a response that is not a valid event stream.", code="upstream_protocol_error"
            ) from exc

    async def aclose(self) -> None:
        await self._client.close()
        await self._http.aclose()


def _split_system(messages: list[ChatMessage]) -> tuple[str, list[dict]]:
    """Anthropic takes the system prompt apart and wants turns that alternate, starting with the user."""
    system = "\n\n".join(m.content for m in messages if m.role == "system")
    turns: list[dict] = []
    for m in messages:
        if m.role == "system" or not m.content:
            continue
        if turns and turns[-1]["role"] == m.role:
            turns[-1]["content"] += "\n\n" + m.content
        else:
            turns.append({"role": m.role, "content": m.content})
    if turns and turns[0]["role"] != "user":
        turns.insert(0, {"role": "user", "content": "(continued)"})
    return system, turns


def _connection_error(started: bool) -> UpstreamError:
    if started:
        return UpstreamError("Anthropic broke off its answer.", code="upstream_stream_broken")
    return UpstreamError("Cannot reach Anthropic.", code="upstream_unreachable")

