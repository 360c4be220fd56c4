"""One HTTP attempt, and the one place where aiohttp's exceptions become ours.

`Transport.send` takes an in-flight slot (and, for a write, its turn) from the `WriteLimiter`,
makes one request with Basic auth and a total timeout, tells the limiter what the Service
answered (a write's 429 slows it down) and returns the status, body and `Retry-After`. It
never raises an aiohttp exception: each is translated into a `TransportError`
(`raise ... from e`) whose message names the operation and the failure, never a header. Error
statuses are returned, not raised: deciding what they mean is the caller's job. The session
belongs to the caller (one per application); this class never closes it.
"""

from __future__ import annotations

from base64 import b64encode
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import aiohttp
from yarl import URL

from service.conversations.errors import (
    ConnectError,
    ConnectionLost,
    RequestTimeout,
    Stopped,
    TransportError,
)
from service.conversations.ratelimit import WriteLimiter
from service.conversations.retry import parse_retry_after


@dataclass(slots=True)
class Calls:
    """The calls of one unit of work (`watching`): whether a write of it left (from then on
    its call may have been made, whatever became of it), and whether its run stopped (no
    further call is sent: each raises `Stopped`)."""

    sent: bool = False
    stopped: bool = False


_CALLS: ContextVar[Calls | None] = ContextVar("usersync_calls", default=None)


@contextmanager
def watching(calls: Calls) -> Iterator[Calls]:
    """Track the calls of this block in `calls`."""
    token = _CALLS.set(calls)
    try:
        yield calls
    finally:
        _CALLS.reset(token)


REQUEST_ID_HEADER = "Twilio-Request-Id"
REQUEST_ID_MAX = 64


@dataclass(frozen=True, slots=True)
class Request:
    operation: str
    method: str
    url: URL
    form: Mapping[str, str] | None = None
    write: bool = False
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    text: str
    retry_after: float | None = None
    request_id: str | None = None
    """Twilio's `Twilio-Request-Id` of the answer, for support tickets."""


def basic_authorization(username: str, password: str) -> str:
    token = b64encode(f"{username}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


class Transport:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        credentials: tuple[str, str],
        limiter: WriteLimiter,
        timeout: float,
    ) -> None:
        self._session = session
        self._authorization = basic_authorization(*credentials)
        self._limiter = limiter
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    def __repr__(self) -> str:
        return f"Transport(timeout={self._timeout.total})"

    async def send(self, request: Request) -> Reply:
        """Make the request once; a failure without an HTTP answer raises `TransportError`."""
        calls = _CALLS.get()
        _refuse_if_stopped(calls, request)
        async with self._limiter.slot(write=request.write) as grant:
            _refuse_if_stopped(calls, request)  # it may have stopped while this waited
            if calls is not None and request.write:
                calls.sent = True
            try:
                reply = await self._exchange(request)
            except (aiohttp.ClientError, TimeoutError) as e:
                raise transport_error(request, e) from e
            self._limiter.answered(grant, status=reply.status)
            return reply

    async def _exchange(self, request: Request) -> Reply:
        headers = {"Authorization": self._authorization, "Accept": "application/json"}
        headers.update(request.headers)
        async with self._session.request(
            request.method,
            request.url,
            data=dict(request.form) if request.form is not None else None,
            headers=headers,
            timeout=self._timeout,
            allow_redirects=False,
        ) as response:
            body = await response.read()
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            return Reply(
                response.status,
                body.decode("utf-8", errors="replace"),
                retry_after,
                request_id=request_id(response.headers.get(REQUEST_ID_HEADER)),
            )


def _refuse_if_stopped(calls: Calls | None, request: Request) -> None:
    if calls is not None and calls.stopped:
        raise Stopped(f"{request.method} {request.operation}: not sent, the run stopped")


def request_id(header: str | None) -> str | None:
    """The header's value if it looks like one (printable, short); a server's odd header is
    never stored."""
    if header is None:
        return None
    value = header.strip()
    return value if value and len(value) <= REQUEST_ID_MAX and value.isprintable() else None


def transport_error(request: Request, error: BaseException) -> TransportError:
    """Our exception for an aiohttp failure; the message carries no header and no secret."""
    where = f"{request.method} {request.operation}"
    detail = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    if isinstance(error, aiohttp.ConnectionTimeoutError):
        return RequestTimeout(f"{where}: timed out connecting ({detail})", sent=False)
    if isinstance(error, TimeoutError):
        return RequestTimeout(f"{where}: no answer in time ({detail})", sent=True)
    if isinstance(error, aiohttp.ClientConnectorError):
        return ConnectError(f"{where}: could not connect ({detail})")
    return ConnectionLost(f"{where}: connection lost ({detail})")
