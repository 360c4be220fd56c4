"""The commands of `user-sync`, once the command line is parsed (`service.cli`).

Imported only after parsing, so that `--help` and bad usage answer before the application (the
database, the HTTP client, the engine) is loaded. Each command builds `Settings` once, wires what
it needs through `service.wiring` (`serve`: `service.app`) and returns an exit code (see
`service.cli`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime

import structlog

from service import history, report, wiring
from service.cli import EXIT_BUSY, EXIT_FAILED, EXIT_OK, EXIT_USAGE
from service.config import ConfigError, Settings
from service.db import audit, connectivity, migrate
from service.db.connectivity import DatabaseUnavailable
from service.db.embedded import EmbeddedPostgresMissing, EmbeddedPostgresUnavailable
from service.db.status import as_json, status_report
from service.domain.runs import Scope
from service.headstart import HeadStart
from service.libpq.url import shown
from service.logs import configure_logging
from service.reconcile.progress import RunProgress
from service.reconcile.run import RunFailed, RunInProgress, RunReport, RunRequest
from service.shutdown import Shutdown

log = structlog.get_logger(__name__)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run the parsed command with its settings (read and checked by `service.cli`)."""
    configure_logging(settings)
    if args.command == "demo":
        return _demo(args, settings)
    return _run_command(args, settings)


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from service import demo  # noqa: PLC0415 - the demo pulls in the emulator

    try:
        return demo.run(settings, users=args.users, keep=args.keep)
    except EmbeddedPostgresMissing as e:
        print(f"user-sync: {e}", file=sys.stderr)
        return EXIT_USAGE
    except (DatabaseUnavailable, EmbeddedPostgresUnavailable, RunFailed) as e:
        print(f"user-sync: {e}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as e:  # the last resort: one line here, the traceback in the log
        return _unexpected("demo", e)


def _run_command(args: argparse.Namespace, settings: Settings) -> int:
    """The command under its `Shutdown`; a cause outside the service (a setting, the database)
    ends it in one line on stderr, never a traceback."""
    shutdown = _shutdown(args, settings)
    try:
        return asyncio.run(shutdown.run(_dispatch(args, settings, shutdown)))
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        return failed(args.command, e)


def failed(command: str, error: Exception) -> int:
    """The exit code of a command that `error` ended, and its one line on stderr (a full
    sync's head start, `service.headstart`, ends the same way)."""
    if isinstance(error, ConfigError):
        print(f"user-sync: {error}", file=sys.stderr)
        return EXIT_USAGE
    if isinstance(error, (DatabaseUnavailable, migrate.SchemaNotCurrent, wiring.CannotListen)):
        print(f"user-sync: {error}", file=sys.stderr)
        return EXIT_FAILED
    return _unexpected(command, error)  # the last resort: one line here, the traceback in the log


def _unexpected(command: str, error: Exception) -> int:
    """What no other handler knew: the database going away or refusing a statement midway (its
    words, never the statement and its values), or a bug, whose traceback goes on the log line
    `command failed` only."""
    if connectivity.is_connection_error(error):
        print(f"user-sync: the database failed: {connectivity.describe(error)}", file=sys.stderr)
        return EXIT_FAILED
    if connectivity.is_refusal(error):
        what = f"the database refused a statement: {connectivity.describe(error)}"
        print(f"user-sync: {command} failed: {what}", file=sys.stderr)
        return EXIT_FAILED
    log.error("command failed", command=command, exc_info=error)
    print(
        f"user-sync: {command} failed: {type(error).__name__}: {error} (a bug of user-sync: "
        "the log line 'command failed' has the traceback)",
        file=sys.stderr,
    )
    return EXIT_FAILED


def _shutdown(args: argparse.Namespace, settings: Settings) -> Shutdown:
    """`serve` drains its runs itself and may take longer; any other command is cancelled and
    must be gone within the grace."""
    if args.command == "serve":
        from service import app  # noqa: PLC0415 - the served application, for serve alone

        return Shutdown(deadline=app.serve_deadline(settings), drains=True)
    return Shutdown(deadline=settings.shutdown_grace)


async def _dispatch(args: argparse.Namespace, settings: Settings, shutdown: Shutdown) -> int:
    if args.command == "migrate":
        return await _migrate(settings)
    if args.command == "status":
        return await _status(settings, as_json_output=args.json)
    if args.command == "history":
        return await _history(args, settings)
    if args.command == "serve":
        from service import app  # noqa: PLC0415 - the served application, for serve alone

        await app.serve(settings, until=shutdown.requested.wait)
        return EXIT_OK
    return await sync(args, settings)


async def _migrate(settings: Settings) -> int:
    async with wiring.database(settings) as engine:
        await migrate.upgrade(engine)
        print(f"database at revision {await migrate.current_revision(engine)}")
    return EXIT_OK


def _request(args: argparse.Namespace) -> RunRequest:
    scope = Scope.USERS if args.user else Scope.INCREMENTAL if args.incremental else Scope.FULL
    return RunRequest(
        trigger="cli",
        scope=scope,
        targets=tuple(args.user or ()),
        dry_run=args.dry_run,
        allow_deletes=args.allow_deletes,
        allow_writes=args.allow_writes,
    )


async def sync(
    args: argparse.Namespace, settings: Settings, *, head_start: HeadStart | None = None
) -> int:
    """Print the run's report whatever became of it (a failed run's names its cause); a run
    that could not start says why in one line (with `--json`, as JSON on stdout too).
    `head_start`: a full sync's listing, begun before this module loaded (`service.headstart`)."""
    settings.credentials()  # fail early, naming the settings, before touching anything
    try:
        outcome = await _reconcile(args, settings, head_start=head_start)
    except RunFailed as e:  # recorded and logged by the runner: its report says why
        outcome = e.report
    except wiring.ServiceUnresolved as e:  # nothing ran: no lock taken, no run recorded
        return _not_run(e, code=EXIT_FAILED, as_json_output=args.json)
    except RunInProgress as e:
        return _not_run(e, code=EXIT_BUSY, as_json_output=args.json)
    except (DatabaseUnavailable, migrate.SchemaNotCurrent) as e:
        return _not_run(e, code=EXIT_FAILED, as_json_output=args.json)
    if args.json:
        print(json.dumps(report.run_json(outcome), indent=2))
    else:
        report.print_run(outcome)
    return EXIT_OK if report.succeeded(outcome) else EXIT_FAILED


def _not_run(error: Exception, *, code: int, as_json_output: bool) -> int:
    """No run was recorded: one line on stderr and, for `--json`, the same on stdout."""
    print(f"user-sync: {error}", file=sys.stderr)
    if as_json_output:
        print(json.dumps({"run_id": None, "status": "not_started", "error": str(error)}))
    return code


async def _reconcile(
    args: argparse.Namespace, settings: Settings, *, head_start: HeadStart | None
) -> RunReport:
    from rich.console import Console  # noqa: PLC0415 - rich loads for a terminal's bar alone

    bar = Console(stderr=True)
    async with wiring.runtime(settings, head_start=head_start) as runtime:
        await migrate.require_head(runtime.engine, where=_where(settings))
        listing = runtime.listing
        if bar.is_terminal and not args.json:
            progress = RunProgress()
            run = runtime.runner.run(_request(args), progress=progress, listing=listing)
            return await report.with_progress(run, progress, bar)
        return await runtime.runner.run(_request(args), listing=listing)


async def _status(settings: Settings, *, as_json_output: bool) -> int:
    async with wiring.database(settings) as engine, wiring.sessions(engine)() as session:
        await migrate.require_head(engine, where=_where(settings))
        summary = await status_report(session)
    api = report.api_target(settings)
    if as_json_output:
        print(json.dumps({"api": api, **as_json(summary)}, indent=2))
    else:
        report.print_api(api)
        report.print_status(summary)
    return EXIT_OK


async def _history(args: argparse.Namespace, settings: Settings) -> int:
    """The user's audit trail, newest first (`service.history`)."""
    async with wiring.database(settings) as engine, wiring.sessions(engine)() as session:
        await migrate.require_head(engine, where=_where(settings))
        rows = await audit.of_user(session, args.user, limit=args.limit)
    if args.json:
        entries = [history.row_json(r) for r in rows]
        print(json.dumps({"user": args.user, "entries": entries}, indent=2))
    else:
        history.print_history(args.user, rows, now=datetime.now(UTC))
    return EXIT_OK


def _where(settings: Settings) -> str:
    return shown(settings.require_database_url())
