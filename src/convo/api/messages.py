"""Generation endpoints: each answers with the SSE stream of the new answer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from convo import observability as obs
from convo.api.deps import CurrentUser, Id, NoNul, ServicesDep
from convo.api.threads import Temperature
from convo.errors import InvalidInput

router = APIRouter(tags=["messages"], dependencies=[NoNul])

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "keep-alive"}
SSE_RESPONSE = {200: {"content": {"text/event-stream": {}}, "description": "Server-sent events (see the contract)"}}


class MessageCreate(BaseModel):
    content: str = Field(min_length=1, max_length=200_000)
    parent_id: Id | None = None
    model: str | None = Field(None, max_length=200)
    temperature: Temperature | None = None
    max_tokens: int | None = Field(None, ge=1, le=1_000_000)
    # Ground the answer on these files (the caller's, any thread); unset: the thread's ready files.
    attachment_ids: list[Id] | None = Field(None, max_length=100)


async def _counted(frames: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    obs.SSE_SESSIONS.inc()
    try:
        async for frame in frames:
            yield frame
    finally:
        obs.SSE_SESSIONS.dec()


def sse(frames: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(_counted(frames), media_type="text/event-stream", headers=SSE_HEADERS)


@router.post("/api/threads/{thread_id}/messages", responses=SSE_RESPONSE, response_class=StreamingResponse)
async def send_message(thread_id: Id, body: MessageCreate, user: CurrentUser, services: ServicesDep):
    started = await services.chat.send(user, thread_id, **body.model_dump())
    return sse(services.chat.stream(started.message_id, 0))


@router.get("/api/convo/messages/{message_id}/stream", responses=SSE_RESPONSE, response_class=StreamingResponse)
async def follow_stream(
    message_id: Id,
    user: CurrentUser,
    services: ServicesDep,
    after: Annotated[int | None, Query(ge=0)] = None,
    last_event_id: Annotated[str | None, Header(max_length=32)] = None,
):
    if last_event_id is not None and last_event_id.strip():
        try:
            after = int(last_event_id)
        except ValueError:
            raise InvalidInput("Last-Event-ID must be an event number.", code="invalid_last_event_id") from None
        if after < 0:
            raise InvalidInput("Last-Event-ID must not be negative.", code="invalid_last_event_id")
    return sse(await services.chat.open_stream(user, message_id, after or 0))


@router.post("/api/convo/messages/{message_id}/cancel", status_code=202)
async def cancel_message(message_id: Id, user: CurrentUser, services: ServicesDep) -> dict[str, bool]:
    await services.chat.cancel(user, message_id)
    return {"accepted": True}
