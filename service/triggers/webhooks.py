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
from service.triggers.bodies import EventBody, parsed, unsupported_media
from service.triggers.keys import METRICS, SESSIONS, SETTINGS
from service.triggers.responses import InvalidRequest, json_body, ok, problem

MAX_EVENTS = 1000


def parse_events(body: Any) -> list[NewEvent]:
    """The events of a webhook body, or InvalidRequest naming the item and the field."""
    items = body if isinstance(body, list) else [body]
    if not items:
        raise InvalidRequest("the body is an empty list")
    if len(items) > MAX_EVENTS:
        raise InvalidRequest(f"at most {MAX_EVENTS} events per request, not {len(items)}")
    return [
        _event(item, where=f"event #{n}" if isinstance(body, list) else "the event")
        for n, item in enumerate(items)
    ]


def _event(item: Any, *, where: str) -> NewEvent:
    if not isinstance(item, dict):
        raise InvalidRequest(f"{where} must be a JSON object")
    event = parsed(EventBody, item, where=where)
    return NewEvent(user_id=event.id, kind=event.type)


async def post_events(request: web.Request) -> web.Response:
    if (refused := unsupported_media(request)) is not None:
        return refused
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
