"""Who may call the admin API: a bearer token, or (for webhooks) an HMAC signature.

Every route but `/healthz`, `/readyz` and `/metrics` needs `Authorization: Bearer <token>`
(`USERSYNC_API_TOKEN`), compared in constant time. `POST /events` also accepts a signed request,
for identity systems that sign their webhooks rather than hold a token: the signature header
carries `sha256=<hex>` of HMAC-SHA256(`USERSYNC_WEBHOOK_SECRET`, `<timestamp>.<raw body>`) and
the timestamp header the Unix time it was made. A timestamp more than `webhook_tolerance`
seconds away from now is refused, and the handler refuses a signature seen before, so a
captured request cannot be replayed. Missing credentials get 401, wrong ones 403, both JSON.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from service.config import Settings
from service.triggers.keys import SETTINGS
from service.triggers.responses import problem

PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
SIGNED_PATHS = frozenset({"/events"})
UNIX_TIME = re.compile(r"[0-9]{1,12}")
"""ASCII digits only (`"²".isdigit()` holds, `int()` refuses it), and few enough of them to
compare with the clock as a float: twelve digits reach the year 33658."""
SIGNATURE = web.RequestKey("signature", str)
"""Set to the verified signature; the handler checks it was not used before."""


class Denied(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def sign(secret: str, *, timestamp: str, body: bytes) -> str:
    """The signature header value for `body` sent at `timestamp` (what senders compute)."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def check_bearer(header: str | None, *, token: str | None) -> None:
    if not header:
        raise Denied(401, "missing Authorization: Bearer <token>")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise Denied(401, "the Authorization header must be 'Bearer <token>'")
    # aiohttp hands bytes that are not UTF-8 over as surrogates: compared as the bytes they were
    offered = presented.strip().encode("utf-8", "surrogateescape")
    if token is None or not hmac.compare_digest(offered, token.encode()):
        raise Denied(403, "the bearer token is not valid")


def check_signature(
    signature: str,
    *,
    timestamp: str | None,
    body: bytes,
    secret: str | None,
    tolerance: float,
    now: float,
) -> str:
    """The verified signature (normalised), or Denied naming what is wrong."""
    if secret is None:
        raise Denied(403, "signed webhooks are not enabled (USERSYNC_WEBHOOK_SECRET is not set)")
    if timestamp is None or not UNIX_TIME.fullmatch(timestamp.strip()):
        raise Denied(401, "a signed request needs a Unix timestamp header (whole seconds)")
    if abs(now - int(timestamp)) > tolerance:
        raise Denied(403, f"the timestamp is more than {tolerance:g} s away from now")
    expected = sign(secret, timestamp=timestamp.strip(), body=body)
    presented = signature.strip()
    presented = presented if presented.startswith("sha256=") else "sha256=" + presented
    if not hmac.compare_digest(presented.encode(), expected.encode()):
        raise Denied(403, "the signature does not match the body and timestamp")
    return presented


async def _authenticate(request: web.Request, settings: Settings, now: float) -> None:
    canonical = _canonical(request)
    signature = request.headers.get(settings.webhook_signature_header)
    if canonical in SIGNED_PATHS and "Authorization" not in request.headers and signature:
        request[SIGNATURE] = check_signature(
            signature,
            timestamp=request.headers.get(settings.webhook_timestamp_header),
            body=await request.read(),
            secret=_secret(settings),
            tolerance=settings.webhook_tolerance,
            now=now,
        )
        return
    token = settings.api_token.get_secret_value() if settings.api_token else None
    check_bearer(request.headers.get("Authorization"), token=token)


def _secret(settings: Settings) -> str | None:
    return settings.webhook_secret.get_secret_value() if settings.webhook_secret else None


def _canonical(request: web.Request) -> str | None:
    if request.match_info.http_exception is not None:
        return None
    return (
        request.match_info.route.resource.canonical if request.match_info.route.resource else None
    )


def middleware(*, clock: Callable[[], float] = time.time) -> Middleware:
    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if _canonical(request) in PUBLIC_PATHS or request.match_info.http_exception is not None:
            return await handler(request)
        try:
            await _authenticate(request, request.app[SETTINGS], clock())
        except Denied as e:
            headers = {"WWW-Authenticate": "Bearer"} if e.status == 401 else None
            error = "unauthorized" if e.status == 401 else "forbidden"
            return problem(e.status, error, e.message, headers=headers)
        return await handler(request)

    return authenticate
