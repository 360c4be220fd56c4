"""`user-sync` as a real process: exit codes, dry run, JSON, status, a SIGKILL mid-run."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pty
import signal
import socket
import subprocess
import sys
from typing import Any

import aiohttp
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.e2e.conftest import fetch_all, generate_users, insert_users
from tests.fixtures.emulator import account_auth
from tests.integration.test_client_errors import closed_port

USER_SYNC = [sys.executable, "-m", "service"]


def cli_env(database_url: str, emulator: Any, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("USERSYNC_", "TWILIO_"))}
    env.update(
        USERSYNC_DATABASE_URL=database_url,
        USERSYNC_API_BASE_URL=emulator.base_url,
        TWILIO_ACCOUNT_SID=emulator.config.account_sid,
        TWILIO_AUTH_TOKEN=emulator.config.auth_token,
        USERSYNC_WRITE_RATE="1000",
        USERSYNC_WRITE_RATE_LIMIT_RAISED="true",
        USERSYNC_LOG_FORMAT="json",
        USERSYNC_SECRETS_DIR="/nonexistent",
        # a few users of a few change: the write guard's tests set their own limits
        USERSYNC_MAX_WRITES_PERCENT="100",
    )
    env.update(extra)
    return env


async def run_cli(*args: str, env: dict[str, str], wait: float = 60) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *USER_SYNC, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), wait)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_sync_dry_run_prints_the_plan_and_writes_nothing(
    engine: AsyncEngine, db: Any, database_url: str, fast_emulator: Any
):
    await insert_users(engine, [{"id": "a", "identity": "alice", "friendly_name": "Alice"}])

    code, out, _ = await run_cli("sync", "--dry-run", env=cli_env(database_url, fast_emulator))

    assert code == 0
    assert "create alice" in out
    assert fast_emulator.emulator.users() == []


async def test_sync_json_reports_failures_and_exits_non_zero(
    engine: AsyncEngine, db: Any, database_url: str, fast_emulator: Any
):
    await insert_users(
        engine,
        [{"id": "ok", "identity": "fine"}, {"id": "bad", "identity": "x", "role": "nope"}],
    )

    code, out, _ = await run_cli("sync", "--json", env=cli_env(database_url, fast_emulator))

    report = json.loads(out)
    assert code == 1
    assert report["status"] == "partial"
    assert report["counts"]["created"] == 1
    assert report["failures"][0]["user"] == "bad"
    assert report["failures"][0]["field"] == "role"


async def test_status_json_shows_runs_failing_users_and_freshness(
    engine: AsyncEngine, db: Any, database_url: str, fast_emulator: Any
):
    await insert_users(engine, [{"id": "bad", "identity": "", "friendly_name": "Nobody"}])
    env = cli_env(database_url, fast_emulator)
    await run_cli("sync", env=env)

    code, out, _ = await run_cli("status", "--json", env=env)

    status = json.loads(out)
    assert code == 0
    assert status["runs"][0]["status"] == "partial"
    assert status["failing"][0]["user_id"] == "bad"
    assert "identity" in status["failing"][0]["last_error_message"]
    assert status["last_full_success"] is None


async def test_bad_settings_exit_2_naming_the_variable(database_url: str, fast_emulator: Any):
    env = cli_env(database_url, fast_emulator, USERSYNC_WRITE_RATE="99")
    env.pop("USERSYNC_WRITE_RATE_LIMIT_RAISED")

    code, _, err = await run_cli("sync", env=env)

    assert code == 2
    assert "USERSYNC_WRITE_RATE" in err
    assert fast_emulator.config.auth_token not in err


async def test_a_sync_killed_mid_run_is_aborted_and_the_next_run_converges(
    engine: AsyncEngine, db: Any, database_url: str, fast_emulator: Any
):
    await generate_users(engine, 300)
    fast_emulator.emulator.set_latency(0.02, operations={"create_user"})
    env = cli_env(database_url, fast_emulator, USERSYNC_MAX_IN_FLIGHT="4")
    process = await asyncio.create_subprocess_exec(
        *USER_SYNC,
        "sync",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    while len(fast_emulator.emulator.users()) < 50:
        await asyncio.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    await process.wait()
    fast_emulator.emulator.set_latency(0)

    code, _, _ = await run_cli("sync", env=env)

    assert code == 0
    identities = [u["identity"] for u in fast_emulator.emulator.users()]
    assert len(identities) == len(set(identities)) == 300
    runs = await fetch_all(engine, "SELECT status FROM sync_run ORDER BY id")
    assert [r["status"] for r in runs] == ["aborted", "succeeded"]


async def test_sync_records_the_service_sid_whether_resolved_or_set(
    engine: AsyncEngine, db: Any, database_url: str, fast_emulator: Any
):
    sid = fast_emulator.config.default_service_sid
    resolved = cli_env(database_url, fast_emulator)
    named = cli_env(database_url, fast_emulator, USERSYNC_SERVICE_SID=sid)

    assert (await run_cli("sync", env=resolved))[0] == 0
    assert (await run_cli("sync", env=named))[0] == 0

    runs = await fetch_all(engine, "SELECT service_key, status FROM sync_run ORDER BY id")
    assert runs == [{"service_key": sid, "status": "succeeded"}] * 2
    assert fast_emulator.emulator.stats["fetch_configuration"] == 1  # only the unset one asks


@pytest.mark.parametrize("cause", ["unreachable", "server error", "refused credentials"])
async def test_sync_that_cannot_resolve_the_service_fails_in_one_line_and_runs_nothing(
    engine: AsyncEngine, db: Any, database_url: str, fast_emulator: Any, cause: str
):
    await insert_users(engine, [{"id": "a", "identity": "alice"}])
    fast = {"USERSYNC_MAX_RETRIES": "1", "USERSYNC_RETRY_BACKOFF_BASE": "0.01"}
    env = cli_env(database_url, fast_emulator, **fast)
    if cause == "unreachable":
        env["USERSYNC_API_BASE_URL"] = f"http://127.0.0.1:{closed_port()}"
    elif cause == "server error":
        fast_emulator.emulator.inject_fault(
            "status", status=503, operations={"fetch_configuration"}
        )
    else:
        env["TWILIO_AUTH_TOKEN"] = "not-the-auth-token"

    code, out, err = await run_cli("sync", env=env)

    assert code == 1
    assert out == ""
    lines = [line for line in err.splitlines() if not line.startswith("{")]  # JSON log lines
    [message] = lines
    assert message.startswith(
        "user-sync: cannot resolve the account's default Conversation Service"
        " (GET /v1/Configuration): "
    )
    expected = {
        "unreachable": "could not connect",
        "server error": "HTTP 503",
        "refused credentials": "HTTP 401 (Twilio error 20003): Authenticate",
    }
    assert expected[cause] in message
    assert "not-the-auth-token" not in err
    assert await fetch_all(engine, "SELECT id FROM sync_run") == []
    assert fast_emulator.emulator.users() == []


async def test_migrate_reports_the_head_revision(database_url: str, fast_emulator: Any):
    code, out, _ = await run_cli("migrate", env=cli_env(database_url, fast_emulator))
    assert code == 0
    assert "revision" in out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_the_emulator_command_serves_the_api_until_terminated():
    port = _free_port()
    process = await asyncio.create_subprocess_exec(
        *USER_SYNC, "emulator", "--port", str(port), stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    banner = (await asyncio.wait_for(process.stdout.readline(), 20)).decode()
    assert f"http://127.0.0.1:{port}" in banner

    running = type(
        "R",
        (),
        {
            "config": type(
                "C",
                (),
                {
                    "account_sid": "AC" + "e0" * 16,
                    "auth_token": "emulator-auth-token-0123456789abcdef",
                },
            )
        },
    )
    async with aiohttp.ClientSession(headers=account_auth(running)) as http:  # type: ignore[arg-type]
        response = await http.get(f"http://127.0.0.1:{port}/v1/Users")
        assert response.status == 200
        assert (await response.json())["users"] == []

    process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(process.wait(), 20) == 0


def _run_on_a_terminal(args: list[str], env: dict[str, str], wait: float = 60) -> tuple[int, str]:
    """Run with stdout and stderr on a pseudo-terminal; everything written to it."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(args, env=env, stdout=follower, stderr=follower)
    os.close(follower)
    output = bytearray()
    with contextlib.suppress(OSError):  # EIO once the process has closed its side
        while chunk := os.read(leader, 65536):
            output += chunk
    os.close(leader)
    return process.wait(wait), output.decode(errors="replace")


async def test_sync_on_a_terminal_shows_a_progress_bar_then_the_summary(
    engine: AsyncEngine, db: Any, database_url: str, fast_emulator: Any
):
    await generate_users(engine, 40)
    env = cli_env(database_url, fast_emulator, TERM="xterm", COLUMNS="100")

    code, out = await asyncio.to_thread(_run_on_a_terminal, [*USER_SYNC, "sync"], env)

    assert code == 0
    assert "reconciling" in out
    assert "40/40" in out
    assert "created" in out
    assert len(fast_emulator.emulator.users()) == 40


async def test_sync_piped_prints_no_progress_bar(
    engine: AsyncEngine, db: Any, database_url: str, fast_emulator: Any
):
    await generate_users(engine, 3)

    code, out, err = await run_cli("sync", env=cli_env(database_url, fast_emulator))

    assert code == 0
    assert "created" in out
    assert "reconciling" not in out + err


async def test_a_sync_stopped_by_sigterm_records_every_user_it_had_created(
    engine: AsyncEngine, db: Any, database_url: str, fast_emulator: Any
):
    """The symptom: exit 143 and `aborted`, but counts {} and every state `pending` while the
    emulator held 36 users the run had created (outcomes waited for their batch's end)."""
    await generate_users(engine, 50)
    fast_emulator.emulator.set_latency(0.5, operations={"create_user"})
    env = cli_env(database_url, fast_emulator, USERSYNC_MAX_IN_FLIGHT="4")
    process = await asyncio.create_subprocess_exec(
        *USER_SYNC, "sync", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )

    async def some_created() -> bool:
        while len(fast_emulator.emulator.users()) < 8:
            await asyncio.sleep(0.05)
        return True

    await asyncio.wait_for(some_created(), 30)
    await asyncio.sleep(0.2)  # the answers of those creates are back at the client
    created_before = len(fast_emulator.emulator.users())
    process.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(process.communicate(), 30)

    assert process.returncode == 143, err.decode()
    linked = await fetch_all(
        engine, "SELECT count(*) AS n FROM sync_state WHERE remote_sid IS NOT NULL"
    )
    runs = await fetch_all(engine, "SELECT status, counts FROM sync_run ORDER BY id DESC LIMIT 1")
    assert runs[0]["status"] == "aborted"
    assert linked[0]["n"] >= created_before
    assert runs[0]["counts"].get("created", 0) >= created_before


async def test_sync_user_says_which_names_name_nobody(
    engine: AsyncEngine, database_url: str, fast_emulator: Any
):
    await insert_users(engine, [{"id": "a", "identity": "alice"}])
    env = cli_env(database_url, fast_emulator)

    code, out, _ = await run_cli("sync", "--user", "alice", "--user", "nobody-here", env=env)
    json_code, raw, _ = await run_cli("sync", "--user", "nobody-here", "--json", env=env)

    assert code == json_code == 0
    assert "nobody is named nobody-here: no id or identity of the source or of the state" in out
    assert "nobody is named alice" not in out
    assert json.loads(raw)["named_nobody"] == ["nobody-here"]
    assert [u["identity"] for u in fast_emulator.emulator.users()] == ["alice"]
