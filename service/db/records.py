"""Writing what happened: runs, per-user sync state and errors.

State and errors are written in batches with one statement each, never row by row: states as
one upsert over arrays (`unnest`), errors as one multi-row insert. A state is written only where
the run holds the user's lease (`db.leases`), and writing it releases the lease.

Runs are opened `running` and closed with their outcome; a run found `running` whose process is
gone (its alive lock is free) was killed, and the next run of the Service closes it `aborted`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import TextClause, delete, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from service.db import rows
from service.db.locks import run_is_live
from service.db.models import SyncError, SyncRun, SyncStateRow
from service.domain.runs import RunStatus
from service.domain.users import SyncState


@dataclass(frozen=True, slots=True)
class ErrorRecord:
    user_id: str | None
    identity: str | None
    action: str
    message: str
    field: str | None = None
    http_status: int | None = None
    twilio_code: int | None = None
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class RunOpening:
    service_key: str
    trigger: str
    scope: str
    target: str | None
    dry_run: bool
    allow_deletes: bool
    allow_writes: bool = False
    plan_context: str | None = None


@dataclass(frozen=True, slots=True)
class RunClosing:
    status: str
    counts: dict[str, int]
    api_calls: int
    deletions_held: int = 0
    held_reason: str | None = None
    held_deletions: tuple[dict[str, Any], ...] = ()
    users_written: int = 0
    writes_held: int = 0
    write_held_reason: str | None = None
    held_writes: tuple[dict[str, Any], ...] = ()
    error: str | None = None


async def abort_stale_runs(session: AsyncSession, *, service_key: str) -> int:
    """Close the Service's runs left `running` by a process that is gone (of any scope, from
    any replica: a live run holds its alive lock)."""
    result = await session.execute(
        update(SyncRun)
        .where(
            SyncRun.service_key == service_key,
            SyncRun.status == RunStatus.RUNNING.value,
            text(f"NOT {run_is_live('sync_run.id::text')}"),
        )
        .values(
            status=RunStatus.ABORTED.value,
            finished_at=func.now(),
            error="the process running it stopped",
        )
        .returning(SyncRun.id)
    )
    return len(result.all())


async def open_run(session: AsyncSession, opening: RunOpening) -> int:
    run_id = await session.scalar(
        insert(SyncRun)
        .values(**asdict(opening), status=RunStatus.RUNNING.value, pid=os.getpid())
        .returning(SyncRun.id)
    )
    assert run_id is not None
    return int(run_id)


async def close_run(session: AsyncSession, run_id: int, closing: RunClosing) -> None:
    values = asdict(closing)
    values["held_deletions"] = list(closing.held_deletions)
    values["held_writes"] = list(closing.held_writes)
    await session.execute(
        update(SyncRun).where(SyncRun.id == run_id).values(**values, finished_at=func.now())
    )


_STATE_TYPES = rows.STATE_TYPES | {"managed_keys": "jsonb"}
"""`sync_state` columns by their SQL type in `_UPSERT_STATES`; `managed_keys` (a `text[]`,
ragged across users) travels as one JSON array per user."""
_STATE_VALUES = {"managed_keys": "ARRAY(SELECT jsonb_array_elements_text(u.managed_keys))"}


def _upsert_states() -> TextClause:
    columns = ", ".join(_STATE_TYPES)
    arrays = ", ".join(f"CAST(:{name} AS {kind}[])" for name, kind in _STATE_TYPES.items())
    values = ", ".join(_STATE_VALUES.get(name, f"u.{name}") for name in _STATE_TYPES)
    updates = ", ".join(f"{name} = EXCLUDED.{name}" for name in _STATE_TYPES if name != "user_id")
    # every name in the statement is a constant (of this module and `db.rows`)
    return text(
        f"INSERT INTO sync_state AS s ({columns}, updated_at)"  # noqa: S608
        f" SELECT {values}, clock_timestamp() FROM unnest({arrays}) AS u({columns})"
        f" ON CONFLICT (user_id) DO UPDATE SET {updates}, updated_at = clock_timestamp(),"
        " version = s.version + 1, lease_run = NULL WHERE s.lease_run = :run"
        " RETURNING s.user_id"
    )


_UPSERT_STATES = _upsert_states()
"""One statement for a whole batch: the same SQL whatever the batch size, so it is compiled
once and each batch is 15 array parameters, not 15 bind parameters per user. A user whose lease
the run no longer holds is not written (and not returned)."""


async def save_states(
    session: AsyncSession, records: Sequence[SyncState], *, run_id: int
) -> set[str]:
    """Write these users' states where run `run_id` holds their lease; the ids written."""
    if not records:
        return set()
    columns: dict[str, list[Any]] = {name: [] for name in _STATE_TYPES}
    for record in records:
        for name in _STATE_TYPES:
            columns[name].append(getattr(record, name))
    columns["managed_keys"] = [json.dumps(sorted(keys)) for keys in columns["managed_keys"]]
    written = await session.scalars(_UPSERT_STATES, {**columns, "run": run_id})
    return set(written)


async def save_errors(session: AsyncSession, run_id: int, errors: Sequence[ErrorRecord]) -> None:
    if errors:
        await session.execute(insert(SyncError), [{**asdict(e), "run_id": run_id} for e in errors])


async def prune_errors(session: AsyncSession, *, before: datetime) -> int:
    result = await session.execute(
        delete(SyncError).where(SyncError.created_at < before).returning(SyncError.id)
    )
    return len(result.all())


async def count_linked_remote_users(session: AsyncSession) -> int:
    """How many remote users our state links: the base of the percent deletion guard."""
    count = await session.scalar(
        select(func.count()).select_from(SyncStateRow).where(SyncStateRow.remote_sid.is_not(None))
    )
    return int(count or 0)
