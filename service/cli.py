"""`user-sync`: the command line.

Each command builds `Settings` once, wires what it needs through `service.wiring` and returns an
exit code: 0 on success, 1 when a run failed or any user failed (or the Service could not be
resolved, so none ran), 2 for bad usage or settings, 3 when another run holds the lock, 128 +
the signal's number when SIGTERM or SIGINT stopped it (`service.shutdown`: every command runs
under one, `serve` drains and exits 0).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import signal
import sys
from collections.abc import Iterator, Sequence

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_BUSY = 0, 1, 2, 3
"""The exit codes this docstring's top lists (argparse's own usage errors are 2 as well)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="user-sync",
        description="Keep Twilio Conversations Users equal to an internal users table.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("migrate", help="upgrade the database schema to the latest revision")
    sync = commands.add_parser("sync", help="reconcile now and print the outcome")
    scope = sync.add_mutually_exclusive_group()
    scope.add_argument("--full", action="store_true", help="list every remote user (default)")
    scope.add_argument("--incremental", action="store_true", help="only changed users")
    scope.add_argument(
        "--user", action="append", type=_user_key, metavar="ID_OR_IDENTITY", help="one user"
    )
    sync.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")
    sync.add_argument("--allow-deletes", action="store_true", help="release held deletions")
    sync.add_argument(
        "--allow-writes", action="store_true", help="release writes held by the write guard"
    )
    sync.add_argument("--json", action="store_true", help="machine-readable report")
    commands.add_parser("serve", help="HTTP API, schedule and event consumer, until SIGTERM")
    status = commands.add_parser("status", help="recent runs, failing users, freshness")
    status.add_argument("--json", action="store_true", help="machine-readable report")
    history = commands.add_parser("history", help="what the service wrote to one user, and why")
    history.add_argument("user", type=_user_key, metavar="ID_OR_IDENTITY", help="the user")
    history.add_argument(
        "--limit", type=_history_limit, default=50, help="newest entries to show (default 50)"
    )
    history.add_argument("--json", action="store_true", help="machine-readable report")
    demo = commands.add_parser("demo", help="the whole job end to end on an embedded Postgres")
    demo.add_argument("--users", type=_demo_users, default=2000, help="how many users to seed")
    demo.add_argument("--keep", action="store_true", help="leave database and emulator running")
    commands.add_parser(
        "emulator",
        help="run the local API emulator (see: user-sync emulator --help)",
        add_help=False,
    )
    return parser


MAX_USER_KEY = 1024
"""Characters of a `--user` value: ids and identities are shorter (Twilio's are at most 256)."""
MAX_DEMO_USERS = 1_000_000


def _user_key(value: str) -> str:
    """A user's id or identity as given on the command line: text Postgres can compare (an
    argument that is not UTF-8 arrives with surrogates, which no driver can send)."""
    try:
        value.encode()
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError("must be text in UTF-8") from None
    if not value or len(value) > MAX_USER_KEY:
        raise argparse.ArgumentTypeError(f"must be 1 to {MAX_USER_KEY} characters")
    return value


MAX_HISTORY = 1000


def _history_limit(value: str) -> int:
    try:
        count = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {value!r}") from None
    if not 1 <= count <= MAX_HISTORY:
        raise argparse.ArgumentTypeError(f"must be from 1 to {MAX_HISTORY:,}")
    return count


def _demo_users(value: str) -> int:
    try:
        count = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {value!r}") from None
    if not 1 <= count <= MAX_DEMO_USERS:
        raise argparse.ArgumentTypeError(f"must be from 1 to {MAX_DEMO_USERS:,}")
    return count


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, read the settings, then import and run the command: `--help`, `COMMAND --help`
    and bad usage answer with only argparse loaded, a bad setting with only the settings
    (bench/startup.py measures both); a full sync starts listing before the database layer is
    loaded (`service.headstart`)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["emulator"]:
        from service.emulator.cli import main as emulator_main  # noqa: PLC0415

        return emulator_main(args_list[1:])
    args = _parser().parse_args(args_list)
    gc.disable()  # while the command's modules load: see `loaded`
    try:
        with _signals_kept():
            code = _run(args)
    finally:
        gc.enable()  # if the command ended before it loaded (a bad setting): as it was
    if (number := early_signal()) is not None:  # it ended before any `Shutdown` took it
        print(f"user-sync: stopped by {number.name}", file=sys.stderr)
        return 128 + number
    return code


def _run(args: argparse.Namespace) -> int:
    from service.config import ConfigError, load_settings  # noqa: PLC0415 - the settings next

    try:
        settings = load_settings()
    except ConfigError as e:  # refused before the application is loaded at all
        print(f"user-sync: {e}", file=sys.stderr)
        return EXIT_USAGE
    _structlog_without_rich()
    if _lists_everything(args):  # a full sync lists while the rest loads
        from service import headstart  # noqa: PLC0415 - the client, not the database layer

        return headstart.run(args, settings)
    from service import commands  # noqa: PLC0415 - loaded once the command is known

    loaded()
    return commands.run(args, settings)


def _structlog_without_rich() -> None:
    """Import structlog with rich hidden. On its first import structlog imports rich (0.05-0.09 s,
    before a full sync's first list request) for what the service does not use: rich tracebacks
    in its console renderer and rich reprs of a traceback's locals. The service formats each
    exception to text before a renderer sees it (`format_exc_info`, `service.logs`) and renders
    no locals. rich itself stays importable: the tables and the progress bar load it."""
    if "structlog" in sys.modules or "rich" in sys.modules:
        return  # in-process callers: structlog is as it was imported
    sys.modules["rich"] = None  # type: ignore[assignment]  # `import rich`: ImportError
    try:
        import structlog  # noqa: F401, PLC0415
    finally:
        del sys.modules["rich"]


def _lists_everything(args: argparse.Namespace) -> bool:
    """Whether the parsed command is a full sync (`sync`, `sync --full`)."""
    return bool(args.command == "sync" and not (args.user or args.incremental))


def loaded() -> None:
    """The command's modules are in (`main` turned the collector off while they loaded, a
    tenth of a second of collections over objects that all stay): what they made lives as long
    as the process, so the collector leaves it alone from now on, and so do the interpreter's
    last collections at exit (a quarter of a second)."""
    gc.freeze()
    gc.enable()


EARLY_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_early: list[signal.Signals] = []


@contextlib.contextmanager
def _signals_kept() -> Iterator[None]:
    """SIGTERM and SIGINT that arrive while the command loads (half a second to a second,
    before its `service.shutdown.Shutdown` handles them): kept for it, which stops the command
    with the first as soon as it runs (`early_signal`), where they would otherwise kill the
    process mid-import (SIGINT with a traceback) or, as PID 1, be dropped. A second one ends
    the process at once, as it does under a `Shutdown`. The handlers are put back after."""
    _early.clear()
    before = {number: signal.getsignal(number) for number in EARLY_SIGNALS}
    try:
        for number in EARLY_SIGNALS:
            signal.signal(number, _keep)
    except ValueError:  # not the main thread (a caller in-process): its handlers stay
        yield
        return
    try:
        yield
    finally:
        for number, handler in before.items():
            if handler is not None:  # None: not set from Python, nothing to put back
                signal.signal(number, handler)


def _keep(number: int, _frame: object) -> None:
    if not _early:
        _early.append(signal.Signals(number))
        return
    first, now = _early[0], signal.Signals(number)
    again = "again" if now == first else f"after {first.name}"  # as `Shutdown` says it
    with contextlib.suppress(OSError):
        os.write(2, f"user-sync: {now.name} {again}: stopping at once\n".encode())
    os._exit(128 + first)


def early_signal() -> signal.Signals | None:
    """The signal that arrived while the command loaded, taken once: a `Shutdown` takes it
    when it starts (`main` says it if none did)."""
    return _early.pop() if _early else None
