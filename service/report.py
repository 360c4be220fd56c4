"""Rendering run reports and status for people (rich tables) and machines (JSON)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from service import history
from service.config import Settings
from service.db.status import StatusReport
from service.display import cell, printable, safe, when
from service.domain.outcome import Result
from service.domain.runs import RunStatus
from service.reconcile.progress import Phase, RunProgress
from service.reconcile.run import RunReport

SUMMARY_ORDER = (
    Result.CREATED,
    Result.UPDATED,
    Result.ADOPTED,
    Result.LINKED,
    Result.DELETED,
    Result.SUSPENDED,
    Result.UNCHANGED,
    Result.FAILED,
    Result.INVALID,
    Result.HELD,
    Result.WAITING,
    Result.DEFERRED,
    Result.PLANNED,
)


def succeeded(run: RunReport) -> bool:
    return run.status is RunStatus.SUCCEEDED


def run_json(run: RunReport) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "trigger": run.request.trigger,
        "scope": run.request.scope.value,
        "dry_run": run.request.dry_run,
        "status": run.status.value,
        "counts": {r.value: run.counts.get(r, 0) for r in SUMMARY_ORDER},
        "api_calls": run.api_calls,
        "plan": run.planned,
        "would_write": run.would_write,
        "users_written": run.users_written,
        "audit": [history.entry_json(e) for e in run.audit],
        "failures": [
            {
                "user": user,
                "action": f.action,
                "field": f.field,
                "http_status": f.http_status,
                "twilio_code": f.twilio_code,
                "message": f.message,
                "request_id": f.request_id,
            }
            for user, f in run.failures
        ],
        "held_deletions": [
            {"user_id": d.user_id, "sid": d.sid, "identity": d.identity} for d in run.held
        ],
        "held_reason": run.held_reason,
        "writes_held": run.writes_held,
        "held_writes": [{"user_id": u, "identity": i} for u, i in run.held_writes],
        "write_held_reason": run.write_held_reason,
        "waiting": [{"user_id": u, "held_by": h} for u, h in sorted(run.waiting.items())],
        "deferred": sorted(run.deferred),
        "named_nobody": run.named_nobody,
        "error": run.error,
    }


async def with_progress(
    run: Awaitable[RunReport], progress: RunProgress, console: Console, *, transient: bool = True
) -> RunReport:
    """Await `run` while a bar on `console` follows `progress`: the remote users listed, then
    the users reconciled out of those the run looks at."""
    task = asyncio.ensure_future(run)
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description:<22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=transient) as bar:
        shown = bar.add_task(progress.phase.value, total=None)
        while not task.done():
            _show(bar, shown, progress)
            await asyncio.wait({task}, timeout=0.2)
        _show(bar, shown, progress)
    return task.result()


def _show(bar: Progress, task: TaskID, progress: RunProgress) -> None:
    if progress.phase is Phase.LISTING:
        bar.update(task, description=progress.phase.value, completed=progress.listed)
        return
    total = None if progress.total is None else max(progress.total, progress.done)
    bar.update(task, description=progress.phase.value, completed=progress.done, total=total)


def print_run(run: RunReport, console: Console | None = None) -> None:
    """The run for people. Every value from data (ids, identities, roles, messages) is
    escaped, so `[/ops]` or `[bold]admin` is shown as written, never read as markup."""
    out = console or Console()
    if run.request.dry_run:
        out.print(f"[bold]Plan[/bold] (dry run, nothing written): {len(run.planned)} action(s)")
        out.print(
            f"{run.would_write} user(s) would be created or updated "
            "(Twilio bills each as an active user this month)",
            highlight=False,
        )
        for line in run.planned:
            out.print(f"  {printable(line)}", markup=False, highlight=False)
        out.print(f"[bold]Audit trail[/bold] it would record: {len(run.audit)} entries")
        for entry in run.audit:
            line = history.entry_line(entry)
            out.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
    table = Table(title=f"Run {run.run_id}: {run.request.scope.value}, {run.status.value}")
    table.add_column("outcome")
    table.add_column("users", justify="right")
    for result in SUMMARY_ORDER:
        if run.counts.get(result, 0):
            table.add_row(result.value, str(run.counts[result]))
    table.add_row("api calls", str(run.api_calls))
    out.print(table)
    for name in run.named_nobody:
        out.print(
            f"nobody is named {printable(name)}: no id or identity of the source or of the state",
            markup=False,
            highlight=False,
        )
    if not run.request.dry_run:
        out.print(
            f"{run.users_written} distinct user(s) created or updated "
            "(each may count as an active user this month)",
            highlight=False,
        )
    for user, failure in run.failures[:50]:
        where = f" ({safe(failure.field)})" if failure.field else ""
        request = f" \\[request {safe(failure.request_id)}]" if failure.request_id else ""
        out.print(
            f"  [red]failed[/red] {safe(user)}{where}: {safe(failure.message)}{request}",
            highlight=False,
        )
    _print_run_holds(run, out)


def _print_run_holds(run: RunReport, out: Console) -> None:
    if run.held:
        reason = safe(run.held_reason or "")
        out.print(f"[yellow]{len(run.held)} deletion(s) held back[/yellow]: {reason}")
        out.print("  re-run with --allow-deletes to release them")
    if run.writes_held:
        verb = "would be held back" if run.request.dry_run else "held back"
        reason = safe(run.write_held_reason or "")
        out.print(f"[yellow]{run.writes_held} user write(s) {verb}[/yellow]: {reason}")
        out.print("  re-run with --allow-writes to release them")
    for user, holder in sorted(run.waiting.items())[:50]:
        out.print(
            f"  [yellow]waiting[/yellow] {safe(user)}: its identity is held by user {safe(holder)}",
            highlight=False,
        )
    if run.deferred:
        out.print(f"{len(run.deferred)} user(s) left to another run that holds or changed them")
    if run.error:
        out.print(f"[red]run error[/red]: {safe(run.error)}", highlight=False)


def api_target(settings: Settings) -> dict[str, Any]:
    """Where the client goes: the region and edge, the host, and whether
    `USERSYNC_API_BASE_URL` overrides the host they name."""
    target = settings.api_host
    return {
        "region": target.region,
        "edge": target.edge,
        "host": urlsplit(settings.base_url).netloc,
        "base_url": settings.base_url,
        "base_url_overridden": settings.api_base_url is not None,
    }


def print_api(api: dict[str, Any], console: Console | None = None) -> None:
    out = console or Console()
    edge = api["edge"] or "none (Twilio's default host)"
    line = f"API: region {api['region']}, edge {edge}, host {api['host']}"
    if api["base_url_overridden"]:
        line += " (USERSYNC_API_BASE_URL overrides the region's host)"
    out.print(line, highlight=False, soft_wrap=True)


def print_status(
    status: StatusReport, console: Console | None = None, *, now: datetime | None = None
) -> None:
    out = console or Console()
    now = now or datetime.now(UTC)
    out.print(f"last successful full run: {when(status.last_full_success, now)}")
    out.print(f"last successful incremental run: {when(status.last_incremental_success, now)}")
    out.print(_counts(status))
    runs = Table(title="Recent runs")
    _add_columns(runs, ("id", "trigger", "scope", "status", "started", "api calls", "counts"))
    for r in status.runs:
        counts = ", ".join(f"{k}={v}" for k, v in sorted(r.counts.items()))
        scope = f"{r.scope} (dry run)" if r.dry_run else r.scope
        runs.add_row(
            str(r.id),
            cell(r.trigger),
            cell(scope),
            cell(r.status),
            when(r.started_at, now),
            str(r.api_calls),
            cell(counts),
        )
    out.print(runs)
    _print_failing(status, out, now)
    _print_held(status, out, now)
    _print_suspended(status, out, now)


def _add_columns(table: Table, names: Sequence[str]) -> None:
    """Columns whose values are never cut: a word wider than its column (a request id, a sid,
    a user id) folds onto the next line instead of ending in `…`, however narrow the output."""
    for name in names:
        table.add_column(name, overflow="fold")


def _counts(status: StatusReport) -> Table | str:
    if not status.counts_by_status:
        return "users by status: none yet"
    counts = Table(title="Users by status")
    counts.add_column("status")
    counts.add_column("users", justify="right")
    for state, n in sorted(status.counts_by_status.items()):
        counts.add_row(cell(state), str(n))
    return counts


def _print_failing(status: StatusReport, out: Console, now: datetime) -> None:
    if not status.failing:
        return
    failing = Table(title="Failing and quarantined users")
    columns = (
        "user",
        "identity",
        "status",
        "attempts",
        "code",
        "last error",
        "request",
        "next try",
    )
    _add_columns(failing, columns)
    for u in status.failing:
        failing.add_row(
            cell(u.user_id),
            cell(u.identity),
            cell(u.status),
            str(u.attempts),
            str(u.last_error_code or ""),
            cell(u.last_error_message),
            cell(u.request_id),
            when(u.next_attempt_at, now) if u.next_attempt_at else "",
        )
    out.print(failing)


def _print_held(status: StatusReport, out: Console, now: datetime) -> None:
    if status.waiting:
        waiting = Table(title="Users waiting for their identity")
        _add_columns(waiting, ("user", "why"))
        for u in status.waiting:
            waiting.add_row(cell(u.user_id), cell(u.last_error_message))
        out.print(waiting)
    _print_rows(
        out,
        "Deletions held (release with: user-sync sync --allow-deletes)"
        + _listed(len(status.held), status.held_total),
        ("user", "identity", "sid", "reason", "run", "held since"),
        [
            (cell(d.user_id), cell(d.identity), cell(d.sid), cell(d.reason), str(d.run_id),
             when(d.held_at, now))
            for d in status.held
        ],
    )  # fmt: skip
    _print_rows(
        out,
        "Writes held (release with: user-sync sync --allow-writes)"
        + _listed(len(status.held_writes), status.held_writes_total),
        ("user", "identity", "reason", "run", "held since"),
        [
            (cell(w.user_id), cell(w.identity), cell(w.held_reason), str(w.run_id),
             when(w.held_at, now))
            for w in status.held_writes
        ],
    )  # fmt: skip


def _listed(shown: int, total: int) -> str:
    """Said in a table's title when it lists only the first of its rows."""
    return f": the first {shown:,} of {total:,}" if total > shown else ""


def _print_suspended(status: StatusReport, out: Console, now: datetime) -> None:
    _print_rows(
        out,
        "Suspended users (deleted when their grace period ends)",
        ("user", "identity", "sid", "status", "deleted after"),
        [
            (cell(u.user_id), cell(u.identity), cell(u.sid), cell(u.status),
             when(u.delete_after, now))
            for u in status.suspended
        ],
    )  # fmt: skip


def _print_rows(
    out: Console, title: str, columns: tuple[str, ...], rows: Sequence[Sequence[RenderableType]]
) -> None:
    """A table of these rows under `title`, if there are any."""
    if not rows:
        return
    table = Table(title=title)
    _add_columns(table, columns)
    for row in rows:
        table.add_row(*row)
    out.print(table)
