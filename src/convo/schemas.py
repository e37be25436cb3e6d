"""Public shapes of Convo's objects, shared by the HTTP API and the stream's event payloads."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from convo.db.models import Thread, User
from convo.domain.threads import MessageView

MessageStatus = Literal["streaming", "complete", "cancelled", "error", "interrupted"]


class UserPublic(BaseModel):
    id: int
    email: str
    name: str
    role: Literal["admin", "user"]
    created_at: datetime

    @classmethod
    def of(cls, user: User) -> UserPublic:
        return cls(id=user.id, email=user.email, name=user.name, role=user.role, created_at=user.created_at)


class MessagePublic(BaseModel):
    id: int
    thread_id: int
    parent_id: int | None
    role: Literal["system", "user", "assistant"]
    content: str
    status: MessageStatus
    model: str | None
    temperature: float | None
    created_at: datetime
    meta: dict[str, Any]
    version_index: int
    version_count: int
    sibling_ids: list[int]

    @classmethod
    def of(cls, view: MessageView) -> MessagePublic:
        m, v = view.message, view.version
        return cls(
            id=m.id,
            thread_id=m.thread_id,
            parent_id=m.parent_id,
            role=m.role,
            content=m.content,
            status=m.status,
            model=m.model,
            temperature=m.temperature,
            created_at=m.created_at,
            meta=m.meta or {},
            version_index=v.index,
            version_count=v.count,
            sibling_ids=v.sibling_ids,
        )


class ThreadPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    title: str
    model: str | None
    temperature: float | None
    system_prompt: str | None
    current_leaf_id: int | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, thread: Thread) -> ThreadPublic:
        return cls.model_validate(thread)


class ThreadWithMessages(ThreadPublic):
    messages: list[MessagePublic]


def message_json(view: MessageView) -> dict[str, Any]:
    return MessagePublic.of(view).model_dump(mode="json")
