"""Test helpers: an API client that signs up, and an SSE reader that parses the real byte stream."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx


def run_async(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine to its end on a fresh loop in a thread of its own: Playwright's sync API keeps
    a loop running in the main thread for the whole session, where asyncio.run would refuse."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


@dataclass
class Event:
    id: int | None
    event: str
    data: Any


@dataclass
class Stream:
    """What a client saw on one SSE connection."""

    events: list[Event] = field(default_factory=list)
    pings: int = 0
    headers: dict[str, str] = field(default_factory=dict)

    def of(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.event == kind]

    @property
    def text(self) -> str:
        return "".join(e.data["text"] for e in self.of("delta"))

    @property
    def last(self) -> Event:
        return self.events[-1]

    @property
    def ids(self) -> list[int]:
        return [e.id for e in self.events if e.id is not None]


def parse_sse(lines: Iterator[str], stream: Stream, *, stop_after: int | None = None) -> Stream:
    """Parse `text/event-stream` lines as a browser does (fields, comments, blank-line dispatch)."""
    current: dict[str, Any] = {"data": []}
    for line in lines:
        if line == "":
            if current["data"] or current.get("event"):
                raw = "\n".join(current["data"])
                stream.events.append(
                    Event(
                        int(current["id"]) if current.get("id") else None,
                        current.get("event", "message"),
                        json.loads(raw) if raw else None,
                    )
                )
                if stop_after is not None and len(stream.events) >= stop_after:
                    return stream
            current = {"data": []}
            continue
        if line.startswith(":"):
            if line[1:].strip() == "ping":
                stream.pings += 1
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            current["data"].append(value)
        elif name in ("id", "event"):
            current[name] = value
    return stream


class Api:
    def __init__(self, base_url: str, token: str | None = None) -> None:
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, timeout=httpx.Timeout(30.0))
        self.token = token
        self.user: dict[str, Any] | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def signup(self, email: str, password: str = "correct horse battery") -> dict[str, Any]:
        response = self.http.post("/api/auth/signup", json={"email": email, "password": password})
        assert response.status_code == 201, response.text
        body = response.json()
        self.token, self.user = body["token"], body["user"]
        self.http.cookies.clear()  # bearer only, unless a test opts into cookies
        return body

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return self.http.request(method, path, headers=headers, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)

    def thread(self, **body: Any) -> dict[str, Any]:
        response = self.post("/api/threads", json=body)
        assert response.status_code == 201, response.text
        return response.json()

    def stream(self, method: str, path: str, *, stop_after: int | None = None, **kwargs: Any) -> Stream:
        """Open an SSE request and read it to its end (or `stop_after` events, then hang up)."""
        headers = {**self.headers, **kwargs.pop("headers", {})}
        with self.http.stream(method, path, headers=headers, **kwargs) as response:
            stream = Stream(headers=dict(response.headers))
            if response.status_code != 200:
                response.read()
                raise AssertionError(f"{response.status_code}: {response.text}")
            return parse_sse(response.iter_lines(), stream, stop_after=stop_after)

    def send(self, thread_id: int, content: str, **body: Any) -> Stream:
        stop_after = body.pop("stop_after", None)
        return self.stream("POST", f"/api/threads/{thread_id}/messages", json={"content": content, **body},
                           stop_after=stop_after)

    def follow(self, message_id: int, after: int | None = None, **kwargs: Any) -> Stream:
        headers = {"Last-Event-ID": str(after)} if after is not None else {}
        return self.stream("GET", f"/api/convo/messages/{message_id}/stream", headers=headers, **kwargs)

    def close(self) -> None:
        self.http.close()


def health_latencies(base_url: str, busy: Callable[[], Any], *, gap: float = 0.02) -> list[float]:
    """Seconds each GET /healthz took, one after another, while `busy` runs in a thread of its own."""
    box: dict[str, BaseException] = {}

    def run() -> None:
        try:
            busy()
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=run)
    times = []
    with httpx.Client(base_url=base_url, timeout=10) as client:
        client.get("/healthz")  # the connection is open before timing starts
        worker.start()
        while worker.is_alive():
            started = time.perf_counter()
            assert client.get("/healthz").status_code == 200
            times.append(time.perf_counter() - started)
            time.sleep(gap)
    worker.join()
    if "error" in box:
        raise box["error"]
    return times


def assert_responsive(base_url: str, busy: Callable[[], Any], *, limit: float = 0.1, tries: int = 2) -> list[float]:
    """/healthz answers within `limit` while `busy` runs. A stalled event loop shows as one long probe,
    so every probe counts; for other processes on the machine, one in fifty may take up to 2.5 times
    as long, and one more try is allowed."""
    for _ in range(tries):
        times = sorted(health_latencies(base_url, busy))
        slow = [t for t in times if t >= limit]
        if len(times) >= 5 and len(slow) <= len(times) // 50 and times[-1] < 2.5 * limit:
            return times
    raise AssertionError(f"/healthz was slow while busy: {len(times)} probes, slowest {times[-5:]}")
