"""A local, in-memory emulator of the Twilio Conversations / Chat Users API.

An independent second reading of the OpenAPI specs (it imports nothing of the client), served
over real HTTP by aiohttp, for our tests, the demo and developers. Three URL forms of Users
(`/v1/Users`, `/v1/Services/{sid}/Users`, `/v2/Services/{sid}/Users`) and Roles, the account's
Configuration (`/v1/Configuration`: which Service `/v1/Users` means), Basic auth with
the account's auth token or an API key, Twilio's error bodies, token paging, the per-Service
write limit, and injected faults; see `control.py` for the control API and `cli.py` to run it.

    async with running_emulator(EmulatorConfig()) as running:
        running.emulator.seed_users([{"identity": "alice"}])
        ...  # point a client at running.base_url
"""

from service.emulator.config import (
    DEFAULT_ACCOUNT_SID,
    DEFAULT_AUTH_TOKEN,
    DEFAULT_SERVICE_SID,
    EmulatorConfig,
)
from service.emulator.emulator import Emulator
from service.emulator.operations import Operation
from service.emulator.server import RunningEmulator, create_app, running_emulator

__all__ = [
    "DEFAULT_ACCOUNT_SID",
    "DEFAULT_AUTH_TOKEN",
    "DEFAULT_SERVICE_SID",
    "Emulator",
    "EmulatorConfig",
    "Operation",
    "RunningEmulator",
    "create_app",
    "running_emulator",
]
