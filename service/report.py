"""Rendering run reports and status for people (rich tables) and machines (JSON)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any
from urllib.parse import urlsplit

from rich.console import Console
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

from service.config import Settings
from service.db.status import StatusReport
from service.reconcile.outcome import Result
from service.reconcile.progress import Phase, RunProgress
from service.reconcile.run import RunReport, RunStatus

SUMMARY_ORDER = (
    Result.CREATED,
    Result.UPDATED,
    Result.ADOPTED,
    Result.LINKED,
    Result.DELETED,
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
        "failures": [
            {
                "user": user,
                "action": f.action,
                "field": f.field,
                "http_status": f.http_status,
                "twilio_code": f.twilio_code,
                "message": f.message,
            }
            for user, f in run.failures
        ],
        "held_deletions": [
            {"user_id": d.user_id, "sid": d.sid, "identity": d.identity} for d in run.held
        ],
        "held_reason": run.held_reason,
        "waiting": [{"user_id": u, "held_by": h} for u, h in sorted(run.waiting.items())],
        "deferred": sorted(run.deferred),
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
    out = console or Console()
    if run.request.dry_run:
        out.print(f"[bold]Plan[/bold] (dry run, nothing written): {len(run.planned)} action(s)")
        out.print(
            f"{run.would_write} user(s) would be created or updated "
            "(Twilio bills each as an active user this month)",
            highlight=False,
        )
        for line in run.planned:
            out.print(f"  {line}", markup=False, highlight=False)
    table = Table(title=f"Run {run.run_id}: {run.request.scope.value}, {run.status.value}")
    table.add_column("outcome")
    table.add_column("users", justify="right")
    for result in SUMMARY_ORDER:
        if run.counts.get(result, 0):
            table.add_row(result.value, str(run.counts[result]))
    table.add_row("api calls", str(run.api_calls))
    out.print(table)
    for user, failure in run.failures[:50]:
        where = f" ({failure.field})" if failure.field else ""
        out.print(f"  [red]failed[/red] {user}{where}: {failure.message}", highlight=False)
    if run.held:
        out.print(f"[yellow]{len(run.held)} deletion(s) held back[/yellow]: {run.held_reason}")
        out.print("  re-run with --allow-deletes to release them")
    for user, holder in sorted(run.waiting.items())[:50]:
        out.print(
            f"  [yellow]waiting[/yellow] {user}: its identity is held by user {holder}",
            highlight=False,
        )
    if run.deferred:
        out.print(f"{len(run.deferred)} user(s) left to another run that holds or changed them")
    if run.error:
        out.print(f"[red]run error[/red]: {run.error}", highlight=False)


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


def print_status(status: StatusReport, console: Console | None = None) -> None:
    out = console or Console()
    out.print(f"last successful full run: {status.last_full_success or 'never'}")
    out.print(f"last successful incremental run: {status.last_incremental_success or 'never'}")
    out.print(f"users by status: {status.counts_by_status or 'none yet'}")
    runs = Table(title="Recent runs")
    for column in ("id", "trigger", "scope", "status", "started", "api calls", "counts"):
        runs.add_column(column)
    for r in status.runs:
        counts = ", ".join(f"{k}={v}" for k, v in sorted(r.counts.items()))
        scope = f"{r.scope} (dry run)" if r.dry_run else r.scope
        runs.add_row(
            str(r.id),
            r.trigger,
            scope,
            r.status,
            f"{r.started_at:%Y-%m-%d %H:%M:%S}",
            str(r.api_calls),
            counts,
        )
    out.print(runs)
    if status.failing:
        failing = Table(title="Failing and quarantined users")
        for column in ("user", "identity", "status", "attempts", "code", "last error"):
            failing.add_column(column)
        for u in status.failing:
            failing.add_row(
                u.user_id,
                u.identity or "",
                u.status,
                str(u.attempts),
                str(u.last_error_code or ""),
                u.last_error_message or "",
            )
        out.print(failing)
    _print_held(status, out)


def _print_held(status: StatusReport, out: Console) -> None:
    if status.waiting:
        waiting = Table(title="Users waiting for their identity")
        for column in ("user", "why"):
            waiting.add_column(column)
        for u in status.waiting:
            waiting.add_row(u.user_id, u.last_error_message or "")
        out.print(waiting)
    if status.held:
        held = Table(title="Deletions held (release with: user-sync sync --allow-deletes)")
        for column in ("user", "identity", "sid", "reason", "run", "held since"):
            held.add_column(column)
        for d in status.held:
            held.add_row(
                d.user_id or "",
                d.identity or "",
                d.sid,
                d.reason,
                str(d.run_id),
                f"{d.held_at:%Y-%m-%d %H:%M:%S}",
            )
        out.print(held)
