"""`POST /events`: identity systems tell us a user changed; the event joins the durable queue.

Body: one event `{"type": "user.created"|"user.updated"|"user.deleted", "id": "<internal id>"}`
or a list of up to `MAX_EVENTS` (other fields are ignored). The events are hints: whatever
their type, the leader reconciles the user from the current row and the current remote user.
Any replica accepts them (202 with their ids); a signed request's signature is stored in the
same transaction, so a replay is refused and a failed insert can be retried as is.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aiohttp import web

from service.db import events
from service.db.events import NewEvent
from service.triggers.auth import SIGNATURE
from service.triggers.keys import METRICS, SESSIONS, SETTINGS
from service.triggers.responses import BadRequest, json_body, ok, problem, storable

EVENT_TYPES = frozenset({"user.created", "user.updated", "user.deleted"})
MAX_EVENTS = 1000
MAX_ID_LENGTH = 256


def parse_events(body: Any) -> list[NewEvent]:
    """The events of a webhook body, or BadRequest naming the item and the field."""
    items = body if isinstance(body, list) else [body]
    if not items:
        raise BadRequest("the body is an empty list")
    if len(items) > MAX_EVENTS:
        raise BadRequest(f"at most {MAX_EVENTS} events per request, not {len(items)}")
    return [
        _event(item, where=f"event #{n}" if isinstance(body, list) else "the event")
        for n, item in enumerate(items)
    ]


def _event(item: Any, *, where: str) -> NewEvent:
    if not isinstance(item, dict):
        raise BadRequest(f"{where} must be a JSON object")
    kind, user_id = item.get("type"), item.get("id")
    if not isinstance(kind, str) or kind not in EVENT_TYPES:  # a dict or list is unhashable
        raise BadRequest(f"{where}: type must be one of {sorted(EVENT_TYPES)}")
    if not isinstance(user_id, str) or not user_id.strip() or len(user_id) > MAX_ID_LENGTH:
        raise BadRequest(f"{where}: id must be a non-empty string of at most {MAX_ID_LENGTH} chars")
    if not storable(user_id):
        raise BadRequest(f"{where}: id contains a NUL character or a lone surrogate")
    return NewEvent(user_id=user_id, kind=kind)


async def post_events(request: web.Request) -> web.Response:
    new = parse_events(await json_body(request))
    signature = request.get(SIGNATURE)
    keep_for = timedelta(seconds=2 * request.app[SETTINGS].webhook_tolerance)
    async with request.app[SESSIONS].begin() as session:
        if signature is not None and not await events.remember_signature(
            session, signature, keep_for=keep_for
        ):
            return problem(403, "forbidden", "this signature was already used (a replay)")
        ids = await events.enqueue(session, new, source="webhook")
    request.app[METRICS].events_received.labels("webhook").inc(len(ids))
    return ok({"accepted": len(ids), "event_ids": ids}, status=202)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/events", post_events)
