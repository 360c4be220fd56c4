"""The emulator as a running HTTP server: the app factory and an async context manager.

`create_app(emulator)` wires the three URL forms of Users and Roles, the account's Configuration
and the control API into one aiohttp application; nothing is global, so a test can run as many
emulators as it likes.
`running_emulator(config)` serves one on `config.host:config.port` (port 0: any free port) for the
duration of an `async with` block.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web

from service.emulator import errors
from service.emulator.config import EmulatorConfig
from service.emulator.configuration_api import configuration_routes
from service.emulator.control import control_routes
from service.emulator.emulator import Emulator
from service.emulator.errors import ApiError
from service.emulator.pipeline import EMULATOR, error_response
from service.emulator.representation import UrlForm
from service.emulator.roles_api import role_routes
from service.emulator.sids import REQUEST_PREFIX
from service.emulator.users_api import user_routes

REQUEST_ID_HEADER = "Twilio-Request-Id"
MAX_BODY_BYTES = 256 * 1024 * 1024
"""Large enough for a control-API seed of 100,000 users in one request."""
SHUTDOWN_SECONDS = 2.0


def create_app(emulator: Emulator) -> web.Application:
    app = web.Application(middlewares=[_twilio_errors], client_max_size=MAX_BODY_BYTES)
    app[EMULATOR] = emulator
    app.on_response_prepare.append(_request_id)
    for form in UrlForm:
        app.add_routes(user_routes(form))
        app.add_routes(role_routes(form))
    app.add_routes(configuration_routes())
    app.add_routes(control_routes())
    app.on_cleanup.append(_stop_load)
    return app


async def _stop_load(app: web.Application) -> None:
    app[EMULATOR].stop_load()


@web.middleware
async def _twilio_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Unknown paths and methods answer in Twilio's error shape, not aiohttp's HTML."""
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return error_response(errors.not_found(request.path))
    except web.HTTPMethodNotAllowed:
        message = f"Method {request.method} not allowed for {request.path}"
        return error_response(ApiError(405, errors.METHOD_NOT_ALLOWED, message))


async def _request_id(request: web.Request, response: web.StreamResponse) -> None:
    """Every answer carries a `Twilio-Request-Id` (`RQ` and 32 hex digits), as Twilio's do."""
    response.headers[REQUEST_ID_HEADER] = request.app[EMULATOR].request_ids.new(REQUEST_PREFIX)


@dataclass
class RunningEmulator:
    base_url: str
    """`http://HOST:PORT`, without a trailing slash."""
    emulator: Emulator
    config: EmulatorConfig


@asynccontextmanager
async def running_emulator(config: EmulatorConfig | None = None) -> AsyncIterator[RunningEmulator]:
    config = config or EmulatorConfig()
    emulator = Emulator(config)
    runner = web.AppRunner(create_app(emulator), access_log=None, shutdown_timeout=SHUTDOWN_SECONDS)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port)
        await site.start()
        host, port = runner.addresses[0][:2]
        base_url = f"http://{_url_host(str(host))}:{port}"
        emulator.public_base_url = base_url
        yield RunningEmulator(base_url=base_url, emulator=emulator, config=config)
    finally:
        await runner.cleanup()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
