from __future__ import annotations

import secrets

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, EmailStr, Field

from convo.api.deps import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    CurrentUser,
    NoNul,
    ServicesDep,
    client_address,
    session_token,
)
from convo.schemas import UserPublic

router = APIRouter(prefix="/api/auth", tags=["auth"], dependencies=[NoNul])


class SignupIn(BaseModel):
    email: EmailStr
    password: str = Field(min_length=8, max_length=1024)
    name: str = Field("", max_length=200)


class LoginIn(BaseModel):
    email: str = Field(max_length=320)
    password: str = Field(max_length=1024)


class PasswordIn(BaseModel):
    current_password: str = Field(max_length=1024)
    new_password: str = Field(min_length=8, max_length=1024)


class AuthOut(BaseModel):
    user: UserPublic
    token: str
    csrf_token: str


def _set_session(request: Request, response: Response, services: ServicesDep, token: str) -> str:
    settings = services.settings
    # Unless the setting says otherwise: Secure whenever the browser reached us over HTTPS, so the
    # cookie never travels in clear text after it was first set over TLS.
    secure = settings.cookie_secure if settings.cookie_secure is not None else request.url.scheme == "https"
    csrf = secrets.token_urlsafe(24)
    max_age = settings.session_days * 86400
    response.set_cookie(SESSION_COOKIE, token, max_age=max_age, httponly=True, samesite="lax", secure=secure,
                        path="/")
    # Readable by our own scripts, which echo it in the X-CSRF-Token header.
    response.set_cookie(CSRF_COOKIE, csrf, max_age=max_age, httponly=False, samesite="lax", secure=secure,
                        path="/")
    return csrf


def _clear_session(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")


@router.post("/signup", status_code=201)
async def signup(body: SignupIn, request: Request, response: Response, services: ServicesDep) -> AuthOut:
    user, token = await services.users.signup(body.email, body.password, body.name, address=client_address(request))
    csrf = _set_session(request, response, services, token)
    return AuthOut(user=UserPublic.of(user), token=token, csrf_token=csrf)


@router.post("/login")
async def login(body: LoginIn, request: Request, response: Response, services: ServicesDep) -> AuthOut:
    user, token = await services.users.login(body.email, body.password, address=client_address(request))
    csrf = _set_session(request, response, services, token)
    return AuthOut(user=UserPublic.of(user), token=token, csrf_token=csrf)


@router.post("/logout", status_code=204)
async def logout(request: Request, response: Response, user: CurrentUser, services: ServicesDep) -> None:
    token = session_token(request)
    if token:
        await services.users.logout(token)
    _clear_session(response)


@router.post("/logout-all", status_code=204)
async def logout_all(response: Response, user: CurrentUser, services: ServicesDep) -> None:
    """Sign out everywhere: every session and API token of this user, this one included."""
    await services.users.logout_all(user.id)
    _clear_session(response)


@router.post("/password", status_code=204)
async def change_password(body: PasswordIn, request: Request, user: CurrentUser, services: ServicesDep) -> None:
    """Change the password; every other session of the user ends, this one stays signed in."""
    await services.users.change_password(user, body.current_password, body.new_password,
                                         keep_token=session_token(request) or "", address=client_address(request))


@router.get("/me")
async def me(user: CurrentUser) -> UserPublic:
    return UserPublic.of(user)
