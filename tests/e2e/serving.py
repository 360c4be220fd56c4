"""The served app under test: in process (`serve_app`) or as real `user-sync serve` processes.

In process, `create_app(settings)` runs on 127.0.0.1 port 0 on the test's own event loop, next
to the emulator, so the test can talk to both. `ServeProcess` starts the real command with the
settings as environment variables and learns its port from its JSON log.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from service.app import create_app
from service.config import Settings
from tests.e2e.conftest import execute

TOKEN = "test-admin-token-0123456789"
WEBHOOK_SECRET = "test-webhook-secret-0123456789"
FAST = {
    "api_token": TOKEN,
    "webhook_secret": WEBHOOK_SECRET,
    "schedule_enabled": False,
    "leader_retry_interval": 0.2,
    "leader_check_interval": 0.5,
    "event_poll_interval": 1.0,
    "shutdown_grace": 1.0,
    "sync_user_timeout": 5.0,
}


@dataclass
class Served:
    base_url: str
    http: aiohttp.ClientSession
    """Sends the bearer token with every request."""
    anonymous: aiohttp.ClientSession
    app: web.Application

    async def get_json(self, path: str) -> Any:
        async with self.http.get(self.base_url + path) as response:
            assert response.status == 200, (path, response.status, await response.text())
            return await response.json()

    async def role(self) -> str | None:
        async with self.anonymous.get(self.base_url + "/readyz") as response:
            return (await response.json()).get("role")


@asynccontextmanager
async def serve_app(settings: Settings) -> AsyncIterator[Served]:
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with (
            aiohttp.ClientSession(headers=headers) as http,
            aiohttp.ClientSession() as anonymous,
        ):
            yield Served(f"http://{host}:{port}", http, anonymous, app)
    finally:
        await runner.cleanup()


@asynccontextmanager
async def quietly(engine: AsyncEngine) -> AsyncIterator[None]:
    """Changes to internal_users made in the block queue no events (the triggers are off)."""
    await execute(engine, "ALTER TABLE internal_users DISABLE TRIGGER USER")
    try:
        yield
    finally:
        await execute(engine, "ALTER TABLE internal_users ENABLE TRIGGER USER")


async def eventually(
    check: Callable[[], Awaitable[Any]], *, within: float = 10.0, every: float = 0.05
) -> Any:
    """Poll `check` until it returns something truthy; fail with its last value after `within`."""
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {within} s (last: {value!r})")
        await asyncio.sleep(every)


async def leading(served: Served, *, within: float = 10.0) -> None:
    async def is_leader() -> bool:
        return await served.role() == "leader"

    await eventually(is_leader, within=within)


def environment(settings: dict[str, Any]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("USERSYNC_", "TWILIO_"))}
    env.update({"USERSYNC_LOG_FORMAT": "json", "USERSYNC_HTTP_HOST": "127.0.0.1"})
    env["USERSYNC_HTTP_PORT"] = "0"
    env["USERSYNC_MAX_WRITES_PERCENT"] = "100"  # a few users of a few change, as in make_settings
    for name, value in settings.items():
        key = name if name.startswith("TWILIO_") else f"USERSYNC_{name.upper()}"
        env[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


class ServeProcess:
    """A real `user-sync serve` child process; its log lines are kept in `lines`."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[dict[str, Any]] = []
        self.port: int | None = None
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, settings: dict[str, Any]) -> ServeProcess:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "service",
            "serve",
            env=environment(settings),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        started = cls(process)
        await eventually(started._has_port, within=20.0)
        return started

    async def _has_port(self) -> bool:
        if self.process.returncode is not None:
            raise AssertionError(f"serve exited with {self.process.returncode}: {self.lines}")
        return self.port is not None

    async def _read(self) -> None:
        assert self.process.stderr is not None
        async for raw in self.process.stderr:
            try:
                line = json.loads(raw)
            except ValueError:
                line = {"event": raw.decode(errors="replace").rstrip()}
            self.lines.append(line)
            if line.get("event") == "serving":
                self.port = int(line["port"])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logged(self, event: str) -> bool:
        return any(line.get("event") == event for line in self.lines)

    async def role(self, http: aiohttp.ClientSession) -> str | None:
        try:
            async with http.get(self.base_url + "/readyz") as response:
                return (await response.json()).get("role")
        except aiohttp.ClientError:
            return None

    def signal(self, number: signal.Signals) -> None:
        self.process.send_signal(number)

    async def wait(self, *, within: float) -> int:
        code = await asyncio.wait_for(self.process.wait(), within)
        await self._reader
        return code

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        await self._reader
