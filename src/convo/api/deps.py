"""Typed dependencies: who is calling, and the services they may use."""

from __future__ import annotations

import json
import secrets
from typing import Annotated, Any

from annotated_types import Interval
from fastapi import Depends, Request

from convo.db.models import User
from convo.errors import Forbidden, InvalidInput, Unauthorized
from convo.services import Services

SESSION_COOKIE = "convo_session"
CSRF_COOKIE = "convo_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}

# Every object id, in a path, a query or a body: a positive integer that fits the id columns, which are
# 32-bit INTEGER on PostgreSQL, so an absurd id is a 422 rather than an overflow in the database driver.
Id = Annotated[int, Interval(ge=1, le=2**31 - 1)]


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


async def no_nul_characters(request: Request) -> None:
    """Refuse U+0000 in a query or a JSON body, on the routers whose text is stored. PostgreSQL cannot
    store it in text (SQLite can), so without this a NUL in a title or a name is a 500 from the driver
    on one database and fine on the other; now it is a 422 on both. (Search takes any query.)"""
    if any("\x00" in v for _, v in request.query_params.multi_items()):
        raise InvalidInput("Text must not contain NUL characters (U+0000).", code="invalid_text")
    if request.headers.get("content-type", "").startswith("application/json"):
        body = await request.body()  # cached: FastAPI reads the same bytes for the body model
        # JSON spells NUL only as the escape \u0000 (a raw NUL byte is invalid JSON): parse only then.
        if b"\\u0000" in body:
            try:
                data = json.loads(body)
            except ValueError:
                return  # FastAPI answers the malformed JSON itself
            if _has_nul(data):
                raise InvalidInput("Text must not contain NUL characters (U+0000).", code="invalid_text")


NoNul = Depends(no_nul_characters)


def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def session_token(request: Request) -> str | None:
    return bearer_token(request) or request.cookies.get(SESSION_COOKIE)


def client_address(request: Request) -> str:
    """The caller's IP address. Behind a proxy on this host uvicorn has already taken it from
    X-Forwarded-For (it trusts that header from 127.0.0.1 only, see FORWARDED_ALLOW_IPS)."""
    return request.client.host if request.client else ""


async def current_user(request: Request, services: ServicesDep) -> User:
    token = bearer_token(request)
    if token is None:
        token = request.cookies.get(SESSION_COOKIE)
        # A cookie rides along with any cross-site request, so unsafe methods must also prove they
        # come from our page: the double-submitted CSRF token.
        if token and request.method not in SAFE_METHODS:
            cookie = request.cookies.get(CSRF_COOKIE, "")
            header = request.headers.get(CSRF_HEADER, "")
            if not cookie or not secrets.compare_digest(cookie, header):
                raise Forbidden("Missing or wrong CSRF token.", code="csrf_failed")
    if not token:
        raise Unauthorized("Log in first.", code="not_authenticated")
    user = await services.users.authenticate(token)
    if user is None:
        raise Unauthorized("Your session has expired; log in again.", code="session_expired")
    return user


CurrentUser = Annotated[User, Depends(current_user)]
