"""Errors are values with a code a user can read; the API turns them into HTTP in one place."""

from __future__ import annotations

import math
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
        # HTTP headers the response must carry (e.g. Retry-After); not part of the JSON body.
        self.headers = headers or {}
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


class TooManyRequests(ConvoError):
    """Slow down: `retry_after` seconds, in the body and as the Retry-After header."""

    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float, code: str | None = None, status: int | None = None):
        seconds = max(1, math.ceil(retry_after))
        super().__init__(message, code=code, status=status, headers={"Retry-After": str(seconds)},
                         retry_after=seconds)


class Busy(TooManyRequests):
    """The server is at capacity for this kind of work; not the caller's fault, so 503."""

    status = 503
    code = "busy"
