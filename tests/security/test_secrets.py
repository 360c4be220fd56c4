"""Secrets never leave: not in logs, output, errors, metrics, HTTP responses or database rows.

A sync (right and wrong credentials), `serve` (good and bad requests, /metrics) and the demo run
with recognisable secret values; then every line they printed, every response body and every
row of every table is searched for them.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from service.db.engine import connect
from service.emulator import EmulatorConfig, RunningEmulator, running_emulator
from tests.e2e.conftest import insert_users
from tests.e2e.serving import ServeProcess, eventually
from tests.e2e.test_cli import cli_env

MARK = "Zq9SECRETxK7"
AUTH_TOKEN = f"auth-{MARK}-token"
API_KEY = "SK" + "7c" * 16
API_SECRET = f"key-{MARK}-secret"
ADMIN_TOKEN = f"admin-{MARK}-token"
WEBHOOK_SECRET = f"hook-{MARK}-secret"
DB_PASSWORD = f"pw-{MARK}-db"
ROLE = "usersync_secret_test"


@pytest.fixture
async def marked_emulator() -> AsyncIterator[RunningEmulator]:
    config = EmulatorConfig(
        auth_token=AUTH_TOKEN, api_keys={API_KEY: API_SECRET}, write_limit_per_second=None
    )
    async with running_emulator(config) as running:
        yield running


@pytest.fixture
async def url_with_password(database_url: str) -> AsyncIterator[str]:
    """The test database through a role whose password is a secret (trust auth ignores it)."""
    admin = await connect(database_url)
    await admin.execute(f"DROP ROLE IF EXISTS {ROLE}")
    await admin.execute(f"CREATE ROLE {ROLE} LOGIN SUPERUSER PASSWORD '{DB_PASSWORD}'")
    url = make_url(database_url).set(username=ROLE, password=DB_PASSWORD)
    yield url.render_as_string(hide_password=False)
    await admin.execute(f"REASSIGN OWNED BY {ROLE} TO CURRENT_USER")
    await admin.execute(f"DROP OWNED BY {ROLE}")
    await admin.execute(f"DROP ROLE {ROLE}")
    await admin.close()


def env_for(url: str, emulator: RunningEmulator, **extra: str) -> dict[str, str]:
    base = cli_env(url, emulator, USERSYNC_LOG_FORMAT="json", USERSYNC_LOG_LEVEL="DEBUG")
    base["TWILIO_AUTH_TOKEN"] = AUTH_TOKEN
    base.update(extra)
    return base


async def run(*args: str, env: dict[str, str]) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 120)
    return out.decode(errors="replace")


async def database_dump(engine: AsyncEngine) -> str:
    async with engine.connect() as connection:
        tables = (
            (
                await connection.execute(
                    text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
                )
            )
            .scalars()
            .all()
        )
        parts = []
        for table in tables:
            rows = await connection.execute(text(f'SELECT t::text FROM "{table}" t'))
            parts += list(rows.scalars())
    return "\n".join(parts)


def signed(body: bytes, secret: str) -> dict[str, str]:
    stamp = str(int(time.time()))
    digest = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"X-UserSync-Timestamp": stamp, "X-UserSync-Signature": f"sha256={digest}"}


async def exercise_serve(url: str, emulator: RunningEmulator) -> str:
    settings = {
        "database_url": url,
        "TWILIO_ACCOUNT_SID": emulator.config.account_sid,
        "TWILIO_API_KEY": API_KEY,
        "TWILIO_API_SECRET": API_SECRET,
        "api_base_url": emulator.base_url,
        "api_token": ADMIN_TOKEN,
        "webhook_secret": WEBHOOK_SECRET,
        "log_level": "DEBUG",
        "schedule_enabled": False,
        "leader_retry_interval": 0.5,
    }
    server = await ServeProcess.start(settings)
    seen: list[str] = []
    try:
        async with aiohttp.ClientSession() as http:
            good = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            wrong = {"Authorization": f"Bearer {ADMIN_TOKEN}x"}
            requests = [
                ("GET", "/readyz", {}, None),
                ("GET", "/runs", good, None),
                ("GET", "/runs", wrong, None),
                ("GET", "/runs/999", good, None),
                ("GET", "/users/nobody", good, None),
                ("POST", "/sync", good, b'{"scope": "full"}'),
                ("POST", "/sync/users/a", good, None),
                ("POST", "/events", {}, b"{not json"),
            ]
            body = json.dumps({"type": "user.updated", "id": "a"}).encode()
            requests.append(("POST", "/events", signed(body, WEBHOOK_SECRET), body))
            requests.append(("POST", "/events", signed(body, WEBHOOK_SECRET + "x"), body))
            for method, path, headers, data in requests:
                async with http.request(
                    method, server.base_url + path, headers=headers, data=data
                ) as response:
                    seen.append(
                        f"{response.status} {dict(response.headers)} {await response.text()}"
                    )

            async def ran() -> bool:
                async with http.get(server.base_url + "/runs", headers=good) as response:
                    return len((await response.json())["runs"]) >= 2

            await eventually(ran, within=20.0)
            async with http.get(server.base_url + "/metrics") as response:
                seen.append(await response.text())
    finally:
        await server.stop()
    seen += [json.dumps(line) for line in server.lines]
    return "\n".join(seen)


async def test_no_secret_appears_in_any_output_response_metric_or_row(
    engine: AsyncEngine, db: Any, url_with_password: str, marked_emulator: RunningEmulator
):
    await insert_users(
        engine,
        [{"id": "a", "identity": "alice"}, {"id": "bad", "identity": "x", "role": "no such"}],
    )
    outputs = [
        await run("sync", env=env_for(url_with_password, marked_emulator)),
        await run(
            "sync",
            "--json",
            env=env_for(
                url_with_password, marked_emulator, TWILIO_AUTH_TOKEN=AUTH_TOKEN + "-wrong"
            ),
        ),
        await run(
            "sync",
            "--dry-run",
            env=env_for(
                url_with_password,
                marked_emulator,
                TWILIO_API_KEY=API_KEY,
                TWILIO_API_SECRET=API_SECRET,
            ),
        ),
        await run("status", env=env_for(url_with_password, marked_emulator)),
        await run(
            "sync", env=env_for(url_with_password, marked_emulator, USERSYNC_WRITE_RATE=f"{MARK}")
        ),
        await exercise_serve(url_with_password, marked_emulator),
        await run("demo", "--users", "20", env=env_for(url_with_password, marked_emulator)),
        await database_dump(engine),
    ]

    everything = "\n".join(outputs)
    assert "alice" in everything  # the outputs are real, not empty
    assert "20003" in everything or "Authenticate" in everything  # the wrong token was used
    for secret in (AUTH_TOKEN, API_SECRET, ADMIN_TOKEN, WEBHOOK_SECRET, DB_PASSWORD):
        assert secret not in everything, f"{secret} leaked"
