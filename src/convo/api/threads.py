from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from convo.api.deps import CurrentUser, Id, NoNul, ServicesDep
from convo.domain.threads import ThreadView
from convo.schemas import MessagePublic, ThreadPublic, ThreadWithMessages

router = APIRouter(prefix="/api/threads", tags=["threads"], dependencies=[NoNul])

Temperature = Annotated[float, Field(ge=0, le=2)]


class ThreadCreate(BaseModel):
    title: str | None = Field(None, max_length=300)
    model: str | None = Field(None, max_length=200)
    temperature: Temperature | None = None
    system_prompt: str | None = Field(None, max_length=20_000)


class ThreadUpdate(ThreadCreate):
    pass


class ThreadsPublic(BaseModel):
    items: list[ThreadPublic]
    next_cursor: str | None


class SwitchIn(BaseModel):
    message_id: Id


def thread_with_messages(view: ThreadView) -> ThreadWithMessages:
    return ThreadWithMessages(
        **ThreadPublic.of(view.thread).model_dump(), messages=[MessagePublic.of(m) for m in view.messages]
    )


@router.post("", status_code=201)
async def create_thread(body: ThreadCreate, user: CurrentUser, services: ServicesDep) -> ThreadPublic:
    thread = await services.threads.create(user, **body.model_dump())
    return ThreadPublic.of(thread)


@router.get("")
async def list_threads(
    user: CurrentUser,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> ThreadsPublic:
    threads, next_cursor = await services.threads.list(user, limit=limit, cursor=cursor)
    return ThreadsPublic(items=[ThreadPublic.of(t) for t in threads], next_cursor=next_cursor)


@router.get("/{thread_id}")
async def get_thread(thread_id: Id, user: CurrentUser, services: ServicesDep) -> ThreadWithMessages:
    return thread_with_messages(await services.threads.get(user, thread_id))


@router.patch("/{thread_id}")
async def update_thread(
    thread_id: Id, body: ThreadUpdate, user: CurrentUser, services: ServicesDep
) -> ThreadWithMessages:
    view = await services.threads.update(user, thread_id, **body.model_dump(exclude_unset=True))
    return thread_with_messages(view)


@router.delete("/{thread_id}", status_code=204)
async def delete_thread(thread_id: Id, user: CurrentUser, services: ServicesDep) -> None:
    await services.threads.delete(user, thread_id)
    await services.files.sweep(user.id)  # the thread's attachments went with it; now their originals


@router.post("/{thread_id}/switch")
async def switch_branch(thread_id: Id, body: SwitchIn, user: CurrentUser, services: ServicesDep) -> ThreadWithMessages:
    return thread_with_messages(await services.threads.switch(user, thread_id, body.message_id))
