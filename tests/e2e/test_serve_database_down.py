"""The admin API when the database cannot answer: 503 with a JSON body that says why (the
request may work later, as `/readyz` tells), never a 500. Also a bearer token that is not
UTF-8: refused like any wrong token. (Both answered 500, found by the adversarial review.)"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from pydantic import SecretStr

from service.config import Settings
from service.db.engine import connect
from service.triggers import keys
from tests.e2e.serving import FAST, TOKEN, Served, serve_app

READS = (("GET", "/runs"), ("GET", "/runs/1"), ("GET", "/users/someone"))


async def answers(served: Served, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    async with served.http.request(method, served.base_url + path, **kwargs) as response:
        return response.status, await response.json()


async def test_a_database_never_migrated_is_503_saying_to_migrate(
    settings_for: Callable[..., Settings], empty_database: str
):
    settings = settings_for(**FAST).model_copy(update={"database_url": SecretStr(empty_database)})
    async with serve_app(settings) as served:
        for method, path in (*READS, ("POST", "/events")):
            body = {"json": {"type": "user.updated", "id": "x"}} if method == "POST" else {}
            status, answer = await answers(served, method, path, **body)
            assert status == 503, (path, answer)
            if path.startswith("/users/"):  # the source is read first: its table is missing
                assert answer["error"] == "source_unreadable", answer
                continue
            assert answer["error"] == "database_unavailable"
            assert "run user-sync migrate" in answer["message"]


async def test_a_database_gone_away_is_503_naming_the_cause(
    db: Any, settings_for: Callable[..., Settings], postgres_server: str, database_url: str
):
    """The session's database renamed away under the served app: each new connection is
    refused (no such database), as when the server is down or refuses the login."""
    name = database_url.rsplit("/", 1)[1].split("?", maxsplit=1)[0]
    admin = await connect(postgres_server)
    try:
        async with serve_app(settings_for(**FAST)) as served:
            await rename(admin, name, f"{name}_away")
            try:
                for method, path in READS:
                    status, answer = await answers(served, method, path)
                    assert status == 503, (path, answer)
                    assert answer["error"] == "database_unavailable"
                    assert answer["message"].startswith("the database cannot be reached")
            finally:
                await rename(admin, f"{name}_away", name)
    finally:
        await admin.close()


async def rename(admin: Any, old: str, new: str) -> None:
    """Rename a database in use: no new session may start while its sessions are ended."""
    await admin.execute(f'ALTER DATABASE "{old}" WITH ALLOW_CONNECTIONS false')
    try:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", old
        )
        for _ in range(50):  # ended sessions leave pg_stat_activity a moment later
            if not await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1", old
            ):
                break
            await asyncio.sleep(0.05)
        await admin.execute(f'ALTER DATABASE "{old}" RENAME TO "{new}"')
    finally:
        renamed = (
            new
            if await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", new)
            else old
        )
        await admin.execute(f'ALTER DATABASE "{renamed}" WITH ALLOW_CONNECTIONS true')


async def test_a_bearer_token_that_is_not_utf8_is_refused_not_a_server_error(
    db: Any, settings_for: Callable[..., Settings]
):
    async with serve_app(settings_for(**FAST)) as served:
        host, port = served.base_url.removeprefix("http://").split(":")
        for presented in (b"\xff", b"\xc3(" + TOKEN.encode(), "é".encode("latin-1")):
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(
                b"GET /runs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                b"Authorization: Bearer " + presented + b"\r\n\r\n"
            )
            await writer.drain()
            raw = await reader.read()
            writer.close()
            head, _, body = raw.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 403"), raw[:200]
            assert json.loads(body)["error"] == "forbidden"


async def test_a_leader_whose_duties_fail_at_once_backs_off_instead_of_flapping(
    settings_for: Callable[..., Settings], empty_database: str
):
    """On a database never migrated the leader's duties fail as soon as it leads. Each such
    term used to start the backoff over (the adversary saw three terms a second, a warning
    each); short terms now back off as failures do: 0.2-0.4 s, then 0.4-0.8, 0.8-1.6, ..."""
    settings = settings_for(**FAST).model_copy(update={"database_url": SecretStr(empty_database)})
    async with serve_app(settings) as served:
        leadership = served.app[keys.LEADERSHIP]
        await asyncio.sleep(3.0)
        terms = leadership.terms

    assert 1 <= terms <= 5  # the old backoff made 7 or more in 3 s
