"""The audit trail as people (one line per entry) and machines (JSON) read it.

`user-sync history`, `GET /users/{key}/history`, `GET /runs/{id}` and a dry run's report all
show entries through here, so a line reads the same wherever it is shown. A line names the
action, the user, the outcome with Twilio's status and request id, and what changed: friendly
name and role old → new (a role by its name beside its sid), attribute keys `+added`,
`-removed`, `~changed`. Every value from data is shown printable (`display`), and escaped
where it goes into markup.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from sqlalchemy.ext.asyncio import AsyncSession

from service.db import audit
from service.db.audit import AuditRow
from service.display import printable, safe, when
from service.domain.audit import AuditEntry

ACTIONS_SHOWN = 100
"""Entries of a run `GET /runs/{id}` shows; `actions_next` links to the rest."""


async def run_actions(
    session: AsyncSession, run_id: int, *, limit: int = ACTIONS_SHOWN, after: int | None = None
) -> dict[str, Any]:
    """`actions`: the run's entries (at most `limit`), `actions_next`: the link to the rest."""
    rows = await audit.of_run(session, run_id, limit=limit + 1, after=after)
    more = len(rows) > limit
    rows = rows[:limit]
    following = f"/runs/{run_id}/actions?limit={limit}&after={rows[-1].id}" if more else None
    return {"actions": [row_json(r) for r in rows], "actions_next": following}


def entry_json(entry: AuditEntry) -> dict[str, Any]:
    return asdict(entry)


def row_json(row: AuditRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "at": row.at.astimezone(UTC).isoformat(),
        "run_id": row.run_id,
        "trigger": row.trigger,
        "scope": row.scope,
        **entry_json(row.entry),
    }


def entry_line(entry: AuditEntry) -> str:
    """One line, plain text (print it without markup, or through `safe`)."""
    who = entry.identity or "?"
    if entry.user_id is not None:
        who += f" (user {entry.user_id})"
    head = f"{entry.action} {who}" + (f" {entry.sid}" if entry.sid else "")
    line = f"{head}: {entry.outcome}{_answer(entry)}"
    if entry.reason:
        line += f" ({entry.reason})"
    changed = _changes(entry.changes)
    if changed:
        line += f": {changed}"
    if entry.message and entry.outcome in ("failed", "invalid"):
        line += f" - {entry.message}"
    return printable(line)


def _answer(entry: AuditEntry) -> str:
    parts = []
    if entry.http_status is not None:
        parts.append(f"HTTP {entry.http_status}")
    if entry.twilio_code is not None:
        parts.append(f"Twilio {entry.twilio_code}")
    if entry.request_id:
        parts.append(f"request {entry.request_id}")
    return f" [{', '.join(parts)}]" if parts else ""


def _changes(changes: dict[str, Any]) -> str:
    shown = []
    name = changes.get("friendly_name")
    if name is not None:
        shown.append(f"friendly_name {_text(name['old'])} → {_text(name['new'])}")
    role = changes.get("role")
    if role is not None:
        shown.append(f"role {_role(role['old'])} → {_role(role['new'])}")
    keys = changes.get("attributes")
    if keys is not None:
        marked = [f"+{k}" for k in keys["added"]] + [f"-{k}" for k in keys["removed"]]
        marked += [f"~{k}" for k in keys["changed"]]
        shown.append("attributes " + (" ".join(marked) if marked else "(no keys)"))
    return ", ".join(shown)


def _text(value: str | None) -> str:
    return "none" if value is None else repr(value)


def _role(role: dict[str, str | None] | None) -> str:
    if role is None:
        return "none"
    sid = role.get("sid") or "?"
    return f"{sid} ({role['name']})" if role.get("name") else sid


def print_history(
    key: str, rows: Sequence[AuditRow], *, now: datetime, console: Console | None = None
) -> None:
    """Each entry under its time and run; a line is never cut or folded by the console (the
    terminal wraps it), so ids and request ids stay whole to copy."""
    out = console or Console()
    if not rows:
        out.print(f"no audit trail for {safe(key)}", highlight=False)
        return
    for row in rows:
        stamp = when(row.at, now)
        out.print(
            f"{stamp}  run {row.run_id} ({safe(row.trigger)}, {safe(row.scope)})",
            highlight=False,
        )
        out.print(f"  {entry_line(row.entry)}", markup=False, highlight=False, soft_wrap=True)
