"""JSON in and out of the admin API: one error shape everywhere, and a middleware for it.

Every error is `{"error": <code>, "message": <sentence>}` with a fitting status, including
aiohttp's own 404 and 405, the database out of reach or not migrated (503, saying which: the
request may succeed later, as `/readyz` tells) and any unexpected exception (logged with its
traceback, answered 500 without details).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from service.db import connectivity
from service.db.status import as_json

log = structlog.get_logger(__name__)

ERROR_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "too_large"}


class InvalidRequest(Exception):
    """The request body or a parameter makes no sense; the message says which and why (our 400;
    not `conversations.BadRequest`, which is Twilio's answer to one of our calls)."""


def storable(value: str) -> bool:
    """Whether Postgres can hold this text: no NUL, no lone surrogate (not UTF-8 encodable)."""
    return "\x00" not in value and not any("\ud800" <= c <= "\udfff" for c in value)


def ok(data: Any, *, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response(as_json(data), status=status, headers=headers)


def problem(
    status: int, error: str, message: str, *, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.json_response({"error": error, "message": message}, status=status, headers=headers)


async def json_body(request: web.Request) -> Any:
    """The parsed body; an empty body is `{}`. Raises InvalidRequest on anything but JSON."""
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError as e:
        raise InvalidRequest(f"the body is not valid JSON: {e}") from None
    except RecursionError:
        raise InvalidRequest("the body nests arrays or objects too deeply to read") from None


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except InvalidRequest as e:
        return problem(400, "bad_request", str(e))
    except web.HTTPException as e:
        if e.status < 400:
            raise
        message = f"{request.method} {request.path}: {e.reason}"
        kept = {k: e.headers[k] for k in ("Allow",) if k in e.headers}  # 405 must say Allow
        return problem(e.status, ERROR_CODES.get(e.status, "http_error"), message, headers=kept)
    except Exception as e:
        if (unavailable := connectivity.unavailable_reason(e)) is not None:
            log.warning("request failed: database", path=request.path, problem=unavailable)
            return problem(503, "database_unavailable", unavailable)
        log.exception("request failed", method=request.method, path=request.path)
        return problem(500, "internal", "internal error; the service log has the details")
