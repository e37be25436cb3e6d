"""Any OpenAI-compatible chat server (OpenAI, vLLM, Ollama, llama.cpp server, LM Studio)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator

import httpx2
import openai

from convo.llm import tokens
from convo.llm.base import ChatRequest, Chunk, ModelSpec, TextDelta, UpstreamError, Usage, redact

log = logging.getLogger(__name__)

# Listing models of a server that has hundreds (OpenAI itself) should not offer embeddings or audio.
_NOT_CHAT = ("embedding", "whisper", "tts", "dall-e", "moderation", "davinci", "babbage", "transcribe")


def sdk_http_client(timeout: float) -> httpx2.AsyncClient:
    """The HTTP client the official SDKs use (httpx2), with no cap on concurrent streams: httpx's
    default of 100 connections would queue the 101st answer behind the others."""
    return httpx2.AsyncClient(
        timeout=httpx2.Timeout(timeout, connect=min(timeout, 10.0)),
        limits=httpx2.Limits(max_connections=None, max_keepalive_connections=256),
        follow_redirects=True,
    )


class OpenAIProvider:
    kind = "openai"

    def __init__(
        self,
        name: str,
        *,
        base_url: str | None,
        api_key: str | None,
        models: list[ModelSpec] | None,
        timeout: float,
    ) -> None:
        self.name = name
        self._configured = models
        self._discovered: tuple[float, list[ModelSpec]] | None = None
        self._http = sdk_http_client(timeout)
        self._client = openai.AsyncOpenAI(
            base_url=base_url, api_key=api_key or "not-needed", max_retries=0, http_client=self._http,
            timeout=self._http.timeout,
        )
        self._completions = self._client.chat.completions.with_streaming_response  # imports lazily: do it now

    async def models(self) -> list[ModelSpec]:
        if self._configured is not None:
            return self._configured
        # No list given: ask the server, and remember its answer for a minute.
        now = time.monotonic()
        if self._discovered and now - self._discovered[0] < 60:
            return self._discovered[1]
        try:
            page = await self._client.models.list(timeout=5.0)
            ids = sorted(m.id for m in page.data if not any(word in m.id for word in _NOT_CHAT))
            found = [ModelSpec(id=i) for i in ids]
        except Exception as exc:
            log.warning("could not list models of provider %s: %s", self.name, redact(str(exc)))
            found = self._discovered[1] if self._discovered else []
        self._discovered = (now, found)
        return found

    def count_tokens(self, model: str, text: str) -> int:
        return tokens.count(model, text)

    async def count_prompt(self, request: ChatRequest) -> int | None:
        return None  # count_tokens is this model's own tokenizer

    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        kwargs: dict = {}
        if request.temperature is not None:
            kwargs["temperature"] = request.temperature
        if request.max_tokens is not None:
            kwargs["max_tokens"] = request.max_tokens
        started = False
        try:
            # The SDK builds, authenticates and checks the request; the body is read raw, because
            # building its pydantic chunk objects costs ~120 µs a token against ~5 µs for json.loads.
            async with self._completions.create(
                model=request.model,
                messages=[{"role": m.role, "content": m.content} for m in request.messages],
                stream=True,
                stream_options={"include_usage": True},
                **kwargs,
            ) as response:
                finished = False
                async for event in sse_data(response.http_response.aiter_bytes()):
                    started = True
                    if event == b"[DONE]":
                        finished = True
                        break
                    chunk = json.loads(event)
                    if not isinstance(chunk, dict):
                        raise UpstreamError("The model server sent a chunk that is not a JSON object.",
                                            code="upstream_protocol_error")
                    if chunk.get("error"):  # some servers report failures inside the stream
                        error = chunk["error"]
                        detail = error.get("message", str(error)) if isinstance(error, dict) else str(error)
                        raise UpstreamError(f"The model server failed: {detail}"[:500], code="upstream_error")
                    if usage := chunk.get("usage"):
                        yield Usage(usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0)
                    for choice in chunk.get("choices") or ():
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            yield TextDelta(text)
                        finished = finished or choice.get("finish_reason") is not None
            if not finished:
                # The connection closed before the server said the answer was over: a cut, not an end.
                raise UpstreamError("The model server broke off its answer.", code="upstream_stream_broken")
        except openai.APITimeoutError as exc:
            raise UpstreamError("The model server did not answer in time.", code="upstream_timeout") from exc
        except openai.APIConnectionError as exc:
            raise _connection_error(exc.__cause__ or exc, started) from exc
        except openai.APIStatusError as exc:
            raise status_error(exc.status_code, error_detail(exc.body, exc.message)) from exc
        except (httpx2.TimeoutException, TimeoutError) as exc:
            raise UpstreamError("The model server stopped sending.", code="upstream_timeout") from exc
        except httpx2.TransportError as exc:
            raise _connection_error(exc, started) from exc
        except (json.JSONDecodeError, AttributeError, TypeError, openai.APIResponseValidationError) as exc:
            raise UpstreamError(
                "The model server sent a response that is not valid OpenAI streaming.",
                code="upstream_protocol_error",
            ) from exc

    async def aclose(self) -> None:
        await self._client.close()
        await self._http.aclose()


async def sse_data(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The `data` of each server-sent event in a byte stream (multi-line data joined; comments,
    ids and event names skipped). Works on raw bytes: a line-by-line text pipeline costs more per
    token than everything else Convo does with it."""
    buffer = b""
    async for chunk in chunks:
        buffer += chunk
        if b"\r" in buffer:  # normalise CRLF and CR, but wait for a CR that may start a CRLF
            keep = buffer.endswith(b"\r")
            buffer = buffer[:-1] if keep else buffer
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n") + (b"\r" if keep else b"")
        *events, buffer = buffer.split(b"\n\n")
        for event in events:
            data = [line[5:].removeprefix(b" ") for line in event.split(b"\n") if line.startswith(b"data:")]
            if data:
                yield b"\n".join(data)
    data = [line[5:].removeprefix(b" ") for line in buffer.split(b"\n") if line.startswith(b"data:")]
    if data:
        yield b"\n".join(data)


def _connection_error(exc: BaseException, started: bool) -> UpstreamError:
    if started:
        return UpstreamError("The model server broke off its answer.", code="upstream_stream_broken")
    return UpstreamError(f"Cannot reach the model server ({type(exc).__name__}).", code="upstream_unreachable")


def error_detail(body: object, fallback: str) -> str:
    """The message inside an error body shaped `{"error": {"message": ...}}` (OpenAI and Anthropic)."""
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:500]
    return str(fallback)[:500]


def status_error(status: int, detail: str) -> UpstreamError:
    """Map an upstream HTTP status to an error code a user can act on."""
    if status in (401, 403):
        # Its own words often quote part of the key; the status says enough.
        return UpstreamError(f"The model server refused the API key (HTTP {status}); check the key this "
                             "provider is configured with.", code="upstream_auth")
    if status == 404:
        return UpstreamError(f"The model server does not know this model: {detail}", code="upstream_not_found")
    if status == 429:
        return UpstreamError(f"The model server is rate limiting: {detail}", code="upstream_rate_limited")
    if 400 <= status < 500:
        return UpstreamError(f"The model server rejected the request: {detail}", code="upstream_bad_request")
    return UpstreamError(f"The model server failed ({status}): {detail}", code="upstream_error")
