"""Typed dependencies: who is calling, and the services they may use."""

from __future__ import annotations

import secrets
from typing import Annotated

from annotated_types import Interval
from fastapi import Depends, Request

from convo.db.models import User
from convo.errors import Forbidden, Unauthorized
from convo.services import Services

SESSION_COOKIE = "convo_session"
CSRF_COOKIE = "convo_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}

# Every object id, in a path, a query or a body: a positive 64-bit integer, so an absurd id is a 422
# rather than an overflow deep in the database driver.
Id = Annotated[int, Interval(ge=1, le=2**63 - 1)]


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
