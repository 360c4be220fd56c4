"""`user-sync demo`: the whole job end to end, with no settings at all.

It starts (or reuses) a Postgres, starts the emulator in-process with Twilio's real limit of 30
writes per second, migrates, seeds realistic users, runs the initial sync with a progress bar,
then changes a handful of users the way an identity system would, shows the plan and the
outcome, the status summary, and what to try next. Everything it made is removed at the end
unless `--keep` is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

from rich.console import Console
from rich.panel import Panel

from service import demo_data, report, wiring
from service.config import Settings
from service.db import connectivity, migrate
from service.db.embedded import embedded_postgres
from service.db.engine import connect
from service.db.status import status_report
from service.domain.runs import Scope
from service.emulator import EmulatorConfig, RunningEmulator, running_emulator
from service.libpq.url import parse_database_url, with_database
from service.logs import configure_logging
from service.reconcile.progress import RunProgress
from service.reconcile.run import RunReport, RunRequest

DEMO_DATABASE = "user_sync_demo"
WRITE_RATE = 29.0
"""Just under the emulator's (and Twilio's) 30 writes/s per Service."""


@contextmanager
def postgres_server(settings: Settings, *, keep: bool) -> Iterator[str]:
    """The configured server, else an embedded one that lives as long as the demo."""
    if settings.database_url is not None:
        yield settings.database_url.get_secret_value()
        return
    with embedded_postgres(keep=keep) as url:
        yield url


def run(settings: Settings, *, users: int, keep: bool, console: Console | None = None) -> int:
    out = console or Console()
    configure_logging(settings.model_copy(update={"log_level": "ERROR"}))
    started = time.monotonic()
    with postgres_server(settings, keep=keep) as server:
        code = asyncio.run(_demo(server, users=users, keep=keep, out=out))
    out.print(f"\ndemo finished in {time.monotonic() - started:.1f} s")
    return code


async def _demo(server: str, *, users: int, keep: bool, out: Console) -> int:
    async with _database(server, keep=keep) as url, running_emulator(EmulatorConfig()) as emu:
        settings = _settings(url, emu)
        async with wiring.runtime(settings) as runtime:
            await migrate.upgrade(runtime.engine)
            seeded = await demo_data.seed(runtime.engine, demo_data.demo_users(users))
            out.print(f"seeded {seeded} users into internal_users at {_safe(url)}")
            first = await _initial_sync(runtime, total=seeded, out=out)
            report.print_run(first, out)
            await _changes(runtime, out=out)
            await _show_status(runtime, out=out)
        _next_steps(url, emu, out=out, keep=keep)
        if keep:
            await _until_interrupted(out)
    return 0


@asynccontextmanager
async def _database(server: str, *, keep: bool) -> AsyncIterator[str]:
    """A fresh database of our own on the server, dropped at the end unless kept."""
    try:
        admin = await connect(server)
    except connectivity.CONNECTION_ERRORS as e:
        raise connectivity.unavailable(server, e) from e
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{DEMO_DATABASE}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{DEMO_DATABASE}"')
        yield with_database(server, DEMO_DATABASE)
        if not keep:
            await admin.execute(f'DROP DATABASE IF EXISTS "{DEMO_DATABASE}" WITH (FORCE)')
    finally:
        await admin.close()


def _settings(url: str, emu: RunningEmulator) -> Settings:
    return Settings(
        database_url=url,
        api_base_url=emu.base_url,
        account_sid=emu.config.account_sid,
        auth_token=emu.config.auth_token,
        write_rate=WRITE_RATE,
        max_in_flight=16,
        # its five changes are meant, however few users it seeds (`--users 20`: 25 percent)
        max_writes_percent=100.0,
        _env_file=None,
    )


async def _initial_sync(runtime: wiring.Runtime, *, total: int, out: Console) -> RunReport:
    out.print(
        f"\n[bold]Initial sync[/bold]: {total} users, paced at {WRITE_RATE:g} writes/s under "
        "the Service limit of 30/s"
    )
    request = RunRequest(trigger="demo", scope=Scope.FULL)
    progress = RunProgress()
    run = runtime.runner.run(request, progress=progress)
    return await report.with_progress(run, progress, out, transient=False)


async def _changes(runtime: wiring.Runtime, *, out: Console) -> None:
    out.print("\n[bold]The identity system changes a handful of users[/bold]")
    for line in await demo_data.apply_changes(runtime.engine):
        out.print(f"  • {line}")
    request = RunRequest(trigger="demo", scope=Scope.INCREMENTAL, dry_run=True)
    report.print_run(await runtime.runner.run(request), out)
    out.print("\n[bold]Applying it[/bold] (an incremental run: no listing, changed users only)")
    report.print_run(
        await runtime.runner.run(RunRequest(trigger="demo", scope=Scope.INCREMENTAL)), out
    )


async def _show_status(runtime: wiring.Runtime, *, out: Console) -> None:
    out.print("\n[bold]user-sync status[/bold]")
    async with runtime.sessions() as session:
        report.print_status(await status_report(session), out)


def _safe(url: str) -> str:
    return parse_database_url(url).url.set(drivername="postgresql").render_as_string()


def _next_steps(url: str, emu: RunningEmulator, *, out: Console, keep: bool) -> None:
    env = (
        f"export USERSYNC_DATABASE_URL='{_safe(url)}'\n"
        f"export USERSYNC_API_BASE_URL={emu.base_url}\n"
        f"export TWILIO_ACCOUNT_SID={emu.config.account_sid}\n"
        f"export TWILIO_AUTH_TOKEN={emu.config.auth_token}"
    )
    where = env if keep else "(run `user-sync demo --keep` to keep the database and emulator)"
    out.print(
        Panel(
            f"{where}\n\n"
            "user-sync sync --dry-run          # the plan, nothing written\n"
            "user-sync sync --incremental      # push what changed\n"
            "user-sync status                  # runs, failing users, freshness\n"
            "user-sync serve                   # HTTP API, schedule and events\n\n"
            "Against a real account: unset USERSYNC_API_BASE_URL, set TWILIO_ACCOUNT_SID and\n"
            "TWILIO_AUTH_TOKEN (or TWILIO_API_KEY/TWILIO_API_SECRET), USERSYNC_SERVICE_SID,\n"
            "and start with `user-sync sync --dry-run`.",
            title="What to try next",
        )
    )


async def _until_interrupted(out: Console) -> None:
    out.print("database and emulator kept running; press Ctrl+C to stop")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    with contextlib.suppress(asyncio.CancelledError):
        await stop.wait()
