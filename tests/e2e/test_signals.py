"""SIGTERM and SIGINT reach every command, as a plain process and as PID 1 of a PID namespace.

PID 1 is what a container's exec-form ENTRYPOINT makes of the command (Kubernetes Jobs and
CronJobs run `migrate` and `sync` that way): the kernel gives it no default action for a
signal it does not handle, so without handlers SIGTERM does nothing. `unshare --pid --fork
--mount-proc` makes the command PID 1 here; the test signals it from outside its namespace, as
a container runtime does. The process is real, Postgres is real, the emulator is served over
HTTP; the slow or silent API comes from the emulator's latency control.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.shutdown import cancel_message
from tests.e2e.conftest import fetch_all, generate_users
from tests.e2e.serving import TOKEN, eventually
from tests.e2e.test_cli import USER_SYNC, cli_env

GRACE = 5.0
UNSHARE = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child=SIGKILL"]
"""`--kill-child`: the command (PID 1 inside) dies with unshare, whatever ends unshare."""
STUBBORN = Path(__file__).with_name("stubborn_command.py")
SLOW_IMPORT = Path(__file__).with_name("slow_import")
"""A `sitecustomize` that makes one module's import slow (see its docstring)."""
BARE = {"PATH": os.environ.get("PATH", os.defpath)}


@functools.cache
def unshare_problem() -> str | None:
    """Why PID 1 cannot be tested here, or None when it can."""
    if shutil.which("unshare") is None:
        return "`unshare` (util-linux) is not installed"
    probe = subprocess.run([*UNSHARE, "true"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return f"`unshare --pid --fork --mount-proc` fails here (needs root): {probe.stderr}"
    return None


@pytest.fixture(params=["process", "pid 1"])
def as_pid1(request: pytest.FixtureRequest) -> bool:
    if request.param == "pid 1" and (problem := unshare_problem()) is not None:
        pytest.skip(f"NOT TESTED AS PID 1: {problem}")
    return bool(request.param == "pid 1")


@dataclass
class Command:
    """A started command; `pid` is the command's own process (inside unshare, as PID 1)."""

    process: asyncio.subprocess.Process
    pid: int

    def signal(self, number: signal.Signals) -> None:
        os.kill(self.pid, number)

    async def finish(self, *, within: float) -> tuple[int, str, str]:
        out, err = await asyncio.wait_for(self.process.communicate(), within)
        assert self.process.returncode is not None
        return self.process.returncode, out.decode(), err.decode()


STARTED: list[asyncio.subprocess.Process] = []


@pytest.fixture(autouse=True)
async def _none_left_behind() -> AsyncIterator[None]:
    """A test that fails before its command ended never leaves the command running."""
    yield
    while STARTED:
        process = STARTED.pop()
        if process.returncode is None:
            process.kill()
            await process.wait()


async def start(args: list[str], *, env: dict[str, str], as_pid1: bool) -> Command:
    prefix = UNSHARE if as_pid1 else []
    process = await asyncio.create_subprocess_exec(
        *prefix, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    STARTED.append(process)
    if not as_pid1:
        return Command(process, process.pid)
    return Command(
        process, await eventually(lambda: asyncio.to_thread(namespace_init, process.pid))
    )


def namespace_init(unshare_pid: int) -> int | None:
    """The child unshare forked, once it is PID 1 of its namespace and runs Python."""
    children = Path(f"/proc/{unshare_pid}/task/{unshare_pid}/children").read_text().split()
    if not children:
        return None
    pid = int(children[0])
    status = Path(f"/proc/{pid}/status").read_text()
    nspid = next(line for line in status.splitlines() if line.startswith("NSpid:"))
    assert nspid.split()[-1] == "1", nspid  # PID 1 inside, `pid` outside
    executable = Path(f"/proc/{pid}/exe").resolve()
    return pid if executable.name.startswith("python") else None


def messages(err: str) -> list[str]:
    """What the command printed on stderr besides its JSON log lines."""
    return [line for line in err.splitlines() if line and not line.startswith("{")]


def assert_no_traceback(out: str, err: str) -> None:
    for text_ in (out, err):
        assert "Traceback" not in text_
        assert "Task was destroyed" not in text_
        assert "never retrieved" not in text_


async def runs(engine: AsyncEngine) -> list[dict[str, Any]]:
    return await fetch_all(
        engine, "SELECT status, error, finished_at IS NOT NULL AS closed FROM sync_run"
    )


def env_for(database_url: str, emulator: Any, **extra: str) -> dict[str, str]:
    return cli_env(database_url, emulator, USERSYNC_SHUTDOWN_GRACE=str(GRACE), **extra)


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_full_sync_signalled_mid_run_records_it_aborted_and_exits_in_time(
    engine: AsyncEngine,
    db: Any,
    database_url: str,
    fast_emulator: Any,
    as_pid1: bool,
    number: signal.Signals,
):
    await generate_users(engine, 200)
    fast_emulator.emulator.set_latency(0.2, operations={"create_user"})
    env = env_for(database_url, fast_emulator, USERSYNC_MAX_IN_FLIGHT="4")
    command = await start([*USER_SYNC, "sync", "--full"], env=env, as_pid1=as_pid1)
    await eventually(lambda: _created_at_least(fast_emulator, 8), within=30)

    command.signal(number)
    signalled = time.monotonic()
    code, out, err = await command.finish(within=30)

    assert code == 128 + number
    assert time.monotonic() - signalled < GRACE
    assert messages(err) == [f"user-sync: stopped by {number.name}"]
    assert_no_traceback(out, err)
    assert await runs(engine) == [
        {"status": "aborted", "error": f"stopped by {number.name}", "closed": True}
    ]
    assert 8 <= len(fast_emulator.emulator.users()) < 200


async def _created_at_least(emulator: Any, count: int) -> bool:
    return len(emulator.emulator.users()) >= count


async def test_a_sync_waiting_on_an_api_that_does_not_answer_stops_on_sigterm(
    engine: AsyncEngine, db: Any, database_url: str, fast_emulator: Any, as_pid1: bool
):
    await generate_users(engine, 5)
    fast_emulator.emulator.set_latency(3600, operations={"list_users"})
    env = env_for(database_url, fast_emulator, USERSYNC_REQUEST_TIMEOUT="300")
    command = await start([*USER_SYNC, "sync", "--full"], env=env, as_pid1=as_pid1)
    await eventually(lambda: _listing(fast_emulator), within=30)
    await eventually(lambda: _opened(engine), within=30)  # the listing may come first

    command.signal(signal.SIGTERM)
    signalled = time.monotonic()
    code, out, err = await command.finish(within=30)

    assert code == 143
    assert time.monotonic() - signalled < GRACE
    assert messages(err) == ["user-sync: stopped by SIGTERM"]
    assert_no_traceback(out, err)
    assert await runs(engine) == [
        {"status": "aborted", "error": "stopped by SIGTERM", "closed": True}
    ]
    assert fast_emulator.emulator.users() == []


async def _listing(emulator: Any) -> bool:
    return bool(emulator.emulator.stats.get("list_users", 0))


async def _opened(engine: AsyncEngine) -> bool:
    """The run is recorded open (a full sync lists while it loads: `service.headstart`)."""
    return bool(await runs(engine))


@contextlib.asynccontextmanager
async def table_locked(engine: AsyncEngine, table: str) -> AsyncIterator[AsyncConnection]:
    """`table` locked against every reader until the block ends."""
    async with engine.connect() as connection:
        await connection.execute(text(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
        try:
            yield connection
        finally:
            await connection.rollback()


async def _blocked_on_a_lock(engine: AsyncEngine) -> bool:
    rows = await fetch_all(
        engine,
        "SELECT pid FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )
    return bool(rows)


async def _none_blocked(engine: AsyncEngine) -> bool:
    return not await _blocked_on_a_lock(engine)


@pytest.mark.parametrize(
    ("args", "table"),
    [(["migrate"], "alembic_version"), (["status", "--json"], "sync_run")],
    ids=["migrate", "status"],
)
async def test_a_command_waiting_on_the_database_stops_on_sigterm(
    engine: AsyncEngine,
    db: Any,
    database_url: str,
    fast_emulator: Any,
    as_pid1: bool,
    args: list[str],
    table: str,
):
    env = env_for(database_url, fast_emulator)
    async with table_locked(engine, table):
        command = await start([*USER_SYNC, *args], env=env, as_pid1=as_pid1)
        await eventually(lambda: _blocked_on_a_lock(engine), within=30)

        command.signal(signal.SIGTERM)
        signalled = time.monotonic()
        code, out, err = await command.finish(within=30)
        elapsed = time.monotonic() - signalled

        assert code == 143
        assert elapsed < GRACE
        assert out == ""
        assert messages(err) == ["user-sync: stopped by SIGTERM"]
        assert_no_traceback(out, err)
        await eventually(lambda: _none_blocked(engine), within=GRACE)  # its query was dropped


async def test_serve_as_pid_1_drains_on_sigterm_and_exits_0(
    db: Any, database_url: str, fast_emulator: Any
):
    if (problem := unshare_problem()) is not None:
        pytest.skip(f"NOT TESTED AS PID 1: {problem}")
    command = await start_serving(database_url, fast_emulator, as_pid1=True)

    command.signal(signal.SIGTERM)
    code, out, err = await command.finish(within=30)

    assert code == 0
    assert '"event": "stopped"' in err
    assert_no_traceback(out, err)


async def start_serving(database_url: str, fast_emulator: Any, *, as_pid1: bool) -> Command:
    """`serve` with its HTTP API on a free port and no schedule, once it logged `serving`."""
    env = env_for(
        database_url,
        fast_emulator,
        USERSYNC_API_TOKEN=TOKEN,
        USERSYNC_HTTP_HOST="127.0.0.1",
        USERSYNC_HTTP_PORT="0",
        USERSYNC_SCHEDULE_ENABLED="false",
    )
    command = await start([*USER_SYNC, "serve"], env=env, as_pid1=as_pid1)
    assert command.process.stderr is not None
    await _logged(command.process.stderr, '"event": "serving"')
    return command


async def _logged(stream: asyncio.StreamReader, needle: str) -> None:
    async with asyncio.timeout(30):
        while needle not in (await stream.readline()).decode():
            pass


def slow_import(env: dict[str, str], module: str, seconds: float, *, mark: Path) -> dict[str, str]:
    """`env` for a command whose import of `module` creates `mark`, then takes `seconds`."""
    path = os.pathsep.join(filter(None, [str(SLOW_IMPORT), env.get("PYTHONPATH")]))
    return env | {
        "PYTHONPATH": path,
        "SLOW_IMPORT": module,
        "SLOW_IMPORT_MARK": str(mark),
        "SLOW_IMPORT_SECONDS": str(seconds),
    }


async def start_while_importing(
    args: list[str], env: dict[str, str], module: str, seconds: float, *, as_pid1: bool, mark: Path
) -> Command:
    """The command, started with its import of `module` slowed (`slow_import`), once that
    import has begun: a signal sent now reaches it while it loads."""
    command = await start(args, env=slow_import(env, module, seconds, mark=mark), as_pid1=as_pid1)
    await eventually(lambda: asyncio.to_thread(mark.exists), within=30, every=0.01)
    return command


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize(
    ("args", "module"),
    [(["sync", "--full"], "service.headstart"), (["migrate"], "service.commands")],
    ids=["sync", "migrate"],
)
async def test_a_signal_while_the_command_loads_stops_it_once_it_runs(
    engine: AsyncEngine,
    db: Any,
    database_url: str,
    fast_emulator: Any,
    as_pid1: bool,
    tmp_path: Path,
    args: list[str],
    module: str,
    number: signal.Signals,
):
    """Signalled while it imports the command's modules (before any `Shutdown` handles a
    signal): neither killed mid-import nor, as PID 1, deaf to it; it stops at once as if
    signalled a moment later, and writes nothing."""
    await generate_users(engine, 5)
    env = env_for(database_url, fast_emulator)
    command = await start_while_importing(
        [*USER_SYNC, *args], env, module, 1.0, as_pid1=as_pid1, mark=tmp_path / "importing"
    )

    command.signal(number)
    code, out, err = await command.finish(within=30)

    assert code == 128 + number
    assert messages(err) == [f"user-sync: {cancel_message(number)}"]
    assert_no_traceback(out, err)
    assert "KeyboardInterrupt" not in err
    assert fast_emulator.emulator.users() == []
    assert [run["status"] for run in await runs(engine)] in ([], ["aborted"])


async def test_a_signal_kept_for_a_command_that_ends_before_it_runs_still_ends_it_so(
    db: Any, database_url: str, fast_emulator: Any, tmp_path: Path
):
    """A command refused for a bad setting never runs under a `Shutdown`: the signal that came
    while its settings loaded is not lost, the exit says it, after the setting's own line."""
    env = env_for(database_url, fast_emulator, USERSYNC_MAX_IN_FLIGHT="none")
    command = await start_while_importing(
        [*USER_SYNC, "sync"], env, "service.config", 1.0, as_pid1=False, mark=tmp_path / "m"
    )

    command.signal(signal.SIGTERM)
    code, out, err = await command.finish(within=30)

    assert code == 143
    assert messages(err)[-1] == "user-sync: stopped by SIGTERM"
    assert any("USERSYNC_MAX_IN_FLIGHT" in line for line in messages(err)[:-1])
    assert_no_traceback(out, err)


async def test_a_second_signal_while_the_command_loads_ends_it_at_once(
    db: Any, database_url: str, fast_emulator: Any, as_pid1: bool, tmp_path: Path
):
    env = env_for(database_url, fast_emulator)
    command = await start_while_importing(
        [*USER_SYNC, "sync"], env, "service.headstart", 20.0, as_pid1=as_pid1, mark=tmp_path / "m"
    )

    command.signal(signal.SIGTERM)
    await asyncio.sleep(0.1)
    command.signal(signal.SIGINT)
    code, out, err = await command.finish(within=GRACE)  # not the 20 s import

    assert code == 143
    assert messages(err) == ["user-sync: SIGINT after SIGTERM: stopping at once"]
    assert_no_traceback(out, err)


async def test_a_second_signal_after_the_command_stopped_but_before_the_process_exits_ends_it(
    db: Any, database_url: str, fast_emulator: Any, as_pid1: bool, tmp_path: Path
):
    """A full sync stopped while its head start imports the rest in a thread: the process
    waits for that thread before it exits; a second signal then still ends it at once."""
    env = env_for(database_url, fast_emulator)
    command = await start_while_importing(
        [*USER_SYNC, "sync"], env, "service.commands", 20.0, as_pid1=as_pid1, mark=tmp_path / "m"
    )

    command.signal(signal.SIGTERM)
    await asyncio.sleep(0.3)  # the command's task is cancelled, the import thread goes on
    command.signal(signal.SIGINT)
    code, out, err = await command.finish(within=GRACE)  # not the 20 s import

    assert code == 143
    assert messages(err)[-1] == "user-sync: SIGINT after SIGTERM: stopping at once"
    assert_no_traceback(out, err)


def stubborn(deadline: float) -> list[str]:
    """A command that ignores the cancel: only the deadline or a second signal ends it."""
    return [sys.executable, str(STUBBORN), str(deadline)]


async def test_a_command_still_going_at_the_deadline_is_ended_at_once(as_pid1: bool):
    command = await start(stubborn(1.0), env=BARE, as_pid1=as_pid1)
    assert command.process.stdout is not None
    await _logged(command.process.stdout, "started")

    command.signal(signal.SIGTERM)
    signalled = time.monotonic()
    code, _, err = await command.finish(within=30)

    assert code == 143
    assert 1.0 <= time.monotonic() - signalled < GRACE
    assert messages(err) == ["user-sync: not stopped within 1 s of SIGTERM: stopping at once"]


@pytest.mark.parametrize(
    ("first", "second", "code", "line"),
    [
        (signal.SIGTERM, signal.SIGINT, 143, "user-sync: SIGINT after SIGTERM: stopping at once"),
        (signal.SIGINT, signal.SIGTERM, 130, "user-sync: SIGTERM after SIGINT: stopping at once"),
        (signal.SIGTERM, signal.SIGTERM, 143, "user-sync: SIGTERM again: stopping at once"),
    ],
)
async def test_a_second_signal_ends_the_command_at_once_with_the_first_signals_code(
    as_pid1: bool, first: signal.Signals, second: signal.Signals, code: int, line: str
):
    command = await start(stubborn(60.0), env=BARE, as_pid1=as_pid1)
    assert command.process.stdout is not None
    await _logged(command.process.stdout, "started")

    command.signal(first)
    await _logged(command.process.stdout, "cancel ignored")
    command.signal(second)
    exited, _, err = await command.finish(within=GRACE)

    assert exited == code
    assert messages(err) == [line]


async def test_serve_stops_on_sigterm_after_the_reader_of_its_logs_went_away(
    db: Any, database_url: str, fast_emulator: Any
):
    """A log shipper that died leaves a pipe nobody reads: logging the stop must not fail."""
    command = await start_serving(database_url, fast_emulator, as_pid1=False)
    assert command.process.stdout is not None and command.process.stderr is not None
    for stream in (command.process.stdout, command.process.stderr):
        transport = stream._transport  # type: ignore[attr-defined]  # our end of the pipe
        transport.close()
    await asyncio.sleep(0.2)

    command.signal(signal.SIGTERM)
    code = await asyncio.wait_for(command.process.wait(), 30)

    assert code == 0
