"""The account's Configuration over HTTP: `GET` and `POST /v1/Configuration`.

An account-level resource (no Service in the URL, only the Conversations v1 form), behind the
same Basic auth, counters, latency and faults as every other call; see `configuration.py` for
what an update may change and how it is checked.
"""

from __future__ import annotations

from aiohttp import web

from service.emulator.configuration import ConfigurationChange, apply_change, render_configuration
from service.emulator.forms import form_fields, text_field
from service.emulator.operations import Operation
from service.emulator.pipeline import EMULATOR, origin, serve_account_call

PATH = "/v1/Configuration"


def configuration_routes() -> list[web.RouteDef]:
    return [
        web.get(PATH, fetch_configuration, allow_head=False),
        web.post(PATH, update_configuration),
    ]


async def fetch_configuration(request: web.Request) -> web.StreamResponse:
    async def action() -> web.StreamResponse:
        return _configuration_response(request)

    return await serve_account_call(request, Operation.FETCH_CONFIGURATION, action=action)


async def update_configuration(request: web.Request) -> web.StreamResponse:
    async def action() -> web.StreamResponse:
        emulator = request.app[EMULATOR]
        change = await _change(request)
        apply_change(change, configuration=emulator.configuration, directory=emulator.directory)
        return _configuration_response(request)

    return await serve_account_call(request, Operation.UPDATE_CONFIGURATION, action=action)


async def _change(request: web.Request) -> ConfigurationChange:
    form = await form_fields(request)

    def text(name: str) -> str | None:
        return text_field(form, name)

    return ConfigurationChange(
        default_chat_service_sid=text("DefaultChatServiceSid"),
        default_messaging_service_sid=text("DefaultMessagingServiceSid"),
        default_inactive_timer=text("DefaultInactiveTimer"),
        default_closed_timer=text("DefaultClosedTimer"),
    )


def _configuration_response(request: web.Request) -> web.Response:
    emulator = request.app[EMULATOR]
    body = render_configuration(
        emulator.configuration,
        default_chat_service_sid=emulator.default_service_sid,
        account_sid=emulator.config.account_sid,
        origin=origin(request),
    )
    return web.json_response(body)
