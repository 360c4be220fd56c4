"""Behind a transaction pooler session locks and LISTEN silently stop working: `serve` refuses
to lead through one, saying why, and leads through `USERSYNC_LEADER_DATABASE_URL` direct to
Postgres; `sync` refuses to run with its locks there (a real PgBouncer in transaction mode)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.db.engine import connect
from service.emulator.config import DEFAULT_SERVICE_SID
from service.reconcile.readahead import READ_AHEAD
from tests.e2e.conftest import fetch_all
from tests.e2e.serving import TOKEN, ServeProcess, eventually
from tests.e2e.test_cli import cli_env, run_cli
from tests.fixtures.pgbouncer import Bouncer

Start = Callable[..., Awaitable[ServeProcess]]
LEADER_KEY = f"user-sync:leader:{DEFAULT_SERVICE_SID[:2]}{DEFAULT_SERVICE_SID[2:].lower()}"
LEADER_SESSIONS = """SELECT a.application_name FROM pg_locks k JOIN pg_stat_activity a USING (pid)
    WHERE k.locktype = 'advisory' AND k.granted AND k.objsubid = 1
      AND k.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND ((k.classid::bigint << 32) | k.objid::bigint) = hashtextextended(:key, 0)"""


@pytest.fixture
async def start(db: Any, database_url: str, fast_emulator: Any) -> AsyncIterator[Start]:
    started: list[ServeProcess] = []

    async def launch(**overrides: Any) -> ServeProcess:
        process = await ServeProcess.start(
            {
                "database_url": database_url,
                "TWILIO_ACCOUNT_SID": fast_emulator.config.account_sid,
                "TWILIO_AUTH_TOKEN": fast_emulator.config.auth_token,
                "api_base_url": fast_emulator.base_url,
                "api_token": TOKEN,
                "schedule_enabled": False,
                "leader_retry_interval": 0.2,
                **overrides,
            }
        )
        started.append(process)
        return process

    yield launch
    for process in started:
        await process.stop()


async def readiness(server: ServeProcess) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(server.base_url + "/readyz") as response:
        return response.status, await response.json()


def refusal(server: ServeProcess) -> str | None:
    return next(
        (
            e
            for line in server.lines
            if (e := str(line.get("event"))).startswith("refusing to lead")
        ),
        None,
    )


async def test_serve_refuses_to_lead_through_a_transaction_pooler_and_says_why(
    start: Start, engine: AsyncEngine, database_url: str, pgbouncer: Bouncer
):
    server = await start(leader_database_url=pgbouncer.url(database_url))

    async def refused() -> str | None:
        return refusal(server)

    line = await eventually(refused, within=15.0)
    status, body = await readiness(server)

    assert "USERSYNC_LEADER_DATABASE_URL" in line
    assert "direct connection to Postgres" in line
    assert status == 503
    assert body["role"] == "standby"
    assert "USERSYNC_LEADER_DATABASE_URL" in body["leader_problem"]
    assert not server.logged("leader")
    assert await fetch_all(engine, LEADER_SESSIONS, key=LEADER_KEY) == []


async def test_serve_leads_through_the_leader_url_straight_to_postgres(
    start: Start, engine: AsyncEngine, database_url: str
):
    server = await start(leader_database_url=f"{database_url}?application_name=leader-direct")

    async def is_leader() -> bool:
        return (await readiness(server))[1].get("role") == "leader"

    await eventually(is_leader, within=15.0)
    status, body = await readiness(server)

    assert status == 200
    assert "leader_problem" not in body
    assert refusal(server) is None
    assert await fetch_all(engine, LEADER_SESSIONS, key=LEADER_KEY) == [
        {"application_name": "leader-direct"}
    ]


async def test_sync_refuses_to_run_with_its_locks_behind_a_pooler(
    db: Any, database_url: str, fast_emulator: Any, pgbouncer: Bouncer
):
    env = cli_env(
        database_url, fast_emulator, USERSYNC_LEADER_DATABASE_URL=pgbouncer.url(database_url)
    )

    code, out, err = await run_cli("sync", env=env)

    assert code == 2
    assert out == ""
    assert err.startswith("user-sync: refusing to run: a session lock did not stay")
    assert "USERSYNC_LEADER_DATABASE_URL" in err
    assert len(err.strip().splitlines()) == 1
    assert_nothing_written(fast_emulator)


RUN_LOCK_SESSIONS = """SELECT DISTINCT a.application_name FROM pg_locks k
    JOIN pg_stat_activity a USING (pid)
    WHERE k.locktype = 'advisory' AND k.granted AND a.datname = current_database()"""


async def test_a_run_takes_its_session_locks_on_the_leader_url(
    engine: AsyncEngine, sync: Any, database_url: str, fast_emulator: Any
):
    fast_emulator.emulator.set_latency(1.0, operations={"list_users"})
    run = asyncio.create_task(
        sync(leader_database_url=f"{database_url}?application_name=locks-direct")
    )

    async def locks_held() -> list[dict[str, Any]]:
        return await fetch_all(engine, RUN_LOCK_SESSIONS)

    holders = await eventually(locks_held, within=10.0)
    report = await run

    assert holders == [{"application_name": "locks-direct"}]  # the run lock and its alive lock
    assert report.status.value == "succeeded"


async def test_sync_refuses_a_leader_url_that_reaches_empty_database(
    db: Any, database_url: str, fast_emulator: Any, empty_database: str
):
    """The symptom: runs recorded in one database took their locks in the other, and every
    user was 'left to another run', for ever."""
    env = cli_env(database_url, fast_emulator, USERSYNC_LEADER_DATABASE_URL=empty_database)

    code, out, err = await run_cli("sync", env=env)

    assert code == 2
    assert out == ""
    assert err.startswith("user-sync: refusing to run: USERSYNC_LEADER_DATABASE_URL reaches")
    assert empty_database.rsplit("/", 1)[1] in err
    assert len(err.strip().splitlines()) == 1
    assert_nothing_written(fast_emulator)


async def test_serve_refuses_to_lead_with_a_leader_url_to_empty_database(
    start: Start, engine: AsyncEngine, empty_database: str
):
    server = await start(leader_database_url=empty_database)

    async def refused() -> str | None:
        return refusal(server)

    line = await eventually(refused, within=15.0)
    status, body = await readiness(server)

    assert "USERSYNC_LEADER_DATABASE_URL reaches database" in line
    assert status == 503
    assert "USERSYNC_LEADER_DATABASE_URL reaches database" in body["leader_problem"]
    assert await fetch_all(engine, LEADER_SESSIONS, key=LEADER_KEY) == []


async def test_serve_is_not_ready_while_its_leader_session_cannot_connect(
    start: Start, database_url: str, postgres_server: str
):
    """The symptom: `database unreachable` logged for ever, `/readyz` 200 `ready`. (A leader
    URL that cannot connect at all stops `serve` at start; this is one lost later.)"""
    name = database_url.rsplit("/", 1)[1].split("?", maxsplit=1)[0]
    server = await start(
        leader_database_url=f"{database_url}?application_name=leader-lost",
        leader_check_interval=0.5,
    )

    async def is_leader() -> bool:
        return (await readiness(server))[1].get("role") == "leader"

    await eventually(is_leader, within=15.0)
    admin = await connect(postgres_server)
    try:
        await admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = $1 AND application_name = 'leader-lost'",
            name,
        )

        async def not_ready() -> tuple[int, dict[str, Any]] | None:
            answer = await readiness(server)
            return answer if "leader_problem" in answer[1] else None

        status, body = await eventually(not_ready, within=15.0)
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
        await admin.close()

    assert status == 503
    assert body["role"] == "standby"
    assert body["leader_problem"].startswith("the leader's database session cannot connect")
    assert body["leader_problem"].endswith("check USERSYNC_LEADER_DATABASE_URL")


def assert_nothing_written(emulator: Any) -> None:
    """A full sync refused on the database side wrote nothing; it had begun its listing while
    it loaded (`service.headstart`: reads only, at most the read-ahead)."""
    stats = emulator.emulator.stats
    assert [stats.get(k, 0) for k in ("create_user", "update_user", "delete_user")] == [0, 0, 0]
    assert stats.get("list_users", 0) <= READ_AHEAD + 1
