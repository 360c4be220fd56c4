"""The OpenAPI description of the admin API, served at `/openapi.json`.

Written by hand, next to the handlers it describes; a test compares its paths and methods with
the application's router, so a route cannot be added or removed without this changing too.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from service.config import Settings
from service.triggers.bodies import EventBody, SyncBody, schema
from service.triggers.keys import SETTINGS
from service.triggers.responses import ok

JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


AUTH_ERRORS = {
    "401": _error("No credentials, or not a bearer token"),
    "403": _error("Wrong token"),
}
KEY = {
    "name": "key",
    "in": "path",
    "required": True,
    "description": "Internal user id or identity",
    "schema": {"type": "string"},
}


BAD_KEY = {"400": _error("The key holds a NUL character or a lone surrogate")}
BODY_ERRORS = {
    "413": _error("The body is larger than 4 MiB"),
    "415": _error("The body is not sent as application/json"),
}
WRONG_METHOD = {"405": _error("Another method than the route's (the Allow header names it)")}


def _operation(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"summary": summary, "responses": {**responses, **WRONG_METHOD}, **extra}


def _linked(response: dict[str, Any], **links: tuple[str, dict[str, str]]) -> dict[str, Any]:
    """The response with OpenAPI links: name -> (operationId, parameters from it), so a client
    (and the stateful fuzzing) can follow what it returned to where it can be read."""
    described = {
        name: {"operationId": operation, "parameters": parameters}
        for name, (operation, parameters) in links.items()
    }
    return {**response, "links": described}


USER_OF_PATH = {"key": "$request.path.key"}


def _public(summary: str, responses: dict[str, Any]) -> dict[str, Any]:
    return _operation(summary, responses, security=[])


def _paths() -> dict[str, Any]:
    return {**_health_paths(), **_sync_paths(), **_record_paths(), **_event_paths()}


def _health_paths() -> dict[str, Any]:
    ready = {"200": _json(_ref("Ready"), "Ready"), "503": _json(_ref("Ready"), "Not ready")}
    text = {"description": "Text exposition format", "content": {"text/plain": {}}}
    return {
        "/healthz": {"get": _public("Liveness", {"200": _json({"type": "object"}, "Serving")})},
        "/readyz": {"get": _public("Readiness: database, migrations, Service known, role", ready)},
        "/metrics": {"get": _public("Prometheus metrics", {"200": text})},
        "/openapi.json": {
            "get": _operation(
                "This description", {"200": _json({"type": "object"}, "OpenAPI"), **AUTH_ERRORS}
            )
        },
    }


def _sync_paths() -> dict[str, Any]:
    started = {
        "202": _linked(
            _json(_ref("SyncAccepted"), "Run started and recorded"),
            GetRun=("getRun", {"run_id": "$response.body#/run_id"}),
        ),
        "400": _error("Invalid body"),
        "409": _error("A run is in progress"),
        "503": _error("This replica is a standby, or stopping"),
        **BODY_ERRORS,
        **AUTH_ERRORS,
    }
    reconciled = {
        "200": _linked(
            _json(_ref("UserOutcome"), "Reconciled"),
            GetUser=("getUser", USER_OF_PATH),
            GetRun=("getRun", {"run_id": "$response.body#/run_id"}),
        ),
        "202": _linked(
            _json({"type": "object"}, "Queued; not finished in time"),
            GetUser=("getUser", USER_OF_PATH),
        ),
        "404": _error("Unknown user"),
        "503": _error("The source lacks a column the runs need (named)"),
        **BAD_KEY,
        **AUTH_ERRORS,
    }
    body = {"required": False, "content": {JSON: {"schema": _ref("SyncRequest")}}}
    return {
        "/sync": {
            "post": _operation(
                "Start a full or incremental run on the leader; returns at once",
                started,
                requestBody=body,
                operationId="postSync",
            )
        },
        "/sync/users/{key}": {
            "post": _operation(
                "Reconcile one user now and return its outcome",
                reconciled,
                parameters=[KEY],
                operationId="postSyncUser",
            )
        },
    }


def _record_paths() -> dict[str, Any]:
    limit = {
        "name": "limit",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": 100},
    }
    run_id = {
        "name": "run_id",
        "in": "path",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    }
    listed = {
        "type": "object",
        "description": "`runs`, newest first; `held_deletions`: the deletions held now, oldest"
        " first, whichever run held them (released together by a run with allow_deletes), the"
        " first 1,000, and `held_deletions_total` all of them; `held_writes`: the users the"
        " write guard holds now (released by allow_writes), the first 1,000, and"
        " `held_writes_total` all of them;"
        " `suspended`: the users in their deletion grace period, each with its `delete_after`",
    }
    runs = {
        "200": _linked(
            _json(listed, "Runs"), GetNewest=("getRun", {"run_id": "$response.body#/runs/0/id"})
        ),
        "400": _error("Bad limit"),
        **AUTH_ERRORS,
    }
    run = {
        "200": _json(_ref("RunDetail"), "The run"),
        "400": _error("The run id is not a whole number"),
        "404": _error("No such run"),
        **AUTH_ERRORS,
    }
    user = {
        "200": _linked(
            _json(_ref("UserDetail"), "The user"), SyncUser=("postSyncUser", USER_OF_PATH)
        ),
        "503": _error("The source lacks a column the runs need (named)"),
        "404": _error("Unknown user"),
        **BAD_KEY,
        **AUTH_ERRORS,
    }
    return {
        "/runs": {
            "get": _operation(
                "Recent runs, newest first", runs, parameters=[limit], operationId="getRuns"
            )
        },
        "/runs/{run_id}": {
            "get": _operation(
                "One run with its errors and its first audit trail entries",
                run,
                parameters=[run_id],
                operationId="getRun",
            )
        },
        "/users/{key}": {
            "get": _operation(
                "A user's sync state and last error", user, parameters=[KEY], operationId="getUser"
            )
        },
        **_trail_paths(run_id),
    }


def _trail_paths(run_id: dict[str, Any]) -> dict[str, Any]:
    """The audit trail: a user's entries newest first, a run's in the order written."""
    page = {
        "name": "limit",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
    }

    def entry_id(name: str, description: str) -> dict[str, Any]:
        schema = {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}
        return {"name": name, "in": "query", "description": description, "schema": schema}

    bad = {"400": _error("Bad limit, before or after"), **AUTH_ERRORS}
    user = {"200": _json(_ref("UserHistory"), "The user's entries, newest first"), **bad}
    run = {
        "200": _json(_ref("RunActions"), "The run's entries"),
        "404": _error("No such run"),
        **bad,
    }
    return {
        "/users/{key}/history": {
            "get": _operation(
                "What the service wrote to this user, or decided not to, and why",
                {**user, **BAD_KEY},
                parameters=[KEY, page, entry_id("before", "entries older than this id")],
                operationId="getUserHistory",
            )
        },
        "/runs/{run_id}/actions": {
            "get": _operation(
                "A run's audit trail entries, in the order written",
                run,
                parameters=[run_id, page, entry_id("after", "entries after this id")],
                operationId="getRunActions",
            )
        },
    }


def _event_paths() -> dict[str, Any]:
    one_or_many = {
        "oneOf": [
            _ref("Event"),
            {"type": "array", "items": _ref("Event"), "minItems": 1, "maxItems": 1000},
        ]
    }
    responses = {
        "202": _linked(
            _json(_ref("EventsAccepted"), "Queued"),
            SyncUser=("postSyncUser", {"key": "$request.body#/id"}),
        ),
        "400": _error("Invalid body"),
        "401": _error("No credentials"),
        "403": _error("Wrong token or signature, stale timestamp, or replay"),
        **BODY_ERRORS,
    }
    return {
        "/events": {
            "post": _operation(
                "Queue user events (webhooks); bearer token or HMAC signature",
                responses,
                requestBody={"required": True, "content": {JSON: {"schema": one_or_many}}},
                security=[{"bearer": []}, {"signature": [], "timestamp": []}],
                operationId="postEvents",
            )
        }
    }


def _object(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required)}


STRING, INT = {"type": "string"}, {"type": "integer"}


def _array(name: str) -> dict[str, Any]:
    return {"type": "array", "items": _ref(name)}


NULLABLE_STRING = {"type": ["string", "null"]}

SCHEMAS: dict[str, Any] = {
    "Error": _object({"error": STRING, "message": STRING}, ("error", "message")),
    "Ready": _object(
        {
            "status": {"enum": ["ready", "not_ready"]},
            "role": {"enum": ["leader", "standby"]},
            "service_sid": NULLABLE_STRING,
            "service_problem": STRING,
        },
        ("status", "role", "service_sid"),
    ),
    "SyncRequest": schema(SyncBody),
    "SyncAccepted": _object(
        {"run_id": INT, "status": STRING, "scope": STRING, "href": STRING}, ("run_id",)
    ),
    "RunDetail": _object(
        {
            "run": {"type": "object"},
            "errors": {"type": "array"},
            "held_deletions": {"type": "array"},
            "held_writes": {"type": "array"},
            "actions": _array("AuditEntry"),
            "actions_next": NULLABLE_STRING,
        }
    ),
    "AuditEntry": _object(
        {
            **dict.fromkeys(("id", "run_id"), INT),
            **dict.fromkeys(("at", "trigger", "scope", "action", "outcome"), STRING),
            **dict.fromkeys(("user_id", "identity", "sid", "reason"), NULLABLE_STRING),
            **dict.fromkeys(("request_id", "message"), NULLABLE_STRING),
            **{key: {"type": ["integer", "null"]} for key in ("http_status", "twilio_code")},
            "changes": {"type": "object"},
        },
        ("id", "at", "run_id", "action", "outcome", "changes"),
    ),
    "UserHistory": _object(
        {"user": STRING, "entries": _array("AuditEntry"), "next": NULLABLE_STRING},
        ("user", "entries", "next"),
    ),
    "RunActions": _object(
        {"run_id": INT, "actions": _array("AuditEntry"), "actions_next": NULLABLE_STRING},
        ("run_id", "actions", "actions_next"),
    ),
    "UserDetail": _object(
        {
            "key": STRING,
            "local": {"type": ["object", "null"]},
            "state": {"type": ["object", "null"]},
            "last_error": {"type": ["object", "null"]},
            "pending_events": INT,
        }
    ),
    "UserOutcome": _object(
        {
            "user_id": STRING,
            "event_id": INT,
            "run_id": INT,
            "run_status": NULLABLE_STRING,
            "outcome": STRING,
            "state": {"type": ["object", "null"]},
            "error": {"type": ["object", "null"]},
        },
        ("user_id", "run_id", "outcome"),
    ),
    "Event": schema(EventBody),
    "EventsAccepted": _object({"accepted": INT, "event_ids": {"type": "array", "items": INT}}),
}


def spec(settings: Settings) -> dict[str, Any]:
    header = {"type": "apiKey", "in": "header"}
    return {
        "openapi": "3.1.0",
        "info": {"title": "user-sync admin API", "version": "1"},
        "security": [{"bearer": []}],
        "paths": _paths(),
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "signature": {**header, "name": settings.webhook_signature_header},
                "timestamp": {**header, "name": settings.webhook_timestamp_header},
            },
        },
    }


async def openapi(request: web.Request) -> web.Response:
    return ok(spec(request.app[SETTINGS]))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/openapi.json", openapi, allow_head=False)
