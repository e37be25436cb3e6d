"""Errors are values with a code a user can read; the API turns them into HTTP in one place."""

from __future__ import annotations

from typing import Any


class ConvoError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None, **extra: Any):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        if status:
            self.status = status
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
