"""Versions of a turn: regenerate, edit, list, diff, and branch into a new thread."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from convo.api.deps import CurrentUser, Id, NoNul, ServicesDep
from convo.api.messages import SSE_RESPONSE, sse
from convo.api.threads import Temperature, thread_with_messages
from convo.domain.chat import Started
from convo.schemas import MessagePublic, ThreadWithMessages

router = APIRouter(prefix="/api/convo/messages", tags=["versions"], dependencies=[NoNul])


class RegenerateIn(BaseModel):
    model: str | None = Field(None, max_length=200)
    temperature: Temperature | None = None
    max_tokens: int | None = Field(None, ge=1, le=1_000_000)


class EditIn(BaseModel):
    content: str = Field(min_length=1, max_length=200_000)
    regenerate: bool = True


class VersionsPublic(BaseModel):
    items: list[MessagePublic]


class ChangePublic(BaseModel):
    op: Literal["equal", "insert", "delete"]
    text: str


class DiffPublic(BaseModel):
    from_id: int
    to_id: int
    unified: str
    changes: list[ChangePublic]


@router.post("/{message_id}/regenerate", responses=SSE_RESPONSE, response_class=StreamingResponse)
async def regenerate(message_id: Id, body: RegenerateIn, user: CurrentUser, services: ServicesDep):
    started = await services.chat.regenerate(user, message_id, **body.model_dump())
    return sse(services.chat.stream(started.message_id, 0))


@router.post(
    "/{message_id}/edit",
    responses={**SSE_RESPONSE, 201: {"model": MessagePublic, "description": "A version saved without an answer"}},
    response_class=StreamingResponse,
)
async def edit(message_id: Id, body: EditIn, user: CurrentUser, services: ServicesDep):
    """A new version of a user message streams a fresh answer (unless `regenerate` is false); a new
    version of an answer is a hand correction and answers with the saved message."""
    result = await services.versions.edit(user, message_id, body.content, regenerate=body.regenerate)
    if isinstance(result, Started):
        return sse(services.chat.stream(result.message_id, 0))
    return JSONResponse(MessagePublic.of(result).model_dump(mode="json"), status_code=201)


@router.get("/{message_id}/versions")
async def versions(message_id: Id, user: CurrentUser, services: ServicesDep) -> VersionsPublic:
    return VersionsPublic(items=[MessagePublic.of(v) for v in await services.versions.list(user, message_id)])


@router.get("/{message_id}/diff")
async def diff(message_id: Id, against: Annotated[Id, Query()], *, user: CurrentUser, services: ServicesDep) -> DiffPublic:
    result = await services.versions.diff(user, message_id, against)
    return DiffPublic(
        from_id=result.from_id, to_id=result.to_id, unified=result.unified,
        changes=[ChangePublic(op=c.op, text=c.text) for c in result.changes],
    )


@router.post("/{message_id}/branch", status_code=201)
async def branch(message_id: Id, user: CurrentUser, services: ServicesDep) -> ThreadWithMessages:
    """Start a new thread from the conversation up to this message."""
    return thread_with_messages(await services.versions.branch(user, message_id))
