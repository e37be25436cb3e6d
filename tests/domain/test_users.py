"""Accounts below the API: the first-admin race, the session purge, and the attempt limiter's clock."""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from convo.db.models import AuthToken, utcnow
from convo.db.session import Database
from convo.domain.users import Users
from convo.runtime.ratelimit import Backoff, MemoryLimiter
from tests.support import run_async


class InstantHashing:
    """Stands in for the hashing pool, so concurrent sign-ups reach the database at the same moment."""

    async def run(self, fn: Any, *args: Any) -> str:
        return "not-a-hash"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    from convo.db import migrate
    from tests.conftest import _fresh_pg_database

    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'users.db'}"
    else:
        pg = request.getfixturevalue("pg_url")
        url = _fresh_pg_database(pg, f"convo_users_{os.getpid()}").replace("postgresql://", "postgresql+asyncpg://")
    migrate.upgrade(url)
    return url


def test_simultaneous_first_accounts_make_exactly_one_admin(db_url: str) -> None:
    async def race() -> list[str]:
        db = Database(db_url)
        try:
            users = Users(db, signup="open", session_days=1, hashing=InstantHashing())  # type: ignore[arg-type]
            made = await asyncio.gather(*(users.create(f"u{i}@example.com", "password") for i in range(8)))
            return [u.role for u in made]
        finally:
            await db.close()

    assert sorted(run_async(race())) == ["admin"] + ["user"] * 7


def test_expired_sessions_are_purged(db_url: str) -> None:
    async def run() -> tuple[int, list[str]]:
        db = Database(db_url)
        try:
            users = Users(db, signup="open", session_days=1, hashing=InstantHashing())  # type: ignore[arg-type]
            user = await users.create("a@example.com", "password")
            live = await users.issue_token(user.id)
            async with db.write() as session:
                session.add(AuthToken(user_id=user.id, token_hash="old", expires_at=utcnow() - timedelta(seconds=1)))
            purged = await users.purge_expired()
            async with db.read() as session:
                left = list(await session.scalars(select(AuthToken.token_hash)))
            assert await users.authenticate(live) is not None
            return purged, left
        finally:
            await db.close()

    purged, left = run_async(run())
    assert purged == 1 and len(left) == 1 and "old" not in left


def test_limiter_locks_after_the_limit_doubles_to_the_cap_and_forgets() -> None:
    now = [0.0]
    limiter = MemoryLimiter(Backoff(limit=3, window=100, lock=10, max_lock=25), clock=lambda: now[0])

    async def run() -> None:
        for _ in range(2):
            await limiter.hit("k")
        assert await limiter.retry_after("k") == 0
        await limiter.hit("k")
        assert await limiter.retry_after("k") == 10
        now[0] = 10
        assert await limiter.retry_after("k") == 0, "a lock ends"
        await limiter.hit("k")
        assert await limiter.retry_after("k") == 20, "the next failure doubles it"
        now[0] = 30
        await limiter.hit("k")
        assert await limiter.retry_after("k") == 25, "up to the cap"
        assert await limiter.retry_after("other") == 0
        now[0] = 30 + 25 + 101  # quiet for a window after the lock
        await limiter.prune()
        assert limiter._entries == {}
        await limiter.hit("k")
        assert await limiter.retry_after("k") == 0, "forgotten: counting starts again"
        await limiter.clear("k")
        assert "k" not in limiter._entries

    run_async(run())
