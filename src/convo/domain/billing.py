"""Per-user daily cost budgets that hold under concurrent requests.

A day is a UTC day. What a user spent is the sum of the day's entries in the `spend` ledger, one per
finished answer, written in the same transaction that records the answer's final state; what is
reserved is the worst case of the answers still being written (`messages.reserved_usd`). The ledger is
append-only: deleting a chat, or importing one whatever its figures and dates, never changes what a day
cost. Starting an
answer reserves its worst case in the same transaction that creates it, after taking the user's row lock
(PostgreSQL `FOR UPDATE`; SQLite has one writer at a time), so two tabs or two processes can never both
spend the last dollar. The worst case is real, not a guess: under a budget an answer is capped at
`max_tokens` (ANSWER_TOKENS unless the request asks for fewer), which the provider enforces. Finishing
replaces the reservation with the exact cost; an answer charges the day it finishes on, and live
reservations count against today whenever they started, so an answer across midnight is never free. A model without prices costs nothing and is never refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from convo import observability as obs
from convo.db.models import Message, Spend, User
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

    def applies(self, user: User, model: ModelInfo) -> bool:
        """Whether answers of `model` for `user` are budgeted (as far as the caller's copy of the user knows)."""
        priced = bool(model.input_usd_per_mtok or model.output_usd_per_mtok)
        return priced and self.limit_for(user.daily_budget_usd) is not None

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

    @staticmethod
    def charge(session: Any, user_id: int, message_id: int, model_id: str, cost_usd: float) -> None:
        """Inside the caller's write transaction: record what a finished answer cost, today."""
        if cost_usd > 0:
            session.add(Spend(user_id=user_id, day=today(), message_id=message_id, model=model_id,
                              cost_usd=cost_usd))


def today() -> date:
    return datetime.now(UTC).date()


async def _day_totals(session: Any, user_id: int) -> tuple[float, float]:
    spent = await session.scalar(
        select(func.coalesce(func.sum(Spend.cost_usd), 0.0)).where(Spend.user_id == user_id, Spend.day == today()))
    reserved = await session.scalar(
        select(func.coalesce(func.sum(Message.reserved_usd), 0.0))
        .where(Message.status == "streaming", Message.user_id == user_id))
    return float(spent), float(reserved)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)
