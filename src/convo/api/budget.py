"""Today's spending against the caller's daily budget."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel

from convo.api.deps import CurrentUser, ServicesDep

router = APIRouter(prefix="/api", tags=["budget"])


class BudgetPublic(BaseModel):
    limit_usd: float | None  # None: no budget applies
    spent_usd: float
    reserved_usd: float  # the worst case of answers still being written
    remaining_usd: float | None
    resets_at: datetime


@router.get("/budget")
async def get_budget(user: CurrentUser, services: ServicesDep) -> BudgetPublic:
    return BudgetPublic(**vars(await services.billing.status(user)))
