"""The last check before anything is deleted: were the reads whole, and is the count sane?

A reconcile that read half the source would see the other half as "removed"; a bug or a
truncated view can make every user look gone. So deletions are all-or-nothing per run: if the
reads were incomplete, or the deletions of this run together with those already made within
the rolling window (`deleted_recently`, counted by the caller across every run) would exceed
`max_deletes_per_run` or `max_deletes_percent` of the remote users in reach, none happens and
the verdict says why. A mass deletion that arrives as a trickle of one-user runs is held as
soon as the window's budget is spent. `allow_deletes` (an operator's explicit yes) lifts the
limits, never an incomplete read. Only deleting remote users nobody here knows (mirror mode)
needs the complete remote listing; users we link are found by sid. A rename's retirement of the
old identity is not a deletion of a user and is never held. A suspension (the first step of a
deletion with a grace period, `domain.suspension`) counts like a deletion, as Entra counts
disables.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from service.domain.actions import DeleteReason, DeleteUser, Removal
from service.domain.policy import DeleteMode, Policy


@dataclass(frozen=True, slots=True, kw_only=True)
class DeletionVerdict:
    allowed: tuple[Removal, ...]
    held: tuple[Removal, ...] = ()
    reason: str | None = None
    """Why `held` is not empty, as a sentence for the run record and the operator."""


@dataclass(frozen=True, slots=True, kw_only=True)
class _Reads:
    source_complete: bool
    remote_complete: bool


def guard_deletions(
    deletions: Sequence[Removal],
    *,
    policy: Policy,
    remote_total: int,
    source_complete: bool,
    remote_complete: bool,
    allow_deletes: bool,
    deleted_recently: int = 0,
    held_earlier: int = 0,
) -> DeletionVerdict:
    """Which of this run's deletions may go ahead. `remote_total`: remote users in reach;
    `deleted_recently`: guarded deletions already made within the window; `held_earlier`: how
    many of these deletions a run (an earlier pass of this one, or another run) holds now."""
    free = tuple(d for d in deletions if not d.guarded)
    guarded = tuple(d for d in deletions if d.guarded)
    if not guarded:
        return DeletionVerdict(allowed=free)
    unknown = any(
        isinstance(d, DeleteUser) and d.reason is DeleteReason.UNKNOWN_REMOTE for d in guarded
    )
    reads = _Reads(source_complete=source_complete, remote_complete=remote_complete or not unknown)
    reason = _read_problem(policy, reads) or _mode_problem(policy)
    if reason is None and held_earlier and not allow_deletes:
        reason = HELD_EARLIER.format(held_earlier, what="deletions", flag="allow_deletes")
    if reason is None and not allow_deletes:
        reason = _limit_problem(
            len(guarded), policy=policy, remote_total=remote_total, earlier=deleted_recently
        )
    if reason is None:
        return DeletionVerdict(allowed=free + guarded)
    return DeletionVerdict(allowed=free, held=guarded, reason=reason)


HELD_EARLIER = (
    "{0} of these {what} are held already, waiting for an operator: nothing of the run is"
    " applied until a run with {flag} releases them"
)
"""A held user stays held whatever a later run counts: a one-user run (an event, a follow-up
pass for a user waiting on the held one's identity) would be under every limit on its own."""


def _read_problem(policy: Policy, reads: _Reads) -> str | None:
    if not reads.source_complete:
        return (
            "the source read this run was incomplete or failed, so nothing is deleted"
            " (allow_deletes does not override this)"
        )
    if policy.delete_mode is DeleteMode.MIRROR and not reads.remote_complete:
        return (
            "mirror mode needs the complete remote user listing and this run did not read it,"
            " so nothing is deleted (allow_deletes does not override this)"
        )
    return None


def _mode_problem(policy: Policy) -> str | None:
    if policy.delete_mode is DeleteMode.NEVER:
        return "the delete mode is never, so nothing is deleted"
    return None


def _limit_problem(count: int, *, policy: Policy, remote_total: int, earlier: int) -> str | None:
    """Percent of the users in reach; there are at least as many as we are about to delete."""
    total = count + earlier
    counted = f"{count} deletions" + (f" (and {earlier} earlier in the window)" if earlier else "")
    problems = []
    if total > policy.max_deletes_per_run:
        problems.append(f"{counted} exceed max_deletes_per_run ({policy.max_deletes_per_run})")
        counted = f"{total} deletions"
    known = max(remote_total, total)
    if total * 100 > policy.max_deletes_percent * known:
        share = total * 100 / known
        problems.append(
            f"{counted} are {share:.1f}% of the {known} remote users in reach,"
            f" over max_deletes_percent ({policy.max_deletes_percent:g}%)"
        )
    if not problems:
        return None
    return "; ".join(problems) + ": nothing is deleted; rerun with allow_deletes to apply them"
