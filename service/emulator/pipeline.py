"""What every API call goes through, in Twilio's order, around the operation itself.

count the call -> injected latency -> authenticate -> find the Service -> for writes, note the
`X-Twilio-Webhook-Enabled` header (what the client sent, faulted or not) -> injected fault
("not processed") -> for writes, the per-Service write limit -> the operation -> injected fault
"after processing" (only when the operation succeeded). Account-level resources (the
Configuration) skip the Service steps and the write limit; everything else is the same.
Errors become Twilio's JSON error bodies; a dropped connection gets no response at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

from service.emulator import errors
from service.emulator.auth import authenticate
from service.emulator.emulator import Emulator
from service.emulator.errors import ApiError
from service.emulator.faults import Fault, FaultKind
from service.emulator.operations import Operation
from service.emulator.records import Service
from service.emulator.representation import UrlForm

EMULATOR = web.AppKey("emulator", Emulator)
WEBHOOK_HEADER = "X-Twilio-Webhook-Enabled"

Action = Callable[[Service], Awaitable[web.StreamResponse]]
AccountAction = Callable[[], Awaitable[web.StreamResponse]]


async def serve_call(
    request: web.Request, operation: Operation, *, form: UrlForm, action: Action
) -> web.StreamResponse:
    """A call on one Service's resources (Users, Roles), found from the URL form."""
    emulator = request.app[EMULATOR]

    def admit() -> Callable[[], Awaitable[web.StreamResponse]]:
        service = _service(request, emulator, form)
        if operation.is_write:
            _note_webhook_header(request, emulator)

        async def proceed() -> web.StreamResponse:
            if operation.is_write and not emulator.limiter.try_acquire(service.sid):
                emulator.counters.record("rate_limited")
                raise errors.too_many_requests()
            return await action(service)

        return proceed

    return await _serve(request, operation, admit=admit)


async def serve_account_call(
    request: web.Request, operation: Operation, *, action: AccountAction
) -> web.StreamResponse:
    """A call on an account-level resource (Configuration): no Service to find, no write limit."""
    return await _serve(request, operation, admit=lambda: action)


async def _serve(
    request: web.Request,
    operation: Operation,
    *,
    admit: Callable[[], Callable[[], Awaitable[web.StreamResponse]]],
) -> web.StreamResponse:
    """The steps every call shares; `admit` runs the call's own checks and returns the rest."""
    emulator = request.app[EMULATOR]
    emulator.counters.record(operation)
    delay = emulator.faults.latency(operation)
    if delay:
        await asyncio.sleep(delay)
    try:
        authenticate(request.headers.get("Authorization"), emulator.config)
        proceed = admit()
        fault = emulator.faults.take(operation, after_processing=False)
        if fault is not None:
            return _faulted(request, emulator, fault)
        response = await proceed()
    except ApiError as error:
        return error_response(error, emulator)
    fault = emulator.faults.take(operation, after_processing=True)
    return response if fault is None else _faulted(request, emulator, fault)


def error_response(error: ApiError, emulator: Emulator | None = None) -> web.Response:
    headers = {}
    if error.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="Twilio API"'
    if emulator is not None:
        if error.status == 401:
            emulator.counters.record("unauthorized")
        if error.status == 429:
            emulator.counters.record("too_many_requests")
    return web.json_response(error.body(), status=error.status, headers=headers)


def origin(request: web.Request) -> str:
    """Where the client reached us, for absolute URLs in responses."""
    return f"{request.scheme}://{request.host}"


def _service(request: web.Request, emulator: Emulator, form: UrlForm) -> Service:
    if form is UrlForm.DEFAULT_SERVICE:
        sid = emulator.default_service_sid
    else:
        sid = request.match_info["service_sid"]
    service = emulator.directory.service(sid)
    if service is None:
        raise errors.not_found(request.path)
    return service


def _note_webhook_header(request: web.Request, emulator: Emulator) -> None:
    webhook = request.headers.get(WEBHOOK_HEADER)
    if webhook is None:
        return
    if webhook.lower() not in ("true", "false"):
        raise errors.invalid_parameter(f"Invalid {WEBHOOK_HEADER} header: {webhook}")
    enabled = webhook.lower() == "true"
    emulator.counters.record("webhook_enabled" if enabled else "webhook_disabled")


def _faulted(request: web.Request, emulator: Emulator, fault: Fault) -> web.StreamResponse:
    emulator.counters.record("faults")
    if fault.kind is FaultKind.DROP:
        emulator.counters.record("dropped")
        if request.transport is not None:
            request.transport.close()
        # aiohttp wants a response object; with the transport closed, none reaches the client
        return web.Response(status=500)
    if fault.kind is FaultKind.RATE_LIMIT:
        response = error_response(errors.too_many_requests(), emulator)
        if fault.retry_after is not None:
            response.headers["Retry-After"] = _seconds(fault.retry_after)
        return response
    return error_response(errors.server_error(fault.status), emulator)


def _seconds(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:g}"
