"""Twilio-shaped REST errors."""

from __future__ import annotations

from typing import Any

MORE_INFO = "https://www.twilio.com/docs/errors/{code}"


class ApiError(Exception):
    """A REST request the emulator refuses; rendered as Twilio's JSON error body."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.code, self.message)


def error_body(status: int, code: int, message: str) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": MORE_INFO.format(code=code),
        "status": status,
    }


def authentication_failed() -> ApiError:
    return ApiError(401, 20003, "Authenticate")


def not_found(path: str) -> ApiError:
    return ApiError(404, 20404, f"The requested resource {path} was not found")


def too_many_requests() -> ApiError:
    return ApiError(429, 20429, "Too Many Requests")


#: Default Twilio code and message for an injected failure with this HTTP status.
FAULT_DEFAULTS: dict[int, tuple[int, str]] = {
    429: (20429, "Too Many Requests"),
    500: (20500, "Internal Server Error"),
    503: (20503, "Service Unavailable"),
}
