"""The end of an answer as a client sees it when its live log is gone: replayed from the database in
short form, numbered as the live stream numbered it."""

from __future__ import annotations

from typing import Any

from convo.schemas import message_json


def replay(view: Any, after: int) -> list[tuple[int, str, dict[str, Any]]]:
    """Events of a finished answer whose live log is gone: `start`, its whole text, and the end under
    its original id. A client that saw part of the live stream gets the end, whose message holds
    the complete text."""
    message = view.message
    final = message.event_seq
    if message.status == "interrupted":
        # The process died after sending events its last checkpoint did not count: a client may be
        # past `final`. It still gets the end, numbered after what it saw.
        final = max(final, after + 1)
    events: list[tuple[int, str, dict[str, Any]]] = []
    if after < 1:
        events.append((1, "start", {"thread_id": message.thread_id, "user_message": None,
                                    "assistant_message": message_json(view)}))
    citations = (message.meta or {}).get("citations")
    first_delta = 3 if citations else 2
    if citations and after < 2 < final:
        events.append((2, "citations", {"items": citations}))
    if after < first_delta < final and message.content:
        events.append((first_delta, "delta", {"text": message.content}))
    if after < final:
        if message.status == "error":
            events.append((final, "error", (message.meta or {}).get("error") or {"code": "upstream_error",
                                                                                 "message": "Failed."}))
        elif message.status == "interrupted":
            events.append((final, "error", interrupted_error()))
        else:
            meta = message.meta or {}
            if final - 1 > first_delta:
                events.append((final - 1, "usage", {k: meta.get(k) for k in
                                                    ("prompt_tokens", "completion_tokens", "cost_usd")}))
            events.append((final, "done", {"message": message_json(view)}))
    return events


def interrupted_error() -> dict[str, str]:
    return {"code": "interrupted", "message": "The server stopped before this answer was finished."}
