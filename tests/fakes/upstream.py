"""A real HTTP server that speaks OpenAI's and Anthropic's streaming protocols, for tests and benches.

Tests steer it per request with a directive in the last user message, e.g.

    "hello [[fake reply='Hi there' first=0.2 interval=0.01 usage=12,34]]"
    "[[fake tokens=500 interval=0.05]]"          a long, slow answer
    "[[fake fail=http_500]]"                      http_401 / http_429 / http_400 / http_500
    "[[fake fail=break after=3]]"                 three tokens, then the connection is cut
    "[[fake fail=garbage after=2]]"               two tokens, then data that is not JSON
    "[[fake fail=hang after=1]]"                  one token, then silence until the client gives up

Without a directive it answers "You said: <the message>" a word at a time, with the server's
default timing (constructor arguments, or command-line flags when run as a program for benches).
Every request's JSON body is kept in `requests` for assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shlex
import socket
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

DIRECTIVE = re.compile(r"\[\[fake(.*?)\]\]", re.S)
MODELS = ["fake-gpt", "fake-mini", "gpt-4o-mini"]


@dataclass
class Plan:
    tokens: list[str]
    first: float
    interval: float
    fail: str | None = None
    after: int = 0
    usage: tuple[int, int] | None = None
    send_usage: bool = True


@dataclass
class FakeUpstream:
    first: float = 0.0
    interval: float = 0.0
    tokens: int | None = None  # default answer length in words, instead of echoing the message
    host: str = "127.0.0.1"
    port: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None

    # -- behaviour ---------------------------------------------------------------------------------

    def plan(self, body: dict[str, Any], last_user: str) -> Plan:
        options: dict[str, str] = {}
        match = DIRECTIVE.search(last_user)
        if match:
            for item in shlex.split(match.group(1)):
                key, _, value = item.partition("=")
                options[key] = value
        text = DIRECTIVE.sub("", last_user).strip()
        if "reply" in options:
            reply = options["reply"]
        elif "tokens" in options or self.tokens:
            count = int(options.get("tokens") or self.tokens or 0)
            reply = " ".join(f"w{i}" for i in range(count))
        else:
            reply = f"You said: {text}"
        words = re.findall(r"\S+\s*|\s+", reply) or [""]
        usage = None
        if "usage" in options:
            p, c = options["usage"].split(",")
            usage = (int(p), int(c))
        return Plan(
            tokens=words,
            first=float(options.get("first", self.first)),
            interval=float(options.get("interval", self.interval)),
            fail=options.get("fail"),
            after=int(options.get("after", 0)),
            usage=usage,
            send_usage="nousage" not in options,
        )

    # -- OpenAI ------------------------------------------------------------------------------------

    async def _openai_chat(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append({"api": "openai", "headers": dict(request.headers), **body})
        last_user = next((m["content"] for m in reversed(body["messages"]) if m["role"] == "user"), "")
        plan = self.plan(body, _text(last_user))
        if error := _http_failure(plan.fail):
            return JSONResponse({"error": {"message": _openai_message(error), "type": "fake"}}, status_code=error)
        prompt_tokens = sum(len(_text(m["content"]).split()) for m in body["messages"])
        usage = plan.usage or (prompt_tokens, len(plan.tokens))
        model = body.get("model", "fake-gpt")
        if not body.get("stream"):
            return JSONResponse(
                {
                    "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()), "model": model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(plan.tokens)},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1],
                              "total_tokens": sum(usage)},
                }
            )
        include_usage = bool((body.get("stream_options") or {}).get("include_usage")) and plan.send_usage

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            payload = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": model,
                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            return b"data: " + json.dumps(payload).encode() + b"\n\n"

        async def events() -> AsyncIterator[tuple[bytes, bool]]:
            yield chunk({"role": "assistant", "content": ""}), False
            async for token in self._paced(plan):
                yield chunk({"content": token}), True
            yield chunk({}, "stop"), False
            if include_usage:
                payload = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": model,
                           "choices": [], "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1],
                                                    "total_tokens": sum(usage)}}
                yield b"data: " + json.dumps(payload).encode() + b"\n\n", False
            yield b"data: [DONE]\n\n", False

        return StreamingResponse(self._failing(events(), plan), media_type="text/event-stream")

    async def _openai_models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": m, "object": "model", "created": 0,
                                                         "owned_by": "fake"} for m in MODELS]})

    # -- Anthropic ---------------------------------------------------------------------------------

    async def _anthropic_messages(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append({"api": "anthropic", "headers": dict(request.headers), **body})
        last_user = next((m["content"] for m in reversed(body["messages"]) if m["role"] == "user"), "")
        plan = self.plan(body, _text(last_user))
        if error := _http_failure(plan.fail):
            kind = {401: "authentication_error", 429: "rate_limit_error", 400: "invalid_request_error"}.get(
                error, "api_error")
            return JSONResponse({"type": "error", "error": {"type": kind, "message": f"fake {plan.fail}"}},
                                status_code=error)
        usage = plan.usage or (_claude_tokens(body), len(plan.tokens))

        def event(name: str, data: dict[str, Any]) -> bytes:
            return f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n".encode()

        async def events() -> AsyncIterator[tuple[bytes, bool]]:
            yield event("message_start", {"message": {
                "id": "msg_fake", "type": "message", "role": "assistant", "model": body.get("model"),
                "content": [], "stop_reason": None, "stop_sequence": None,
                "usage": {"input_tokens": usage[0], "output_tokens": 1}}}), False
            yield event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}), False
            yield b"event: ping\ndata: {\"type\": \"ping\"}\n\n", False
            async for token in self._paced(plan):
                yield event("content_block_delta",
                            {"index": 0, "delta": {"type": "text_delta", "text": token}}), True
            yield event("content_block_stop", {"index": 0}), False
            yield event("message_delta", {"delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                          "usage": {"output_tokens": usage[1]}}), False
            yield event("message_stop", {}), False

        return StreamingResponse(self._failing(events(), plan), media_type="text/event-stream")

    async def _anthropic_count_tokens(self, request: Request) -> Response:
        return JSONResponse({"input_tokens": _claude_tokens(await request.json())})

    # -- shared ------------------------------------------------------------------------------------

    async def _paced(self, plan: Plan) -> AsyncIterator[str]:
        if plan.first:
            await asyncio.sleep(plan.first)
        for i, token in enumerate(plan.tokens):
            if i and plan.interval:
                await asyncio.sleep(plan.interval)
            yield token

    async def _failing(self, events: AsyncIterator[tuple[bytes, bool]], plan: Plan) -> AsyncIterator[bytes]:
        """Pass events through, failing mid-stream as the plan says (after `after` text tokens)."""
        sent = 0
        async for frame, is_token in events:
            if plan.fail in ("break", "garbage", "hang") and is_token and sent >= plan.after:
                if plan.fail == "garbage":
                    yield b"data: {this is not json\n\n"
                    return
                if plan.fail == "hang":
                    await asyncio.sleep(3600)
                raise ConnectionResetError("fake upstream cut the stream")
            sent += is_token
            yield frame

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/v1/chat/completions", self._openai_chat, methods=["POST"]),
            Route("/v1/models", self._openai_models, methods=["GET"]),
            Route("/v1/messages", self._anthropic_messages, methods=["POST"]),
            Route("/v1/messages/count_tokens", self._anthropic_count_tokens, methods=["POST"]),
        ])

    # -- running -----------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def anthropic_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> FakeUpstream:
        if not self.port:
            self.port = free_port()
        config = uvicorn.Config(self.app(), host=self.host, port=self.port, log_level="warning",
                                lifespan="off", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake upstream did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server:
            self._server.should_exit = True
        if self._thread:
            self._thread.join(timeout=5)


def _text(content: Any) -> str:
    if isinstance(content, list):  # content blocks
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content or "")


def _claude_tokens(body: dict[str, Any]) -> int:
    """The fake's own tokenizer for its Anthropic side: a token per word, and two more per character
    outside ASCII, so that, like Claude's, it counts some text well above cl100k."""
    texts = [_text(m["content"]) for m in body["messages"]] + [str(body.get("system", ""))]
    return sum(len(t.split()) + 2 * sum(1 for ch in t if ord(ch) > 127) for t in texts)


# OpenAI's 401 echoes the key it was given, masked but for its ends.
MASKED_KEY = "sk-test***********1234"


def _openai_message(status: int) -> str:
    if status == 401:
        return (f"Incorrect API key provided: {MASKED_KEY}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.")
    return f"fake http_{status}"


def _http_failure(fail: str | None) -> int | None:
    if fail and fail.startswith("http_"):
        return int(fail.removeprefix("http_"))
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description="Fake OpenAI/Anthropic streaming server")
    parser.add_argument("--port", type=int, default=9900)
    parser.add_argument("--first", type=float, default=0.05, help="seconds before the first token")
    parser.add_argument("--interval", type=float, default=0.01, help="seconds between tokens")
    parser.add_argument("--tokens", type=int, default=200, help="tokens per answer")
    args = parser.parse_args()
    fake = FakeUpstream(first=args.first, interval=args.interval, tokens=args.tokens, port=args.port)
    uvicorn.run(fake.app(), host="127.0.0.1", port=args.port, log_level="warning", lifespan="off",
                backlog=4096, timeout_keep_alive=30)


if __name__ == "__main__":
    main()
