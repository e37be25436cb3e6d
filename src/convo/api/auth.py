from __future__ import annotations

import secrets

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, EmailStr, Field

from convo.api.deps import CSRF_COOKIE, SESSION_COOKIE, CurrentUser, ServicesDep, bearer_token
from convo.schemas import UserPublic

router = APIRouter(prefix="/api/auth", tags=["auth"])


class SignupIn(BaseModel):
    email: EmailStr
    password: str = Field(min_length=8, max_length=1024)
    name: str = Field("", max_length=200)


class LoginIn(BaseModel):
    email: str = Field(max_length=320)
    password: str = Field(max_length=1024)


class AuthOut(BaseModel):
    user: UserPublic
    token: str
    csrf_token: str


def _set_session(response: Response, services: ServicesDep, token: str) -> str:
    settings = services.settings
    csrf = secrets.token_urlsafe(24)
    max_age = settings.session_days * 86400
    response.set_cookie(SESSION_COOKIE, token, max_age=max_age, httponly=True, samesite="lax",
                        secure=settings.cookie_secure, path="/")
    # Readable by our own scripts, which echo it in the X-CSRF-Token header.
    response.set_cookie(CSRF_COOKIE, csrf, max_age=max_age, httponly=False, samesite="lax",
                        secure=settings.cookie_secure, path="/")
    return csrf


@router.post("/signup", status_code=201)
async def signup(body: SignupIn, response: Response, services: ServicesDep) -> AuthOut:
    user, token = await services.users.signup(body.email, body.password, body.name)
    csrf = _set_session(response, services, token)
    return AuthOut(user=UserPublic.of(user), token=token, csrf_token=csrf)


@router.post("/login")
async def login(body: LoginIn, response: Response, services: ServicesDep) -> AuthOut:
    user, token = await services.users.login(body.email, body.password)
    csrf = _set_session(response, services, token)
    return AuthOut(user=UserPublic.of(user), token=token, csrf_token=csrf)


@router.post("/logout", status_code=204)
async def logout(request: Request, response: Response, user: CurrentUser, services: ServicesDep) -> None:
    token = bearer_token(request) or request.cookies.get(SESSION_COOKIE)
    if token:
        await services.users.logout(token)
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")


@router.get("/me")
async def me(user: CurrentUser) -> UserPublic:
    return UserPublic.of(user)
