"""The write guard in a run: no user is written until the run knows it may write them all.

A pass plans its users batch by batch and applies each batch as it comes, so the write guard
(`domain.writes`) needs its answer before the first create or update, while the pass is still
counting. The gate keeps the pass all-or-nothing this way:
- An initial sync, or a run with `allow_writes`, is open from the start: nothing waits.
- Otherwise a batch's users that would be created or updated wait in the gate; everything
  else of the batch (links, retirements, outcomes without a call) goes ahead. As soon as the
  waiting users alone exceed a limit (`writes.exceeds`: the window can only add to them) the
  gate shuts: none of them is written and every later writer of the pass is held too. So the
  gate never keeps more than the budget's users and one batch (`USERSYNC_MAX_WRITES_PER_RUN`
  plus `db.gather.BATCH`, 1,000), whatever the size of the source.
- When the pass has planned everyone (`settle`), the gate decides under the Service's write
  lock with the distinct users already written within the window: allowed, the waiting users
  are logged against the window and applied together; over a limit, all are held.
- A full run's changed users that need no listing to be planned (`reconcile.early`) are
  decided before the listing ends (`admit_ahead`), the same way under the same lock, counted
  with every user whose source row changed: allowed, they are logged and applied at once, and
  the rest of the pass is judged at `settle` with them in the window; over a limit, none is
  written early and the pass counts them with the rest, as if nothing had been found early.
  So a change the guard holds as a whole is held as a whole; what only the listing reveals
  (drift, remote users deleted behind our back) may still be held after the early writes.

Held writes are kept as held rows (`db.writes`), shown by `status`, `GET /runs` and the
`usersync_writes_held` gauge, and released by a run with `allow_writes`; a held user's state is
not touched, so every run that looks at it plans it again. The cost is latency, not memory: a
guarded pass applies its writes after its last batch is planned instead of as they come.
Follow-up passes of the run (users that waited for an identity) have a gate of their own,
counted against the same window (the pass before may have spent it), and held at once if an
earlier pass of the run held its writes (all or nothing per run); a user whose write another
run holds stays held until a run with `allow_writes` releases it. The deletion phase is not
gated here: its deletions and suspensions (an update that suspends a user who left) are
removals, which the deletion guard counts and holds (`domain.guards`); a suspension is still
a write Twilio may bill, and counts in the run's `users_written`.
A dry run counts the same way and says whether it would be held, writing nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.db import records, writes
from service.db.source import Source
from service.domain.actions import DeleteReason, DeleteUser
from service.domain.audit import held_write_entries
from service.domain.batch import Planned, writes_user
from service.domain.cases import Case
from service.domain.policy import Policy
from service.domain.writes import WriteVerdict, exceeds, guard_writes, initial_sync
from service.reconcile.recorder import Recorder
from service.reconcile.run import RunReport


class _State(StrEnum):
    OPEN = "open"
    COUNTING = "counting"
    SHUT = "shut"


@dataclass(frozen=True, slots=True, kw_only=True)
class GateConfig:
    policy: Policy
    window: timedelta
    service_key: str


@dataclass(slots=True, kw_only=True)
class WriteGate:
    """One pass's writes, until it is known whether they may be made."""

    sessions: async_sessionmaker[AsyncSession]
    config: GateConfig
    report: RunReport
    linked: int
    held_before: bool
    """Held rows existed when the pass began: the pass drops those it no longer plans."""
    named: bool
    """The pass looks at named users only (`begin`)."""
    recorder: Recorder
    """Records the held writes in the audit trail."""
    let_go: Mapping[str, int] = field(default_factory=dict)
    """Users that break a cycle of waits in this pass, with the users of their cycle: their
    letting go (deleting their old remote user) is where the cycle's writes begin, so it
    waits here as a write of them all, and a hold keeps every old remote user."""
    state: _State = _State.COUNTING
    waiting: list[Planned] = field(default_factory=list)
    counted: list[Case] = field(default_factory=list)
    """A dry run's users that would be written (it has no work to keep)."""
    reason: str | None = None
    """Why the gate shut."""

    @classmethod
    async def begin(
        cls,
        sessions: async_sessionmaker[AsyncSession],
        *,
        config: GateConfig,
        report: RunReport,
        named: bool,
        recorder: Recorder,
        let_go: Mapping[str, int] | None = None,
    ) -> WriteGate:
        """The gate of one pass; `named`: the pass looks at named users only (an event, a
        follow-up pass), which never write a user another run holds; `let_go`: the users
        that break a cycle of waits in it, with the users of their cycle."""
        async with sessions() as session:
            linked = await records.count_linked_remote_users(session)
            held = await writes.any_held(session, service_key=config.service_key)
        gate = cls(
            sessions=sessions,
            config=config,
            report=report,
            linked=linked,
            held_before=held,
            named=named,
            recorder=recorder,
            let_go=let_go or {},
        )
        if report.request.allow_writes or initial_sync(linked=linked):
            gate.state = _State.OPEN
        elif report.writes_held:  # an earlier pass of this run held: all or nothing per run
            gate.state, gate.reason = _State.SHUT, report.write_held_reason
        return gate

    async def admit(
        self, work: Sequence[Planned], *, counted: Sequence[Case] = ()
    ) -> list[Planned]:
        """The work of a batch to apply now; its writers wait, pass, or are held."""
        writers = [p for p in work if self._writes(p)]
        rest = [p for p in work if not self._writes(p)]
        if self.state is _State.OPEN:
            await self._release([p.case for p in writers])
            return rest + writers
        if self.state is _State.SHUT:
            await self._hold([p.case for p in writers] + list(counted))
            return rest
        self.waiting += writers
        self.counted += counted
        if exceeds(self._count(), policy=self.config.policy, linked=self.linked):
            await self._shut()
        return rest

    async def settle(self) -> list[Planned]:
        """The pass has planned everyone: the waiting work to apply, if the guard allows it."""
        if self.state is not _State.COUNTING:
            return []
        cases = self._cases()
        verdict = await self._decide(cases, count=self._count()) if cases else None
        if verdict is not None and not verdict.allowed:
            await self._shut(reason=verdict.reason)
            return []
        self.state = _State.OPEN
        await self._release(cases)
        waiting, self.waiting = self.waiting, []
        return waiting

    async def admit_ahead(self, work: Sequence[Planned], *, expected: int) -> bool:
        """Whether writers the pass found before planning everyone (a full run's changed
        users that need no listing, `reconcile.early`) may be applied now, judged under the
        window's lock as `settle` judges, counting `expected` users to write (the whole
        change, if more); allowed, they are logged against the window, so the rest of the
        pass is counted with them. False: they are left to the pass, planned again and
        counted with the rest as if nothing had been found early."""
        cases = [p.case for p in work]
        if self.state is _State.SHUT or not cases:
            return False
        if self.state is _State.COUNTING:
            verdict = await self._decide(cases, count=max(expected, len(cases)))
            if not verdict.allowed:
                return False
        await self._release(cases)
        return True

    async def _decide(self, cases: Sequence[Case], *, count: int | None = None) -> WriteVerdict:
        """Under the Service's write lock: the guard over these users (`count` of them, if
        more) and the window's other users; allowed ones are logged against the window in
        the same transaction."""
        dry_run, key = self.report.request.dry_run, self.config.service_key
        async with self.sessions.begin() as session:
            if not dry_run:
                await writes.lock_window(session, service_key=key)
            recent = await writes.written_within(
                session,
                service_key=key,
                window=self.config.window,
                run_id=self.report.run_id,
                besides=[c.user_id for c in cases if c.user_id is not None],
            )
            users = [c.user_id for c in cases if c.user_id is not None]
            verdict = guard_writes(
                len(cases) if count is None else count,
                policy=self.config.policy,
                linked=self.linked,
                allow_writes=False,
                written_recently=recent,
                held_earlier=await self._held_earlier(session, users),
            )
            if verdict.allowed and not dry_run:
                await writes.log_applied(
                    session, _writes(cases), service_key=key, run_id=self.report.run_id
                )
        return verdict

    async def _held_earlier(self, session: AsyncSession, users: Sequence[str]) -> int:
        """A run of named users (an event, a follow-up pass) never writes a user another run
        holds: it is under every limit on its own. Bulk runs count held users afresh."""
        if not self.named:
            return 0
        return await writes.held_among(session, service_key=self.config.service_key, user_ids=users)

    async def forget(self, batch: Sequence[Case], *, keep: Sequence[Case]) -> None:
        """Users of a batch the pass looked at and no longer plans to write lose their held
        rows (their source row was put back, say)."""
        if not self.held_before or self.report.request.dry_run:
            return
        kept = [c.user_id for c in keep if c.user_id is not None]
        users = [c.user_id for c in batch if c.user_id is not None]
        async with self.sessions.begin() as session:
            await writes.forget_held(
                session, service_key=self.config.service_key, user_ids=users, keep=kept
            )

    async def forget_vanished(self, source: Source) -> None:
        """A bulk pass covers every user: the held rows of users it could not look at (in
        neither the source nor state) are dropped too (`writes.forget_vanished`)."""
        if self.named or not self.held_before or self.report.request.dry_run:
            return
        async with self.sessions.begin() as session:
            await writes.forget_vanished(
                session, service_key=self.config.service_key, source=source
            )

    def _writes(self, planned: Planned) -> bool:
        return writes_user(planned.actions) or self._lets_go(planned) > 0

    def _lets_go(self, planned: Planned) -> int:
        """The users of the cycle `planned` breaks by letting go of its old remote user."""
        swap = any(
            isinstance(a, DeleteUser) and a.reason is DeleteReason.SWAP for a in planned.actions
        )
        return self.let_go.get(planned.case.user_id or "", 1) if swap else 0

    def _count(self) -> int:
        """The users to write: a user that lets go counts for its whole cycle."""
        return sum(max(1, self._lets_go(p)) for p in self.waiting) + len(self.counted)

    def _cases(self) -> list[Case]:
        return [p.case for p in self.waiting] + self.counted

    async def _shut(self, *, reason: str | None = None) -> None:
        cases, count = self._cases(), self._count()
        self.state, self.waiting, self.counted = _State.SHUT, [], []
        if reason is None:
            reason = guard_writes(
                count, policy=self.config.policy, linked=self.linked, allow_writes=False
            ).reason
        self.reason = reason
        await self._hold(cases)

    async def _hold(self, cases: Sequence[Case]) -> None:
        if not cases:
            return
        held = _writes(cases)
        if self.report.request.dry_run:  # its users are counted done as planned already
            self._count_held(held)  # one pass, no early writes, no follow-up: each user once
            return
        self.report.progress.done += len(cases)
        async with self.sessions.begin() as session:
            fresh = await writes.hold(
                session,
                held,
                service_key=self.config.service_key,
                run_id=self.report.run_id,
                why=self.reason,
            )
        self._count_held([w for w in held if w.user_id in fresh])
        newly = [c for c in cases if c.user_id in fresh]
        await self.recorder.held(held_write_entries(newly, reason=self.reason), self.report)

    def _count_held(self, held: Sequence[writes.Write]) -> None:
        """Each user once a run: a follow-up pass may hold again a user its run held."""
        self.report.hold_writes([(w.user_id, w.identity) for w in held], reason=self.reason)

    async def _release(self, cases: Sequence[Case]) -> None:
        if self.held_before and cases and not self.report.request.dry_run:
            async with self.sessions.begin() as session:
                await writes.release(
                    session,
                    [c.user_id for c in cases if c.user_id is not None],
                    service_key=self.config.service_key,
                )


def _writes(cases: Sequence[Case]) -> list[writes.Write]:
    return [
        writes.Write(user_id=c.user_id, identity=c.local.identity if c.local else None)
        for c in cases
        if c.user_id is not None
    ]
