"""A run's vocabulary: what is asked (`RunRequest`) and what came of it (`RunReport`).

Triggers (the CLI, the schedule, events, the HTTP API) build requests; reports go back to them
and to the renderers (tables, JSON, metrics). The report is written only through its own methods
(the steps of a run call them as they go), so what each field means is said in one place; its
`progress` is the live view of the run, moved by the steps themselves. Nothing here does I/O.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from service.domain.actions import Removal
from service.domain.audit import AuditEntry
from service.domain.outcome import Failure, Outcome, Result
from service.domain.runs import RunStatus, Scope
from service.reconcile.progress import RunProgress

HELD_SHOWN = 1000
"""Held writes a report (and its run record) names; `writes_held` counts them all."""


class RunInProgress(Exception):
    """Another reconcile of this Service holds the run lock."""


class RunFailed(Exception):
    """A run that failed as a whole; it is recorded and logged already (`report.error` says
    why, naming what to check), so whoever catches this reports it and logs nothing more."""

    def __init__(self, report: RunReport) -> None:
        super().__init__(report.error)
        self.report = report


@dataclass(frozen=True, slots=True)
class RunRequest:
    trigger: str
    scope: Scope
    targets: tuple[str, ...] = ()
    dry_run: bool = False
    allow_deletes: bool = False
    allow_writes: bool = False


@dataclass(slots=True)
class RunReport:
    run_id: int
    request: RunRequest
    status: RunStatus = RunStatus.SUCCEEDED
    counts: Counter[str] = field(default_factory=Counter)
    api_calls: int = 0
    planned: list[str] = field(default_factory=list)
    would_write: int = 0
    """A dry run: the users it would create or update (Twilio bills each as active this month)."""
    written: int = 0
    """Users whose remote record this run created or updated (each once: one outcome a user)."""
    writes_held: int = 0
    """Users the write guard held (or, in a dry run, would hold)."""
    held_writes: list[tuple[str, str | None]] = field(default_factory=list)
    """The first `HELD_SHOWN` of them: (user id, identity)."""
    write_held_reason: str | None = None
    audit: list[AuditEntry] = field(default_factory=list)
    """A dry run: the audit trail entries it would record (it records none)."""
    failures: list[tuple[str, Failure]] = field(default_factory=list)
    held: list[Removal] = field(default_factory=list)
    held_reason: str | None = None
    error: str | None = None
    remote_total: int | None = None
    """Remote users listed by a full run (the base of the percent guard in mirror mode)."""
    unplanned: int = 0
    """Of the `unchanged` users, those a full run left to Postgres (`db.unchanged`)."""
    named_nobody: list[str] = field(default_factory=list)
    """A run of named users: the names (ids or identities) that name nobody, in the source or
    in state."""
    deferred: list[str] = field(default_factory=list)
    """Users left to another run (it held them, or they changed after this run planned)."""
    deferred_keys: set[str] = field(default_factory=set)
    """The ids and identities of `deferred`, as events may name them."""
    waiting: dict[str, str] = field(default_factory=dict)
    """Users waiting for their identity, and the user holding it."""
    progress: RunProgress = field(default_factory=lambda: RunProgress(watched=False))
    replacing: dict[str, Outcome] = field(default_factory=dict)
    """Outcomes counted already that a later outcome of the same user replaces in the counts
    (a full run's early writes, looked at again after the listing: `reconcile.early`)."""
    followed_up: set[str] = field(default_factory=set)
    """The users of the follow-up passes: their outcomes are kept in `replacing`, so that a
    later pass's outcome of the same user replaces them in the counts (bounded: follow-ups
    look at `FOLLOW_UP_LIMIT` users at most)."""
    counted_before: set[str] = field(default_factory=set)
    """Users a follow-up pass looks at again that are not waiting (the holders others waited
    for, the users that let go of an identity): found unchanged now, they are not counted, as
    an earlier pass counted them (a full run looks at everyone) or had no change of theirs to
    count (an incremental or named run, whose holder lay outside its changes or names)."""

    @property
    def users_written(self) -> int:
        """Distinct users the run wrote, or a dry run would write: each may count as an active
        user of the month at Twilio."""
        return self.would_write if self.request.dry_run else self.written

    def listed(self, total: int) -> None:
        """A full run listed `total` remote users."""
        self.remote_total = total

    def left_unchanged(self, users: int) -> None:
        """A full run left `users` unchanged users to Postgres (`db.unchanged`): counted as
        unchanged and done, never planned."""
        self.counts[Result.UNCHANGED] += users
        self.unplanned += users
        self.progress.done += users

    def would_do(
        self,
        lines: Iterable[str],
        *,
        would_write: int,
        users: int | None = None,
        audit: Iterable[AuditEntry] = (),
    ) -> None:
        """A dry run's plan lines and the audit entries it would record; `users`, if given,
        counted `planned` here (the deletion phase's users have no outcome)."""
        self.planned += lines
        self.audit += audit
        self.would_write += would_write
        if users is not None:
            self.counts[Result.PLANNED] += users

    def count(self, outcome: Outcome) -> None:
        """One user's outcome: its result, failures, and whether it was deferred or waits
        (in place of the user's earlier outcome, if it is `replacing`)."""
        if self._counted_already(outcome):
            return
        self._tally(outcome, by=1)
        if outcome.user_id in self.followed_up:  # a later pass may replace it
            self.replacing[outcome.user_id] = outcome
        user_id = outcome.user_id
        if outcome.result is Result.DEFERRED and user_id is not None:
            self.deferred.append(user_id)
            local = outcome.case.local
            self.deferred_keys |= {user_id, local.identity} if local else {user_id}
        if outcome.result is Result.WAITING and user_id is not None and outcome.waits_for:
            self.waiting[user_id] = outcome.waits_for
        self.failures += [(user_id or outcome.identity or "?", f) for f in outcome.failures]

    def _counted_already(self, outcome: Outcome) -> bool:
        """Whether `outcome` adds nothing to the counts (its user's earlier outcome stands);
        else the earlier outcome it replaces, if known, is taken back."""
        user_id = outcome.user_id
        if user_id is None:
            return False
        nothing_more = outcome.result is Result.UNCHANGED and not outcome.failures
        if outcome.result is Result.WAITING and user_id in self.waiting:
            self.waiting[user_id] = outcome.waits_for or self.waiting[user_id]
            return True  # looked at twice in one follow-up (a holder that also let go): one wait
        before = self.replacing.pop(user_id, None)
        if user_id in self.counted_before:
            self.counted_before.discard(user_id)
            if nothing_more:
                if before is not None:
                    self.replacing[user_id] = before
                return True  # counted by the pass that looked at it first, nothing more since
        if before is None:
            return False
        if before.wrote and nothing_more:
            if user_id in self.followed_up:
                self.replacing[user_id] = before
            return True  # written earlier in the run, nothing more since: the write stands
        self._uncount(before)
        return False

    def _tally(self, outcome: Outcome, *, by: int) -> None:
        failed = outcome.failures and outcome.result is not Result.INVALID
        self.written += by * outcome.wrote
        self.counts[Result.FAILED if failed else outcome.result] += by

    def _uncount(self, outcome: Outcome) -> None:
        """Take back what `count` added for `outcome` (a user counted again)."""
        self._tally(outcome, by=-1)
        user_id = outcome.user_id
        if user_id is None:
            return
        if outcome.result is Result.DEFERRED:
            self.deferred = [u for u in self.deferred if u != user_id]
            local = outcome.case.local
            self.deferred_keys -= {user_id, local.identity} if local else {user_id}
        self.waiting.pop(user_id, None)
        self.failures = [(u, f) for u, f in self.failures if u != user_id]

    def hold(self, held: Sequence[Removal], *, reason: str | None) -> int:
        """Deletions the guard held: each counted once, however many passes of the run held
        it again; how many are new."""
        known = {d.sid for d in self.held}
        new = [d for d in held if d.sid not in known]
        if new:
            self.held += new
            self.counts[Result.HELD] += len(new)
        if held:
            self.held_reason = reason
        return len(new)

    def hold_writes(self, users: Sequence[tuple[str, str | None]], *, reason: str | None) -> None:
        """Users whose writes the write guard held."""
        self.writes_held += len(users)
        self.held_writes += users[: max(0, HELD_SHOWN - len(self.held_writes))]
        if users:
            self.write_held_reason = reason

    def follow_up(self, targets: Iterable[str], *, waiting: Mapping[str, str]) -> None:
        """A follow-up pass looks at `targets` again; `waiting`, those `look_again` took out
        of the counts: the others were counted already (`counted_before`)."""
        self.counted_before = set(targets) - waiting.keys()
        self.followed_up |= set(targets)

    def look_again(self) -> dict[str, str]:
        """The waiting users, taken out of the counts and of `waiting` to be looked at again."""
        waiting = dict(self.waiting)
        self.counts[Result.WAITING] -= len(waiting)
        self.waiting.clear()
        for user_id in waiting:  # taken out of the counts here: not to be taken out again
            self.replacing.pop(user_id, None)
        return waiting

    def end(self, status: RunStatus, *, error: str) -> None:
        self.status, self.error = status, error

    def close(self, *, api_calls: int) -> None:
        """The run is over: a succeeded run whose users failed is partial."""
        self.api_calls = api_calls
        bad = self.counts[Result.FAILED] + self.counts[Result.INVALID]
        if self.status is RunStatus.SUCCEEDED and bad:
            self.status = RunStatus.PARTIAL
