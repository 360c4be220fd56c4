"""The control API under `/__emulator/`: the same levers as the `Emulator` object, over HTTP.

For tools outside the test process (the demo, a developer's shell, other languages). No auth:
the emulator is a local test double. Bodies are JSON, checked with pydantic; a bad request gets
400 `{"error": "..."}`, an unknown service 404. A seed's attributes given as an object keep
their numbers exactly (read as Decimals, written back as they were).

    POST   /__emulator/reset                      back to one default service, no users
    POST   /__emulator/services   {friendly_name}  a new Service with the default roles
    POST   /__emulator/seed       {users, service_sid?}
    GET    /__emulator/state      [?service_sid=]  services with their roles and users
    GET    /__emulator/stats | DELETE /__emulator/stats
    POST   /__emulator/faults     {kind: status|rate_limit|drop|latency, ...} | DELETE (clear)
    PUT    /__emulator/limit      {per_second: float | null}
    PUT    /__emulator/load       {writes_per_second: float | null, service_sid?}  another client
    GET    /__emulator/load       what it attempted and how many writes were refused
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.emulator.emulator import Emulator
from service.emulator.pipeline import EMULATOR

PREFIX = "/__emulator"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class SeedUser(_Body):
    identity: str
    friendly_name: str | None = None
    attributes: str | dict[str, Any] | None = None
    role_sid: str | None = None


class SeedRequest(_Body):
    users: list[SeedUser]
    service_sid: str | None = None


class ServiceRequest(_Body):
    friendly_name: str = "Emulated Conversation Service"


class FaultRequest(_Body):
    kind: Literal["status", "rate_limit", "drop", "latency"]
    count: int | None = None
    fraction: float | None = None
    status: int = 500
    retry_after: float | None = None
    operations: list[str] | None = None
    after_processing: bool = False
    seconds: float = Field(default=0.0, description="Only for kind=latency.")
    jitter: float = Field(
        default=0.0, description="Only for kind=latency: the standard deviation, in seconds."
    )


MAX_LOAD = 1000.0
"""Writes per second another client may spend (more is a busy loop, not a client)."""


class LimitRequest(_Body):
    per_second: float | None


class LoadRequest(_Body):
    writes_per_second: float | None = Field(gt=0, le=MAX_LOAD)
    service_sid: str | None = None


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def control_routes() -> list[web.RouteDef]:
    return [
        web.post(f"{PREFIX}/reset", _guarded(reset)),
        web.post(f"{PREFIX}/services", _guarded(create_service)),
        web.post(f"{PREFIX}/seed", _guarded(seed)),
        web.get(f"{PREFIX}/state", _guarded(state), allow_head=False),
        web.get(f"{PREFIX}/stats", _guarded(stats), allow_head=False),
        web.delete(f"{PREFIX}/stats", _guarded(reset_stats)),
        web.post(f"{PREFIX}/faults", _guarded(add_fault)),
        web.delete(f"{PREFIX}/faults", _guarded(clear_faults)),
        web.put(f"{PREFIX}/limit", _guarded(set_limit)),
        web.put(f"{PREFIX}/load", _guarded(set_load)),
        web.get(f"{PREFIX}/load", _guarded(load), allow_head=False),
    ]


def _guarded(handler: Handler) -> Handler:
    """Turns bad input into 400 and unknown services into 404, with a readable message."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except (ValidationError, ValueError) as error:
            return web.json_response({"error": str(error)}, status=400)
        except RecursionError:
            message = "the body nests arrays or objects too deeply to read"
            return web.json_response({"error": message}, status=400)
        except KeyError as error:
            return web.json_response({"error": str(error.args[0])}, status=404)

    return guarded


def _emulator(request: web.Request) -> Emulator:
    return request.app[EMULATOR]


async def reset(request: web.Request) -> web.StreamResponse:
    _emulator(request).reset()
    return web.Response(status=204)


async def create_service(request: web.Request) -> web.StreamResponse:
    body = ServiceRequest.model_validate_json(await request.read() or b"{}")
    emulator = _emulator(request)
    sid = emulator.create_service(body.friendly_name)
    payload = {"sid": sid, "friendly_name": body.friendly_name, "roles": emulator.roles(sid)}
    return web.json_response(payload, status=201)


async def seed(request: web.Request) -> web.StreamResponse:
    raw = json.loads(await request.read(), parse_float=Decimal, parse_int=Decimal)
    body = SeedRequest.model_validate(raw)
    users = [user.model_dump(exclude_none=True) for user in body.users]
    created = _emulator(request).seed_users(users, service_sid=body.service_sid)
    return web.json_response({"count": len(created), "users": created}, status=201)


async def state(request: web.Request) -> web.StreamResponse:
    emulator = _emulator(request)
    wanted = request.query.get("service_sid")
    services = [emulator.service(wanted)] if wanted else emulator.directory.services()
    payload = {
        "default_service_sid": emulator.default_service_sid,
        "write_limit_per_second": emulator.limiter.per_second,
        "services": [
            {
                "sid": service.sid,
                "friendly_name": service.friendly_name,
                "default_role_sid": service.default_role_sid,
                "roles": emulator.roles(service.sid),
                "users": emulator.users(service.sid),
            }
            for service in services
        ],
    }
    return web.json_response(payload)


async def stats(request: web.Request) -> web.StreamResponse:
    return web.json_response(_emulator(request).stats)


async def reset_stats(request: web.Request) -> web.StreamResponse:
    _emulator(request).reset_stats()
    return web.Response(status=204)


async def add_fault(request: web.Request) -> web.StreamResponse:
    body = FaultRequest.model_validate_json(await request.read())
    emulator = _emulator(request)
    if body.kind == "latency":
        emulator.set_latency(body.seconds, jitter=body.jitter, operations=body.operations)
    else:
        emulator.inject_fault(
            body.kind,
            count=body.count,
            fraction=body.fraction,
            status=body.status,
            retry_after=body.retry_after,
            operations=body.operations,
            after_processing=body.after_processing,
        )
    return web.json_response(body.model_dump(), status=201)


async def clear_faults(request: web.Request) -> web.StreamResponse:
    _emulator(request).clear_faults()
    return web.Response(status=204)


async def set_limit(request: web.Request) -> web.StreamResponse:
    body = LimitRequest.model_validate_json(await request.read())
    _emulator(request).set_write_limit(body.per_second)
    return web.json_response({"per_second": body.per_second})


async def set_load(request: web.Request) -> web.StreamResponse:
    body = LoadRequest.model_validate_json(await request.read())
    emulator = _emulator(request)
    if body.writes_per_second is None:
        stopped = emulator.stop_load()
        return web.json_response(stopped.as_json() if stopped is not None else None)
    started = emulator.start_load(body.writes_per_second, service_sid=body.service_sid)
    return web.json_response(started.counts.as_json(), status=201)


async def load(request: web.Request) -> web.StreamResponse:
    running = _emulator(request).load
    return web.json_response(running.counts.as_json() if running is not None else None)
