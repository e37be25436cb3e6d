"""Errors are values with a code a user can read; the API turns them into HTTP in one place."""

from __future__ import annotations

from typing import Any


class ConvoError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None,
                 headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        if status:
            self.status = status
        self.headers = headers or {}  # HTTP response headers, e.g. Retry-After
        self.extra = extra

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.extra}


class NotFound(ConvoError):
    status = 404
    code = "not_found"


class Unauthorized(ConvoError):
    status = 401
    code = "unauthorized"


class Forbidden(ConvoError):
    status = 403
    code = "forbidden"


class Conflict(ConvoError):
    status = 409
    code = "conflict"


class InvalidInput(ConvoError):
    status = 422
    code = "invalid_request"


class Gone(ConvoError):
    status = 410
    code = "gone"


class RateLimited(ConvoError):
    """Too many requests of a kind: `retry_after` seconds tells the client when to try again."""

    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int, code: str | None = None):
        super().__init__(message, code=code, headers={"Retry-After": str(retry_after)}, retry_after=retry_after)
