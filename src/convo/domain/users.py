"""Accounts and sessions: sign-up (the first user is an admin), log-in, tokens."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from datetime import timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select

from convo.db.models import AuthToken, User, utcnow
from convo.db.session import Database
from convo.errors import Conflict, Forbidden, NotFound, Unauthorized

_hasher = PasswordHasher()
# Verified against when the email is unknown, so both failures take the same time.
_DUMMY_HASH = _hasher.hash("convo-timing-equaliser")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Users:
    def __init__(self, db: Database, *, signup: str, session_days: int) -> None:
        self.db = db
        self.signup_mode = signup
        self.session_days = session_days

    async def create(self, email: str, password: str, name: str = "", *, admin: bool | None = None) -> User:
        """Create an account. `admin=None` makes the first account of the server an admin."""
        email = email.strip().lower()
        password_hash = await asyncio.to_thread(_hasher.hash, password)
        async with self.db.write() as session:
            if await session.scalar(select(User.id).where(User.email == email)) is not None:
                raise Conflict("An account with this email already exists.", code="email_taken")
            if admin is None:
                admin = (await session.scalar(select(func.count(User.id)))) == 0
            user = User(email=email, name=name.strip(), password_hash=password_hash, role="admin" if admin else "user")
            session.add(user)
        return user

    async def signup(self, email: str, password: str, name: str = "") -> tuple[User, str]:
        if self.signup_mode == "closed":
            async with self.db.read() as session:
                if await session.scalar(select(func.count(User.id))):
                    raise Forbidden("Sign-up is closed on this server; ask an admin for an account.",
                                    code="signup_closed")
        user = await self.create(email, password, name)
        return user, await self.issue_token(user.id)

    async def login(self, email: str, password: str) -> tuple[User, str]:
        async with self.db.read() as session:
            user = await session.scalar(select(User).where(User.email == email.strip().lower()))
        try:
            await asyncio.to_thread(_hasher.verify, user.password_hash if user else _DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            user = None
        if user is None:
            raise Unauthorized("Wrong email or password.", code="invalid_credentials")
        if user.disabled:
            raise Forbidden("This account is disabled.", code="account_disabled")
        return user, await self.issue_token(user.id)

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
        async with self.db.read() as session:
            row = await session.execute(
                select(User)
                .join(AuthToken, AuthToken.user_id == User.id)
                .where(AuthToken.token_hash == token_hash(token), AuthToken.expires_at > utcnow())
            )
            user = row.scalar_one_or_none()
        if user is None or user.disabled:
            return None
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
