"""Token counts of a draft, with the tokenizer of the model that would answer it."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from pydantic import BaseModel, Field

from convo.api.deps import CurrentUser, ServicesDep

router = APIRouter(prefix="/api/tokens", tags=["tokens"])


class TokenCountIn(BaseModel):
    model: str | None = Field(None, max_length=200)
    # As long as a message may be, so the composer can count anything it can send.
    text: str = Field(max_length=200_000)


class TokenCountOut(BaseModel):
    model: str
    tokens: int


@router.post("/count")
async def count_tokens(body: TokenCountIn, user: CurrentUser, services: ServicesDep) -> TokenCountOut:
    resolved = await services.registry.resolve(body.model)
    # Tokenizers are CPU-bound (and the local one may load its model first): keep the event loop free.
    tokens = await asyncio.to_thread(resolved.provider.count_tokens, resolved.model.upstream_id, body.text)
    return TokenCountOut(model=resolved.model.id, tokens=tokens)
