"""Retrieval search over the caller's uploaded files, with every score exposed."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from convo.api.deps import CurrentUser, Id, ServicesDep

router = APIRouter(prefix="/api/rag", tags=["rag"])


class RagSearchIn(BaseModel):
    q: str = Field(min_length=1, max_length=10_000)
    thread_id: Id | None = None
    attachment_ids: list[Id] | None = Field(None, max_length=100)
    k: int = Field(8, ge=1, le=100)
    mode: Literal["hybrid", "bm25", "vector", "rrf"] = "hybrid"


class RagHit(BaseModel):
    chunk_id: int
    attachment_id: int
    filename: str
    text: str
    position: int
    score: float
    bm25_score: float | None
    vector_score: float | None


class RagResults(BaseModel):
    items: list[RagHit]


@router.post("/search")
async def rag_search(body: RagSearchIn, user: CurrentUser, services: ServicesDep) -> RagResults:
    hits = await services.files.search(user, body.q, thread_id=body.thread_id, attachment_ids=body.attachment_ids,
                                       k=body.k, mode=body.mode)
    return RagResults(items=[RagHit(chunk_id=h.chunk_id, attachment_id=h.attachment_id, filename=h.filename,
                                    text=h.text, position=h.position, score=h.score, bm25_score=h.bm25_score,
                                    vector_score=h.vector_score) for h in hits])
