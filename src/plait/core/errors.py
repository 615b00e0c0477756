"""Errors that carry an HTTP status, a stable code and, where it helps, the offending field.

Every HTTP error is rendered as ``{"error": {"code", "message", "field"?}}``; the CLI prints
the message on one line and exits with code 2.
"""

from __future__ import annotations

from typing import Any


class PlaitError(Exception):
    """An error a user can act on."""

    status: int = 400
    code: str = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        field: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.code
        self.field = field
        self.status = status or self.status

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        return {"error": body}


class InvalidInput(PlaitError):
    status, code = 400, "invalid_input"


class Unauthorized(PlaitError):
    status, code = 401, "unauthorized"


class Forbidden(PlaitError):
    status, code = 403, "forbidden"


class NotFound(PlaitError):
    status, code = 404, "not_found"


class Conflict(PlaitError):
    status, code = 409, "conflict"


class TooLarge(PlaitError):
    status, code = 413, "too_large"


class UnsupportedMediaType(PlaitError):
    status, code = 415, "unsupported_media_type"
