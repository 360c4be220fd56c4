"""Stopping on SIGTERM and SIGINT, the same way for every command, also as PID 1.

The kernel gives the first process of a PID namespace (a container's exec-form ENTRYPOINT, so
every Kubernetes Job and CronJob) no default action for a signal: a SIGTERM it does not handle
does nothing, and the runtime kills it after its grace period. So every command runs under a
`Shutdown`, which handles both signals on the event loop:

- the first signal stops the command: its task is cancelled with the message `stopped by
  SIGTERM` (a run records itself `aborted` with that reason); a command that stops by itself
  (`serve` drains its runs) is told through `requested` instead;
- the process exits 128 + the signal's number (143 for SIGTERM, 130 for SIGINT) after one line
  on stderr, or with a draining command's own code when it stopped in order;
- a signal that arrived while the command loaded (`service.cli` keeps it) counts as the first;
- a second signal (either one), or the command still going `deadline` seconds after the
  first, ends the process at once with the first signal's code (`os._exit`); a run it had
  open stays `running` until the next run of its Service closes it `aborted`.

The deadline is kept by a thread, so it holds even when the event loop is stuck.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Coroutine
from typing import Any

import structlog

from service import cli

SIGNALS = (signal.SIGTERM, signal.SIGINT)
PROGRAM = "user-sync"

log = structlog.get_logger(__name__)


def exit_code(number: signal.Signals) -> int:
    """What a shell reports for a process ended by `number`: 143 for SIGTERM, 130 for SIGINT."""
    return 128 + int(number)


def cancel_message(number: signal.Signals) -> str:
    """Why the command's task was cancelled; a run records it as its reason."""
    return f"stopped by {number.name}"


class Shutdown:
    """One command's answer to SIGTERM and SIGINT (see the module docstring)."""

    def __init__(self, *, deadline: float, drains: bool = False) -> None:
        self.deadline = deadline
        self.drains = drains
        self.received: signal.Signals | None = None
        self.requested = asyncio.Event()
        self._task: asyncio.Task[int] | None = None
        self._deadline: threading.Timer | None = None

    async def run(self, work: Coroutine[Any, Any, int]) -> int:
        """Run `work` as the command's task with the handlers installed; the exit code."""
        self._task = asyncio.create_task(work, name="command")
        loop = asyncio.get_running_loop()
        for number in SIGNALS:
            loop.add_signal_handler(number, self._signalled, number)
        if (early := cli.early_signal()) is not None:  # it came while the command loaded
            loop.call_soon(self._signalled, early)
        previous = loop.get_exception_handler()
        loop.set_exception_handler(self._loop_error)
        try:
            return await self._outcome(self._task)
        finally:
            loop.set_exception_handler(previous)
            for number in SIGNALS:
                loop.remove_signal_handler(number)
            self._second_ends_it()

    def _second_ends_it(self) -> None:
        """After a signal, the process may live on past the command: `asyncio.run` waits for
        the executor's threads (a full sync's head start imports in one) and the interpreter
        exits. A second signal then still ends it at once, as it would have on the loop."""
        if self.received is None:
            return
        for number in SIGNALS:
            with contextlib.suppress(ValueError):  # not the main thread: nothing to keep
                signal.signal(number, self._signalled_late)

    def _signalled_late(self, number: int, _frame: object) -> None:
        self._signalled(signal.Signals(number))

    def disarm(self) -> None:
        """Cancel the deadline a signal armed. A command leaves it armed on purpose: it also
        bounds the process's exit after `run` returns (asyncio.run waits for executor threads).
        Only a caller that goes on living after the command (a test in-process) disarms it;
        the handlers that end the process on a second signal are taken back too."""
        if self._deadline is not None:
            self._deadline.cancel()
        for number in SIGNALS:
            with contextlib.suppress(ValueError):
                if signal.getsignal(number) == self._signalled_late:
                    signal.signal(number, signal.SIG_DFL)

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """Errors nobody awaited (asyncio's "Future exception was never retrieved"), as log
        lines instead of raw text on stderr. Once a stop is under way they are expected: a
        connection cancelled mid-handshake (asyncpg's TLS negotiation) leaves such a future
        behind; they are logged at debug level then."""
        error = context.get("exception")
        fields = {"error": repr(error) if error is not None else None}
        if self.received is not None:
            log.debug("error while stopping", problem=context.get("message"), **fields)
        else:
            log.error("error nobody awaited", problem=context.get("message"), **fields)

    async def _outcome(self, task: asyncio.Task[int]) -> int:
        try:
            code = await task
        except asyncio.CancelledError:
            if self.received is None:
                raise
            return _stopped(self.received)
        except Exception as e:  # the stop itself failed: say so in the one line, no traceback
            if self.received is None:
                raise
            return _stopped(self.received, trouble=f"{type(e).__name__}: {e}")
        if self.received is None or self.drains:
            return code
        return _stopped(self.received)

    def _signalled(self, number: signal.Signals) -> None:
        if self.received is not None:
            first = self.received
            again = "again" if number == first else f"after {first.name}"
            _exit_now(first, f"{number.name} {again}: stopping at once")
        self.received = number
        too_late = f"not stopped within {self.deadline:g} s of {number.name}: stopping at once"
        self._deadline = threading.Timer(self.deadline, _exit_now, args=(number, too_late))
        self._deadline.daemon = True
        self._deadline.start()
        if self.drains:
            self.requested.set()
        elif self._task is not None:
            self._task.cancel(msg=cancel_message(number))
        log.warning("stopping", signal=number.name, deadline=self.deadline)  # after: it may fail


def _stopped(number: signal.Signals, *, trouble: str | None = None) -> int:
    line = f"{PROGRAM}: {cancel_message(number)}"
    _say(line if trouble is None else f"{line} (while stopping: {trouble})")
    return exit_code(number)


def _exit_now(number: signal.Signals, why: str) -> None:
    """End the process without unwinding anything: the last resort, by design."""
    _say(f"{PROGRAM}: {why}")
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
    os._exit(exit_code(number))


def _say(line: str) -> None:
    """One line on stderr, if anyone still reads it (its reader may be gone)."""
    with contextlib.suppress(OSError, ValueError):
        print(line, file=sys.stderr, flush=True)
