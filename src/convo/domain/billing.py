"""Per-user daily cost budgets that hold under concurrent requests.

A day is a UTC day. What a user spent is the sum of `messages.cost_usd` of the day's answers; what is
reserved is the worst case of the answers still being written (`messages.reserved_usd`). Starting an
answer reserves its worst case in the same transaction that creates it, after taking the user's row lock
(PostgreSQL `FOR UPDATE`; SQLite has one writer at a time), so two tabs or two processes can never both
spend the last dollar. The worst case is real, not a guess: under a budget an answer is capped at
`max_tokens` (ANSWER_TOKENS unless the request asks for fewer), which the provider enforces. Finishing
replaces the reservation with the exact cost. A model without prices costs nothing and is never refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from convo import observability as obs
from convo.db.models import Message, User
from convo.db.session import Database
from convo.errors import ConvoError
from convo.llm.base import ModelInfo

# The longest answer a budgeted request may produce when it does not ask for a length itself.
ANSWER_TOKENS = 4096


class BudgetExceeded(ConvoError):
    status = 402
    code = "budget_exceeded"


@dataclass(frozen=True)
class BudgetStatus:
    limit_usd: float | None
    spent_usd: float
    reserved_usd: float
    remaining_usd: float | None
    resets_at: datetime


@dataclass(frozen=True)
class Reservation:
    reserved_usd: float | None  # None: no budget applies
    max_tokens: int | None  # the cap the provider must enforce


def day_bounds(now: datetime | None = None) -> tuple[datetime, datetime]:
    now = now or datetime.now(UTC)
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return start, start + timedelta(days=1)


class Billing:
    def __init__(self, db: Database, default_limit: float | None) -> None:
        self.db = db
        self.default_limit = default_limit

    def limit_for(self, daily_budget_usd: float | None) -> float | None:
        return daily_budget_usd if daily_budget_usd is not None else self.default_limit

    async def status(self, user: User) -> BudgetStatus:
        async with self.db.read() as session:
            limit = self.limit_for(await session.scalar(select(User.daily_budget_usd).where(User.id == user.id)))
            spent, reserved = await _day_totals(session, user.id)
        _, resets_at = day_bounds()
        remaining = None if limit is None else max(0.0, limit - spent - reserved)
        return BudgetStatus(limit, round(spent, 6), round(reserved, 6), _round(remaining), resets_at)

    async def reserve(
        self, session: Any, user_id: int, model: ModelInfo, prompt_tokens: int, max_tokens: int | None
    ) -> Reservation:
        """Inside the caller's write transaction: reserve the answer's worst case or refuse it (402)."""
        if not (model.input_usd_per_mtok or model.output_usd_per_mtok):
            return Reservation(None, max_tokens)
        # The row lock orders concurrent reservations of one user (SQLite: the writer lock already does).
        row = select(User.daily_budget_usd).where(User.id == user_id)
        if not self.db.is_sqlite:
            row = row.with_for_update()
        limit = self.limit_for(await session.scalar(row))
        if limit is None:
            return Reservation(None, max_tokens)
        room = model.context_window - prompt_tokens if model.context_window else ANSWER_TOKENS
        cap = max(1, min(max_tokens or ANSWER_TOKENS, room))
        worst = model.cost_usd(prompt_tokens, cap)
        spent, reserved = await _day_totals(session, user_id)
        remaining = limit - spent - reserved
        if worst > remaining + 1e-12:
            obs.BUDGET_REJECTIONS.inc()
            _, resets_at = day_bounds()
            raise BudgetExceeded(
                f"This answer could cost up to ${worst:.4f}, more than the ${max(0.0, remaining):.4f} left of "
                f"today's budget; it resets at {resets_at:%H:%M} UTC.",
                remaining_usd=_round(max(0.0, remaining)),
                resets_at=resets_at.strftime("%Y-%m-%dT%H:%M:%SZ"),  # as the API writes times
            )
        return Reservation(worst, cap)


async def _day_totals(session: Any, user_id: int) -> tuple[float, float]:
    start, _ = day_bounds()
    spent, reserved = (
        await session.execute(
            select(func.coalesce(func.sum(Message.cost_usd), 0.0), func.coalesce(func.sum(Message.reserved_usd), 0.0))
            .where(Message.user_id == user_id, Message.created_at >= start)
        )
    ).one()
    return float(spent), float(reserved)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)
