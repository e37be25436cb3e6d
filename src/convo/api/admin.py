"""Administration of accounts: daily budgets, roles, disabling. Admins only."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from convo.api.deps import CurrentUser, Id, ServicesDep
from convo.db.models import User
from convo.errors import Forbidden

router = APIRouter(prefix="/api/admin", tags=["admin"])


def admin_user(user: CurrentUser) -> User:
    if user.role != "admin":
        raise Forbidden("Only an admin can do this.", code="admin_only")
    return user


AdminUser = Annotated[User, Depends(admin_user)]


class UserAdminView(BaseModel):
    id: int
    email: str
    name: str
    role: str
    disabled: bool
    daily_budget_usd: float | None
    created_at: datetime


class UsersAdminView(BaseModel):
    items: list[UserAdminView]


class UserAdminUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # null: the server's DAILY_COST_BUDGET applies.
    daily_budget_usd: float | None = Field(None, ge=0, le=1_000_000)
    role: Literal["user", "admin"] | None = None
    disabled: bool | None = None


def _view(user: User) -> UserAdminView:
    return UserAdminView(id=user.id, email=user.email, name=user.name, role=user.role, disabled=user.disabled,
                         daily_budget_usd=user.daily_budget_usd, created_at=user.created_at)


@router.get("/users")
async def list_users(admin: AdminUser, services: ServicesDep) -> UsersAdminView:
    return UsersAdminView(items=[_view(u) for u in await services.users.list_all()])


@router.patch("/users/{user_id}")
async def update_user(user_id: Id, body: UserAdminUpdate, admin: AdminUser, services: ServicesDep) -> UserAdminView:
    # Only the fields sent change; an explicit null budget goes back to the server's default.
    changes = body.model_dump(exclude_unset=True)
    for name in ("role", "disabled"):
        if name in changes and changes[name] is None:
            del changes[name]
    return _view(await services.users.update(admin, user_id, changes))
