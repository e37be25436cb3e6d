"""Accounts and sessions: sign-up (the first user of an open server is an admin), log-in with attempt
limits, tokens, password change."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from convo.db.models import AuthToken, User, utcnow
from convo.db.session import Database
from convo.errors import Conflict, Forbidden, NotFound, TooManyRequests, Unauthorized
from convo.runtime.pool import BoundedPool
from convo.runtime.ratelimit import Limiter

_hasher = PasswordHasher()
# How stale a session's last-used time may get before a request refreshes it.
SEEN_EVERY = timedelta(hours=1)
# Verified against when the email is unknown, so both failures take the same time.
_DUMMY_HASH = _hasher.hash("convo-timing-equaliser")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@dataclass
class AuthLimits:
    """Failed log-ins per account (email) and per client address; sign-ups per client address."""

    account: Limiter
    address: Limiter
    signup: Limiter

    async def prune(self) -> None:
        for limiter in (self.account, self.address, self.signup):
            await limiter.prune()


# Serialises deciding who the first account is on PostgreSQL (SQLite writes are serialised already).
_FIRST_ACCOUNT_LOCK = 0x636F6E766F  # "convo"


class Users:
    def __init__(self, db: Database, *, signup: str, session_days: int, hashing: BoundedPool,
                 limits: AuthLimits | None = None, idle_days: float = 0) -> None:
        self.db = db
        self.signup_mode = signup
        self.session_days = session_days
        self.idle = timedelta(days=idle_days) if idle_days else None
        self.hashing = hashing
        self.limits = limits  # None: no limits (the command line)

    async def create(self, email: str, password: str, name: str = "", *, admin: bool | None = None) -> User:
        """Create an account. `admin=None` makes the first account of the server an admin."""
        email = email.strip().lower()
        password_hash = await self.hashing.run(_hasher.hash, password)
        async with self.db.write() as session:
            if await session.scalar(select(User.id).where(User.email == email)) is not None:
                raise Conflict("An account with this email already exists.", code="email_taken")
            if admin is None:
                admin = await self._is_first(session)
            user = User(email=email, name=name.strip(), password_hash=password_hash, role="admin" if admin else "user")
            session.add(user)
        return user

    async def _is_first(self, session: AsyncSession) -> bool:
        if await session.scalar(select(func.count(User.id))):
            return False
        if not self.db.is_sqlite:
            # Two first sign-ups at once would both count zero users. The transaction-scoped advisory
            # lock makes the second wait until the first has committed; its recount then sees the first.
            # Taken only while the server has no users, so later sign-ups never wait on it.
            await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _FIRST_ACCOUNT_LOCK})
            return not await session.scalar(select(func.count(User.id)))
        return True

    async def signup(self, email: str, password: str, name: str = "", *, address: str = "") -> tuple[User, str]:
        if self.signup_mode == "closed":
            # Even the first account: a freshly exposed server must not belong to its first visitor.
            # Its admin comes from `convo user create --admin`.
            raise Forbidden("Sign-up is closed on this server; ask an admin for an account.", code="signup_closed")
        if self.limits:
            wait = await self.limits.signup.retry_after(address)
            if wait:
                raise TooManyRequests("Too many sign-ups from your address; try again later.", retry_after=wait)
            await self.limits.signup.hit(address)
        user = await self.create(email, password, name)
        return user, await self.issue_token(user.id)

    async def login(self, email: str, password: str, *, address: str = "") -> tuple[User, str]:
        email = email.strip().lower()
        await self._check_limits(email, address)
        async with self.db.read() as session:
            user = await session.scalar(select(User).where(User.email == email))
        verified = await self.hashing.run(_verify, user.password_hash if user else _DUMMY_HASH, password)
        if user is None or not verified:
            await self._failed(email, address)
            raise Unauthorized("Wrong email or password.", code="invalid_credentials")
        if self.limits:
            # The account's count only: one good password must not wipe an address's many bad ones.
            await self.limits.account.clear(email)
        if user.disabled:
            raise Forbidden("This account is disabled.", code="account_disabled")
        return user, await self.issue_token(user.id)

    async def _check_limits(self, email: str, address: str) -> None:
        """Refuse before any hashing while the account or the address is locked. Unknown emails are
        counted like real ones, so a lock tells nothing about which accounts exist."""
        if self.limits is None:
            return
        wait = max(await self.limits.account.retry_after(email), await self.limits.address.retry_after(address))
        if wait:
            raise TooManyRequests("Too many failed attempts; try again later.", code="too_many_attempts",
                                  retry_after=wait)

    async def _failed(self, email: str, address: str) -> None:
        if self.limits:
            await self.limits.account.hit(email)
            await self.limits.address.hit(address)

    async def change_password(self, user: User, current: str, new: str, *, keep_token: str,
                              address: str = "") -> None:
        """Set a new password and end every other session of the user: whoever knew the old password
        may be signed in somewhere. A wrong current password counts as a failed log-in."""
        await self._check_limits(user.email, address)
        async with self.db.read() as session:
            stored = await session.scalar(select(User.password_hash).where(User.id == user.id))
        if stored is None or not await self.hashing.run(_verify, stored, current):
            await self._failed(user.email, address)
            raise Forbidden("The current password is wrong.", code="wrong_password")
        new_hash = await self.hashing.run(_hasher.hash, new)
        async with self.db.write() as session:
            await session.execute(update(User).where(User.id == user.id).values(password_hash=new_hash))
            await session.execute(delete(AuthToken).where(AuthToken.user_id == user.id,
                                                          AuthToken.token_hash != token_hash(keep_token)))

    async def logout_all(self, user_id: int) -> None:
        async with self.db.write() as session:
            await session.execute(delete(AuthToken).where(AuthToken.user_id == user_id))

    async def purge_expired(self) -> int:
        """Delete expired sessions; they can never authenticate again."""
        async with self.db.write() as session:
            result = await session.execute(delete(AuthToken).where(AuthToken.expires_at <= utcnow()))
        return result.rowcount or 0

    async def issue_token(self, user_id: int) -> str:
        token = secrets.token_urlsafe(32)
        async with self.db.write() as session:
            session.add(
                AuthToken(
                    user_id=user_id,
                    token_hash=token_hash(token),
                    expires_at=utcnow() + timedelta(days=self.session_days),
                )
            )
        return token

    async def authenticate(self, token: str) -> User | None:
        now = utcnow()
        async with self.db.read() as session:
            row = (await session.execute(
                select(User, AuthToken.id, AuthToken.created_at, AuthToken.last_used_at)
                .join(AuthToken, AuthToken.user_id == User.id)
                .where(AuthToken.token_hash == token_hash(token), AuthToken.expires_at > now)
            )).one_or_none()
        if row is None or row[0].disabled:
            return None
        user, token_id, created_at, last_used_at = row
        used = last_used_at or created_at
        if self.idle is not None and used < now - self.idle:
            async with self.db.write() as session:
                await session.execute(delete(AuthToken).where(AuthToken.id == token_id))
            return None
        if now - used > SEEN_EVERY:  # at most one write an hour per session
            async with self.db.write() as session:
                await session.execute(update(AuthToken).where(AuthToken.id == token_id).values(last_used_at=now))
        return user

    async def logout(self, token: str) -> None:
        async with self.db.write() as session:
            await session.execute(delete(AuthToken).where(AuthToken.token_hash == token_hash(token)))

    # -- administration ----------------------------------------------------------------------------

    async def list_all(self) -> list[User]:
        async with self.db.read() as session:
            return list(await session.scalars(select(User).order_by(User.id)))

    async def update(self, admin: User, user_id: int, changes: dict[str, Any]) -> User:
        """Set a user's daily budget (None: the server's default), role or disabled flag. An admin cannot
        demote or disable themself, so a server always keeps someone who can undo a mistake."""
        if user_id == admin.id and (changes.get("role", "admin") != "admin" or changes.get("disabled")):
            raise Conflict("You cannot demote or disable your own account.", code="self_lockout")
        async with self.db.write() as session:
            user = await session.get(User, user_id)
            if user is None:
                raise NotFound("No such user.")
            for name, value in changes.items():
                setattr(user, name, value)
            if changes.get("disabled"):
                # Signed out everywhere at once, not when their sessions expire.
                await session.execute(delete(AuthToken).where(AuthToken.user_id == user_id))
        return user
