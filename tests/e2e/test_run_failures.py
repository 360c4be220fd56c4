"""A run that fails as a whole ends in its report, as a real `user-sync sync` process.

Refused credentials, an API that cannot be reached, a source view that is missing, lacks a
column, has a column of the wrong type or cannot be read: each run is recorded failed, and the
command prints the report (its error one line naming the cause and what to check, its run id)
and exits 1; with `--json` the same report as JSON on stdout. The error is logged once, on the
run's "run finished" line, with no traceback anywhere. Problems of the source are found before
the remote listing starts (no list call is made).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.db import locks
from service.libpq.url import parse_database_url
from service.reconcile.readahead import READ_AHEAD
from service.wiring import service_key
from tests.e2e.conftest import execute, fetch_all, insert_users
from tests.e2e.test_cli import cli_env, run_cli
from tests.integration.test_client_errors import closed_port

VIEW = "broken_users"
COLUMNS = "id, identity, friendly_name, role, attributes, active, updated_at"
CAUSES: dict[str, tuple[str, ...]] = {
    "refused credentials": (
        "the API refused the credentials (HTTP 401 (Twilio error 20003)",
        "check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN",
    ),
    "unreachable": ("cannot reach the API at http://127.0.0.1:", "check USERSYNC_API_BASE_URL"),
    "missing view": (
        f"the source table or view {VIEW} does not exist",
        "check USERSYNC_SOURCE_TABLE",
    ),
    "missing column": (f"the source {VIEW} has no column active (wanted: boolean)",),
    "wrong type": (f"column active of the source {VIEW} is text; it must be boolean",),
    "no grant": (f"the source {VIEW} cannot be read", "grant SELECT"),
}
SOURCE_CAUSES = ("missing view", "missing column", "wrong type", "no grant")


@pytest.fixture
async def broken(
    request: pytest.FixtureRequest, engine: AsyncEngine, database_url: str, fast_emulator: Any
) -> AsyncIterator[dict[str, str]]:
    """The environment of a `sync` that fails as a whole for `request.param`'s reason."""
    cause = request.param
    env = cli_env(
        database_url,
        fast_emulator,
        USERSYNC_SERVICE_SID=fast_emulator.config.default_service_sid,  # no resolution first
        USERSYNC_SOURCE_TABLE=VIEW,
        USERSYNC_MAX_RETRIES="1",
        USERSYNC_RETRY_BACKOFF_BASE="0.01",
    )
    view = f"SELECT {COLUMNS} FROM internal_users"
    if cause == "refused credentials":
        env["TWILIO_AUTH_TOKEN"] = "not-the-auth-token"
    elif cause == "unreachable":
        env["USERSYNC_API_BASE_URL"] = f"http://127.0.0.1:{closed_port()}"
    elif cause == "missing column":
        view = f"SELECT {COLUMNS.replace('active, ', '')} FROM internal_users"
    elif cause == "wrong type":
        view = f"SELECT {COLUMNS.replace('active', 'active::text AS active')} FROM internal_users"
    if cause != "missing view":
        await execute(engine, f"CREATE VIEW {VIEW} AS {view}")
    role = f"usersync_reader_{secrets.token_hex(3)}"
    if cause == "no grant":
        env["USERSYNC_DATABASE_URL"] = await _role_without_grant(engine, database_url, role)
    yield env
    await execute(engine, f"DROP VIEW IF EXISTS {VIEW}")
    if cause == "no grant":
        await execute(engine, f"DROP OWNED BY {role}")
        await execute(engine, f"DROP ROLE {role}")


async def _role_without_grant(engine: AsyncEngine, database_url: str, role: str) -> str:
    """A login that may do all the service does, except read the source view."""
    await execute(engine, f"CREATE ROLE {role} LOGIN")
    await execute(engine, f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}")
    await execute(engine, f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}")
    await execute(engine, f"REVOKE ALL ON {VIEW} FROM {role}")
    url = parse_database_url(database_url).url.set(drivername="postgresql", username=role)
    return url.render_as_string(hide_password=False)


def log_lines(err: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


@pytest.mark.parametrize("broken", list(CAUSES), indirect=True)
async def test_a_failed_run_prints_its_report_as_json_naming_the_cause(
    request: pytest.FixtureRequest,
    engine: AsyncEngine,
    db: Any,
    fast_emulator: Any,
    broken: dict[str, str],
):
    cause = request.node.callspec.params["broken"]
    await insert_users(engine, [{"id": "a", "identity": "alice"}])

    code, out, err = await run_cli("sync", "--json", env=broken)

    assert code == 1
    report = json.loads(out)
    assert report["status"] == "failed"
    for words in CAUSES[cause]:
        assert words in report["error"]
    assert "\n" not in report["error"]
    [run] = await fetch_all(engine, "SELECT id, status, error FROM sync_run")
    assert (run["id"], run["status"], run["error"]) == (report["run_id"], "failed", report["error"])
    assert "Traceback" not in out + err
    assert [line for line in err.splitlines() if not line.startswith("{")] == []
    logged = [line for line in log_lines(err) if report["error"] in json.dumps(line)]
    assert [(line["event"], line["level"]) for line in logged] == [("run finished", "error")]
    assert not any("exception" in line for line in log_lines(err))
    assert "not-the-auth-token" not in out + err
    if cause in SOURCE_CAUSES:  # a full sync lists while it loads: read only, read ahead
        stats = fast_emulator.emulator.stats
        assert stats.get("list_users", 0) <= READ_AHEAD + 1
        assert stats.get("create_user", 0) == stats.get("update_user", 0) == 0


@pytest.mark.parametrize("broken", ["refused credentials", "wrong type"], indirect=True)
async def test_a_failed_run_prints_its_report_for_people_with_the_run_id(
    request: pytest.FixtureRequest, engine: AsyncEngine, db: Any, broken: dict[str, str]
):
    cause = request.node.callspec.params["broken"]

    code, out, err = await run_cli("sync", env=broken | {"COLUMNS": "400"})

    assert code == 1
    [run] = await fetch_all(engine, "SELECT id, error FROM sync_run")
    assert f"Run {run['id']}: full, failed" in out
    [error_line] = [line for line in out.splitlines() if "run error" in line]
    assert error_line.strip() == f"run error: {run['error']}"
    for words in CAUSES[cause]:
        assert words in error_line
    assert "Traceback" not in out + err


async def test_a_run_another_holds_the_lock_of_is_reported_as_json_too(
    engine: AsyncEngine, db: Any, database_url: str, fast_emulator: Any
):
    sid = fast_emulator.config.default_service_sid
    env = cli_env(database_url, fast_emulator, USERSYNC_SERVICE_SID=sid)
    async with locks.holding(engine, locks.lock_key("run", service_key(sid))):
        code, out, err = await run_cli("sync", "--json", env=env)

    assert code == 3
    error = f"a reconcile of {service_key(sid)} is already running"
    assert json.loads(out) == {"run_id": None, "status": "not_started", "error": error}
    assert [line for line in err.splitlines() if not line.startswith("{")] == [
        f"user-sync: {error}"
    ]
