"""The failure vocabulary of the Users API: every way a call can fail, as one exception tree.

The rest of the service catches these and nothing else: aiohttp's exceptions are translated at
the edge of this package (`raise ... from e`) so callers never depend on the HTTP library, and
the executor can record a per-user outcome from `status`/`code` without parsing text.

    ConversationsError
    ├── TransportError ............ no HTTP answer at all (transient)
    │   ├── ConnectError ........... could not connect; the request was never sent
    │   ├── ConnectionLost ......... the connection broke after the request was sent
    │   └── RequestTimeout ......... no complete answer within the client's timeout
    ├── Stopped ................... the run stopped: the request was not sent
    ├── InvalidResponse ........... a 2xx answer whose body is not what the spec describes
    └── ApiError .................. an HTTP error answer: status, Twilio code, message
        ├── BadRequest ............. any other 4xx
        │   ├── InvalidAttributes .. 50303 (too long), 50304 (not a JSON object)
        │   ├── InvalidIdentity .... 50204 (missing), 50207 (too long)
        │   └── RoleNotFound ....... 50100
        ├── Unauthorized ........... 401/403, 20003
        ├── NotFound ............... 404, 20404
        ├── AlreadyExists .......... 409 with 50201 (another 409 is a BadRequest)
        ├── RateLimited ............ 429, 20429, 50063/50074 (transient; `retry_after`)
        └── ServerError ............ 5xx (transient)

`transient` says whether repeating the same request may succeed (the retry loop uses it);
`ambiguous` says whether the failed request may nevertheless have taken effect (a 5xx, a
dropped connection or a timeout after sending; never a 429, which Twilio promises it did not
process). An `ApiError` raised after an earlier ambiguous attempt of the same call carries
`after_retry=True`: a create that meets `AlreadyExists(after_retry=True)` most likely created
the user itself on the attempt whose answer was lost.

Messages hold the server's words (truncated), never a request header, so no credential can
appear in a message or repr.
"""

from __future__ import annotations

import json
from typing import ClassVar

CODE_DIGITS = 9
"""Longest Twilio code read from a string (codes have five digits; `int()` refuses `²` and
strings of thousands of digits)."""
MESSAGE_LIMIT = 500
"""Characters of a server message kept in an exception: enough to read, never a whole page."""


class ConversationsError(Exception):
    """Base class of every failure the client raises."""

    transient: ClassVar[bool] = False
    ambiguous: bool = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class TransportError(ConversationsError):
    """No HTTP answer: refused, reset or dropped connection, or a timeout."""

    transient = True

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.ambiguous = sent


class ConnectError(TransportError):
    """The connection could not be opened, so the request never left."""

    def __init__(self, message: str) -> None:
        super().__init__(message, sent=False)


class ConnectionLost(TransportError):
    """The connection closed or broke after the request was (maybe) sent."""

    def __init__(self, message: str) -> None:
        super().__init__(message, sent=True)


class RequestTimeout(TransportError):
    """No complete answer within the timeout; `sent` is False only for a connect timeout."""


class Stopped(ConversationsError):
    """The unit of work's run stopped (SIGTERM, its lock connection lost) while the work went
    on: the request was not sent, and nothing more of the work will be."""


class InvalidResponse(ConversationsError):
    """A success status with a body that is not the resource the spec describes."""


class ApiError(ConversationsError):
    """The API answered with an error status; `code` is Twilio's error code when it sent one.

    `retry_after` is the answer's `Retry-After` in seconds (429s, sometimes 503s), if any;
    `request_id` its `Twilio-Request-Id`, which Twilio's support asks for.
    """

    def __init__(
        self,
        status: int,
        code: int | None,
        message: str,
        more_info: str | None = None,
        *,
        after_retry: bool = False,
        retry_after: float | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(status, code, message, more_info)
        self.status = status
        self.code = code
        self.message = message
        self.more_info = more_info
        self.after_retry = after_retry
        self.retry_after = retry_after
        self.request_id = request_id

    def __str__(self) -> str:
        code = f" (Twilio error {self.code})" if self.code is not None else ""
        retried = " [after an ambiguous attempt]" if self.after_retry else ""
        return f"HTTP {self.status}{code}: {self.message}{retried}"


class BadRequest(ApiError):
    """A 4xx that repeating will not fix: the request itself must change."""


class InvalidAttributes(BadRequest):
    """Attributes are not a JSON object (50304) or are over 16 KB (50303)."""


class InvalidIdentity(BadRequest):
    """Identity missing (50204) or too long (50207)."""


class RoleNotFound(BadRequest):
    """The RoleSid names no role of this Service (50100)."""


class Unauthorized(ApiError):
    """The credentials were refused (401/20003) or lack permission (403)."""


class NotFound(ApiError):
    """No such user (or Service) (404/20404)."""


class AlreadyExists(ApiError):
    """A user with this identity exists (409 with 50201; a 409 with another code or none is a
    `BadRequest`, not this); see `after_retry` in the module docstring."""


class RateLimited(ApiError):
    """Too many requests (429/20429, 50063/50074); not processed, safe to repeat."""

    transient = True


class ServerError(ApiError):
    """A 5xx: the request may or may not have been processed."""

    transient = True
    ambiguous = True


_BY_CODE: dict[int, type[ApiError]] = {
    20003: Unauthorized,
    20404: NotFound,
    20429: RateLimited,
    50063: RateLimited,
    50074: RateLimited,
    50100: RoleNotFound,
    50201: AlreadyExists,
    50204: InvalidIdentity,
    50207: InvalidIdentity,
    50303: InvalidAttributes,
    50304: InvalidAttributes,
}
_BY_STATUS: dict[int, type[ApiError]] = {
    401: Unauthorized,
    403: Unauthorized,
    404: NotFound,
    429: RateLimited,
}


def error_class(status: int, code: int | None) -> type[ApiError]:
    """The class for a status and Twilio code: 5xx and 429 first, then the code, then status."""
    if status >= 500:
        return ServerError
    if status != 429 and code in _BY_CODE:
        found = _BY_CODE[code]
        return found if found is not AlreadyExists or status == 409 else BadRequest
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return BadRequest if 400 <= status < 500 else ApiError


def error_from_response(
    status: int,
    body_text: str,
    *,
    retry_after: float | None = None,
    after_retry: bool = False,
    request_id: str | None = None,
) -> ApiError:
    """The exception for an error answer; any body is accepted (JSON or not, empty, huge)."""
    code, message, more_info = _parse_body(body_text)
    message = truncate(message) if message else f"HTTP {status} with no message"
    cls = error_class(status, code)
    return cls(
        status,
        code,
        message,
        more_info,
        after_retry=after_retry,
        retry_after=retry_after,
        request_id=request_id,
    )


def truncate(text: str, *, limit: int = MESSAGE_LIMIT) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _parse_body(body_text: str) -> tuple[int | None, str, str | None]:
    """(code, message, more_info) from Twilio's JSON error body, or the raw text as message."""
    try:
        body = json.loads(body_text)
    except (ValueError, RecursionError):
        return None, body_text, None
    if not isinstance(body, dict):
        return None, body_text, None
    message = body.get("message")
    more_info = body.get("more_info")
    return (
        _as_int(body.get("code")),
        message if isinstance(message, str) else body_text,
        truncate(more_info) if isinstance(more_info, str) else None,
    )


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= CODE_DIGITS:
        return int(value)
    return None
