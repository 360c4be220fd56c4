"""The Twilio error vocabulary the emulator answers with.

Every failure is an `ApiError` carrying the HTTP status, Twilio's numeric code and message; the
body is always Twilio's JSON shape `{"code", "message", "more_info", "status"}`. Codes follow
DESIGN.md ("Facts about the target API").
"""

from __future__ import annotations

from typing import Any

MORE_INFO = "https://www.twilio.com/docs/errors/{code}"

INVALID_PARAMETER = 20001
AUTHENTICATE = 20003
METHOD_NOT_ALLOWED = 20004
NOT_FOUND = 20404
TOO_MANY_REQUESTS = 20429
ROLE_NOT_FOUND = 50100
USER_EXISTS = 50201
IDENTITY_MISSING = 50204
IDENTITY_TOO_LONG = 50207
ATTRIBUTES_TOO_LONG = 50303
ATTRIBUTES_INVALID = 50304

_SERVER_MESSAGES = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}


class ApiError(Exception):
    """A request the emulator refuses, rendered as Twilio's error body."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "more_info": MORE_INFO.format(code=self.code),
            "status": self.status,
        }


def not_found(path: str) -> ApiError:
    return ApiError(404, NOT_FOUND, f"The requested resource {path} was not found")


def unauthenticated() -> ApiError:
    return ApiError(401, AUTHENTICATE, "Authenticate")


def too_many_requests() -> ApiError:
    return ApiError(429, TOO_MANY_REQUESTS, "Too Many Requests")


def invalid_parameter(message: str) -> ApiError:
    return ApiError(400, INVALID_PARAMETER, message)


def server_error(status: int) -> ApiError:
    """An injected failure: Twilio's 5xx bodies use code 20000 + status (20500, 20503)."""
    message = _SERVER_MESSAGES.get(status, "Injected failure")
    return ApiError(status, 20000 + status, message)
