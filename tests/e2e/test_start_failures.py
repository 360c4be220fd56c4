"""What stops a command at start is one line, never a traceback.

A database that cannot be used:
Wrong host or port, TLS refused, a password refused, a database that does not exist: `sync`,
`migrate`, `status` and `serve` each print `user-sync: cannot connect to the database at <URL,
password hidden>: <cause>; check USERSYNC_DATABASE_URL` and exit 1. `user-sync demo` with no
database URL and no embedded Postgres installed says what to install or set, and exits 2.
A database the migrations never ran in: `sync` and `status` say to run `user-sync migrate`.
`serve` on an address it cannot take (a host that does not resolve, a port in use) says so,
naming the settings, and exits 1.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.db import migrate
from service.db.engine import connect
from service.libpq.url import parse_database_url, with_database
from tests.e2e.conftest import execute
from tests.e2e.test_cli import cli_env, run_cli
from tests.e2e.test_database_url_cli import url_env
from tests.e2e.test_demo import demo_env
from tests.fixtures.tls_postgres import PASSWORD, TlsServer
from tests.integration.test_client_errors import closed_port

COMMANDS = ("sync", "migrate", "status", "serve")
SECRET = "hidden-pw-0123"
SERVE = {"USERSYNC_API_TOKEN": "an-admin-token-0123456789", "USERSYNC_HTTP_PORT": "0"}


def only_line(err: str) -> str:
    lines = [line for line in err.splitlines() if not line.startswith("{")]  # JSON log lines
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("cause", ["closed port", "no such database", "TLS refused"])
async def test_a_database_that_cannot_be_used_at_start_is_one_line_naming_the_url(
    database_url: str, fast_emulator: Any, command: str, cause: str
):
    port = closed_port()
    url = {
        "closed port": f"postgresql://postgres:{SECRET}@127.0.0.1:{port}/x",
        "no such database": with_database(database_url, "usersync_no_such_database"),
        "TLS refused": database_url + "?sslmode=require",  # the local server has no TLS
    }[cause]
    env = cli_env(url, fast_emulator, **SERVE)

    code, out, err = await run_cli(command, env=env, wait=30)

    assert code == 1
    line = only_line(err)
    expected = {
        "closed port": f"postgresql://postgres:***@127.0.0.1:{port}/x: connection refused",
        "no such database": 'database "usersync_no_such_database" does not exist',
        "TLS refused": "rejected SSL upgrade",
    }[cause]
    assert line.startswith("user-sync: cannot connect to the database at ")
    assert expected in line
    assert line.endswith("; check USERSYNC_DATABASE_URL")
    assert SECRET not in out + err
    assert "Traceback" not in out + err


@pytest.mark.parametrize("command", COMMANDS)
async def test_a_password_refused_is_one_line_without_the_password(
    tls_server: TlsServer, command: str
):
    url = tls_server.password_url("sslmode=require").replace("%2B1", "%2B2")  # one char off
    env = url_env(url) | SERVE | {"TWILIO_ACCOUNT_SID": "AC" + "0" * 32}
    env |= {"TWILIO_AUTH_TOKEN": "an-auth-token", "USERSYNC_API_BASE_URL": "http://127.0.0.1:1"}

    code, out, err = await run_cli(command, env=env, wait=30)

    assert code == 1
    line = only_line(err)
    assert line.startswith("user-sync: cannot connect to the database at postgresql://")
    assert "password authentication failed" in line
    assert ":***@127.0.0.1:" in line
    assert PASSWORD[:5] not in out + err
    assert "Traceback" not in out + err


async def test_the_demo_without_a_database_or_the_embedded_extra_says_what_to_do(tmp_path: Path):
    (tmp_path / "pgserver.py").write_text('raise ImportError("pgserver is not installed")\n')
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    env = demo_env(PYTHONPATH=path)

    code, out, err = await run_cli("demo", env=env, wait=60)

    assert code == 2
    assert out == ""
    assert err == (
        "user-sync: no database URL is set and the embedded Postgres is not installed: "
        "pip install 'conversations-user-sync[embedded]' or set USERSYNC_DATABASE_URL\n"
    )


@pytest.mark.parametrize("cause", ["host", "port in use"])
async def test_serve_on_an_address_it_cannot_take_says_so_in_one_line(
    database_url: str, fast_emulator: Any, cause: str
):
    host, port = ("no-such-host.invalid", "0") if cause == "host" else ("127.0.0.1", "5432")
    env = cli_env(database_url, fast_emulator, **SERVE)
    env |= {"USERSYNC_HTTP_HOST": host, "USERSYNC_HTTP_PORT": port}

    code, out, err = await run_cli("serve", env=env, wait=30)

    assert code == 1
    line = only_line(err)
    assert line.startswith(f"user-sync: cannot listen on {host}:{port} (")
    assert line.endswith("): check USERSYNC_HTTP_HOST and USERSYNC_HTTP_PORT")
    assert "Traceback" not in out + err


@pytest.fixture
async def empty_database(postgres_server: str) -> AsyncIterator[str]:
    """A database the migrations never ran in."""
    name = f"usersync_empty_{secrets.token_hex(3)}"
    admin = await connect(postgres_server)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield with_database(postgres_server, name)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.mark.parametrize("command", [("sync",), ("sync", "--json"), ("status",)])
async def test_a_database_not_migrated_says_to_run_migrate(
    empty_database: str, fast_emulator: Any, command: tuple[str, ...]
):
    code, out, err = await run_cli(*command, env=cli_env(empty_database, fast_emulator))

    assert code == 1
    message = (
        f"the database at {empty_database} has no schema of this service; this version needs "
        f"revision {migrate.head_revision()}: run `user-sync migrate` first"
    )
    assert only_line(err) == f"user-sync: {message}"
    if "--json" in command:
        assert json.loads(out) == {"run_id": None, "status": "not_started", "error": message}
    else:
        assert out == ""


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("sync", "--user", "\udcff"), "argument --user: must be text in UTF-8"),  # not UTF-8
        (("sync", "--user", ""), "argument --user: must be 1 to 1024 characters"),
        (("demo", "--users", "0"), "argument --users: must be from 1 to 1,000,000"),
    ],
)
async def test_an_argument_that_cannot_work_is_a_usage_error(
    database_url: str, fast_emulator: Any, args: tuple[str, ...], says: str
):
    code, out, err = await run_cli(*args, env=cli_env(database_url, fast_emulator))

    assert code == 2
    assert err.splitlines()[-1].endswith(f"error: {says}")
    assert "Traceback" not in out + err


async def test_a_statement_the_database_refuses_is_one_line_with_the_servers_words(
    empty_database: str, fast_emulator: Any
):
    env = cli_env(empty_database, fast_emulator)
    assert (await run_cli("migrate", env=env))[0] == 0
    admin = await connect(empty_database)
    try:
        await admin.execute("ALTER TABLE sync_state DROP COLUMN attempts")  # a tampered schema
    finally:
        await admin.close()

    code, out, err = await run_cli("status", env=env)

    assert (code, out) == (1, "")
    assert only_line(err) == (
        "user-sync: status failed: the database refused a statement: column sync_state.attempts"
        " does not exist"
    )
    assert "Traceback" not in err  # the server's answer, not a bug: no traceback logged either


async def test_the_demo_on_a_server_that_refuses_it_a_database_says_so_in_one_line(
    engine: AsyncEngine, database_url: str
):
    role = f"usersync_nocreate_{secrets.token_hex(3)}"
    await execute(engine, f"CREATE ROLE {role} LOGIN")  # may not create databases
    try:
        url = parse_database_url(database_url).url.set(drivername="postgresql", username=role)
        env = demo_env(USERSYNC_DATABASE_URL=url.render_as_string(hide_password=False))

        code, out, err = await run_cli("demo", "--users", "5", env=env, wait=60)
    finally:
        await execute(engine, f"DROP ROLE {role}")

    assert code == 1
    assert only_line(err) == (
        "user-sync: demo failed: the database refused a statement: "
        "permission denied to create database"
    )
    assert "Traceback" not in out + err


@pytest.mark.parametrize("command", ["sync", "serve"])
async def test_a_session_url_that_cannot_be_used_names_its_own_setting(
    database_url: str, fast_emulator: Any, command: str
):
    port = closed_port()
    leader = f"postgresql://postgres:{SECRET}@127.0.0.1:{port}/x"
    env = cli_env(database_url, fast_emulator, USERSYNC_LEADER_DATABASE_URL=leader, **SERVE)

    code, out, err = await run_cli(command, env=env, wait=30)

    assert code == 1
    assert only_line(err) == (
        f"user-sync: cannot connect to the database at postgresql://postgres:***@127.0.0.1:{port}"
        "/x: connection refused (is Postgres running on that host and port?); "
        "check USERSYNC_LEADER_DATABASE_URL"
    )
    assert SECRET not in out + err


@pytest.mark.parametrize("json_output", [False, True])
async def test_a_full_sync_whose_database_fails_while_it_lists_ends_as_it_always_did(
    fast_emulator: Any, json_output: bool
):
    """The listing begins before the database is tried (`service.headstart`): it is dropped,
    nothing is written, and the command ends in the same one line and exit code."""
    fast_emulator.emulator.seed_users([{"identity": f"u{n}"} for n in range(500)])
    fast_emulator.emulator.set_latency(0.2, operations={"list_users"})  # still listing then
    fast_emulator.emulator.reset_stats()
    url = f"postgresql://postgres:{SECRET}@127.0.0.1:{closed_port()}/x"
    args = ("sync", "--full", "--json") if json_output else ("sync", "--full")

    code, out, err = await run_cli(*args, env=cli_env(url, fast_emulator), wait=30)

    assert code == 1
    line = only_line(err)
    assert line.startswith("user-sync: cannot connect to the database at ")
    assert ":***@127.0.0.1:" in line and ": connection refused" in line
    assert line.endswith("; check USERSYNC_DATABASE_URL")
    if json_output:
        assert json.loads(out) == {
            "run_id": None,
            "status": "not_started",
            "error": line.removeprefix("user-sync: "),
        }
    else:
        assert out == ""
    stats = fast_emulator.emulator.stats
    assert stats.get("list_users", 0) >= 1  # the listing had begun
    assert sum(stats.get(k, 0) for k in ("create_user", "update_user", "delete_user")) == 0
