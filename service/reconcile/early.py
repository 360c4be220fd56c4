"""Full runs write while they list: the changed users that need no listing go first.

A full run lists every remote user before it plans anyone, yet a linked user whose source row
changed since it was last applied, and whose state remembers its remote user as we last left it
(`domain.users.remembered`, no rename), is planned from that memory by any incremental run. So,
as the listing starts, a full pass selects those users on a connection of its own
(`db.changed`), plans them as a run of named users would (`Sides.remembered_sides`, the same
planner), and, if the write guard allows them (`WriteGate.admit_ahead`: under the window's lock,
counted with every changed user), applies their updates in a pool of their own while the listing
streams pages. A change run then costs max(listing, writes), not their sum.

Every guard still holds:
- the write guard sees the early users before any is written; over a limit, none is written
  early and the pass plans and counts them with the rest, as it did before;
- each user is leased before its first call (`db.leases`): a user another run holds, or whose
  source row or state changed since it was selected, is deferred, as in any pass;
- the full selection leaves the chosen users out (`without`), so none is planned twice from
  the listing; the users written early are planned once more at the end of the pass from what
  their writes answered (`finish`), which is newer than the listing: drift in fields the source
  did not change shows there and is written (through the pass's gate, with the rest); a 404
  on an early update is handled as on any remembered user (look the identity up, adopt it or
  create it again);
- whatever ends the pass (a failure, SIGTERM mid-listing), what was applied is recorded
  (`close`);
- dry runs, merge mode and `USERSYNC_READ_BEFORE_WRITE` (which read every user before writing
  it) and `USERSYNC_EARLY_WRITES=false` write nothing early: the pass runs as before.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.db import changed
from service.db.source import Source
from service.domain.actions import UpdateUser
from service.domain.batch import BatchPlan, Planned
from service.domain.cases import Case
from service.domain.outcome import Outcome, Result
from service.domain.users import UserId
from service.reconcile.gate import WriteGate
from service.reconcile.pool import ApplyPool, Work
from service.reconcile.recorder import Recorder
from service.reconcile.run import RunReport
from service.reconcile.sides import Sides

EARLY_SLOTS = 0.5
"""The share of the client's in-flight slots the early users may hold: a write takes its slot
before it waits for its turn (`conversations.ratelimit`), so a pool of early writes as large as
a pass's would hold every slot and page the listing at the write rate; half of them keep the
write schedule full (at 30 writes/s a write's round trip of 50-150 ms needs 2-5) and leave
the listing its reads."""
RECORD_EVERY = 1.0
"""Seconds between two recordings of the early users that finished."""
EARLY_LIMIT = 10_000
"""At most this many users are written early (they are held in memory until their writes are
done); the others of a larger change are planned from the listing, as before."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EarlyParts:
    """What one pass's early writes work with (`reconcile.passes` wires them)."""

    sessions: async_sessionmaker[AsyncSession]
    sides: Sides
    recorder: Recorder
    report: RunReport
    source: Source
    gate: WriteGate
    pool: ApplyPool
    """A pool of their own: the pass's pool is drained at its end, these as they finish."""
    plan: Callable[[Sequence[Case]], Awaitable[BatchPlan]]


@dataclass(frozen=True, slots=True)
class EarlyDone:
    """The early writes of a pass, applied and recorded."""

    chosen: list[Case]
    """Every user chosen to be written early (left out of the full selection)."""
    again: list[UserId]
    """Those written, planned once more from what their writes answered, and those another
    run held then, planned from what is there after the listing (`_again`)."""
    outcomes: dict[UserId, Outcome] = field(default_factory=dict)
    """The early outcome of each of `again`, counted already (the last outcome replaces it)."""


class EarlyWrites:
    """One full pass's early writes: chosen as the listing starts, applied while it runs."""

    def __init__(self, parts: EarlyParts | None) -> None:
        self._parts = parts
        self._chosen: list[Planned] = []
        self._writing: asyncio.Task[list[Outcome]] | None = None
        self._decision = asyncio.create_task(self._decide(parts)) if parts else None

    @classmethod
    def none(cls) -> EarlyWrites:
        """A pass that writes nothing early (not a full run, a dry run, merge mode...)."""
        return cls(None)

    async def without(self, batch: list[Case]) -> list[Case]:
        """A batch of the full selection without the users chosen to be written early."""
        chosen = await self._decided()
        if not chosen:
            return batch
        return [g for g in batch if g.user_id not in chosen]

    async def finish(self) -> EarlyDone:
        """Wait for the early writes and record them: which were chosen, which wrote."""
        await self._decided()
        if self._writing is None:
            return EarlyDone([], [])
        outcomes = {o.user_id: o for o in await self._writing if o.user_id and _again(o)}
        return EarlyDone([p.case for p in self._chosen], list(outcomes), outcomes)

    async def close(self) -> None:
        """Whatever ends the pass, the early writes stop and what was applied is recorded."""
        parts = self._parts
        if parts is None or self._decision is None:
            return
        await _stopped(self._decision)
        if self._writing is not None:
            await _stopped(self._writing)
        unrecorded = await parts.pool.close()
        if unrecorded:
            await asyncio.shield(parts.recorder.outcomes(unrecorded, parts.report, dry_run=False))

    async def _decided(self) -> frozenset[UserId]:
        if self._decision is None:
            return frozenset()
        await self._decision
        return frozenset(p.case.user_id for p in self._chosen if p.case.user_id is not None)

    async def _decide(self, parts: EarlyParts) -> None:
        """Select, plan and guard the early users; start their writes if the guard allows."""
        selection = changed.remembered_changed(source=parts.source)
        cases = await parts.sides.remembered_sides(selection, limit=EARLY_LIMIT)
        if not cases:  # a no-change run: one query, beside the listing
            return
        async with parts.sessions() as session:
            connection = await session.connection()
            expected = await changed.changed_count(connection, source=parts.source)
        plan = await parts.plan(cases)
        work = [p for p in plan.work if _updates_only(p)]
        if await parts.gate.admit_ahead(work, expected=expected):
            self._chosen = work
            self._writing = asyncio.create_task(self._write(parts, work))

    async def _write(self, parts: EarlyParts, work: list[Planned]) -> list[Outcome]:
        """Apply the early users, recording what finished every `RECORD_EVERY` seconds (a
        user's lease is released when its outcome is recorded: an event waits no longer)."""
        pool, done = parts.pool, list[Outcome]()
        submitting = asyncio.create_task(pool.submit([Work.of(p.case, p.actions) for p in work]))
        try:
            while not submitting.done():
                await asyncio.wait({submitting}, timeout=RECORD_EVERY)
                done += await self._record(parts, pool.finished())
            await submitting
            return done + await self._record(parts, await pool.drain())
        finally:
            await _stopped(submitting)

    async def _record(self, parts: EarlyParts, outcomes: list[Outcome]) -> list[Outcome]:
        if outcomes:
            await asyncio.shield(parts.recorder.outcomes(outcomes, parts.report, dry_run=False))
        return outcomes


def _again(outcome: Outcome) -> bool:
    """Whether the pass looks at an early user once more: it was written, and its answer may
    show drift; or another run held it when it was chosen (the listing began before that run
    was done: planned only now, it is as a pass would have planned it from the listing, a
    user still held then being deferred as in any pass). A failed one is not tried twice in
    one run."""
    if outcome.result is Result.DEFERRED:
        return True
    return outcome.wrote and not outcome.failures


def _updates_only(planned: Planned) -> bool:
    """Work that updates the user's own linked remote user and nothing else: what a remembered
    user's changed row plans (links, adoptions and suspensions wait for the listing)."""
    state = planned.case.state
    linked = state.remote_sid if state is not None else None
    return bool(planned.actions) and all(
        isinstance(a, UpdateUser)
        and a.sid == linked
        and not a.adopted
        and a.suspends is None
        and a.retires is None
        for a in planned.actions
    )


async def _stopped(task: asyncio.Task[Any]) -> None:
    """`task` cancelled if still running, and over; its error, if any, already surfaced
    through whoever awaited it (or is superseded by whatever ends the pass)."""
    if not task.done():
        task.cancel()
    await asyncio.wait({task})
    if not task.cancelled():
        with contextlib.suppress(Exception):
            task.result()
