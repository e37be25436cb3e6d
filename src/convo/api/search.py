"""Search everything the caller has said or been answered (the Cmd+K palette sits on this)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, field_validator

from convo.api.deps import CurrentUser, ServicesDep
from convo.domain.search import Filters

router = APIRouter(prefix="/api/convo", tags=["search"])


class SearchIn(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    # Long enough for anything pasted into a search box; parsing keeps the first 32 terms.
    q: str = Field(max_length=10_000)
    limit: int = Field(20, ge=1, le=100)
    cursor: str | None = Field(None, max_length=500)
    thread_id: int | None = Field(None, ge=1, le=2**31 - 1)
    role: Literal["user", "assistant", "system"] | None = None
    since: datetime | None = Field(None, alias="from")
    until: datetime | None = Field(None, alias="to")

    @field_validator("since", "until")
    @classmethod
    def _utc_in_range(cls, moment: datetime | None) -> datetime | None:
        """A time without an offset is UTC (so `from` and `to` always compare); years are those a message
        can have."""
        if moment is None:
            return None
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
        if not 1970 <= moment.year < 3000:
            raise ValueError("must be a time between the years 1970 and 3000")
        return moment


class SearchHit(BaseModel):
    kind: Literal["message", "thread", "attachment"]
    thread_id: int
    thread_title: str
    message_id: int | None = None
    role: str | None = None
    snippet: str
    score: float
    created_at: datetime
    # For kind "attachment": the file the snippet was found in (its name matches too).
    attachment_id: int | None = None
    filename: str | None = None


class SearchResults(BaseModel):
    items: list[SearchHit]
    next_cursor: str | None


@router.post("/search")
async def search(body: SearchIn, user: CurrentUser, services: ServicesDep) -> SearchResults:
    filters = Filters(thread_id=body.thread_id, role=body.role, since=body.since, until=body.until)
    hits, next_cursor = await services.search.search(
        user, body.q, limit=body.limit, cursor=body.cursor, filters=filters
    )
    return SearchResults(items=[SearchHit(**vars(h)) for h in hits], next_cursor=next_cursor)
