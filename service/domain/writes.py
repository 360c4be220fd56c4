"""The write guard: is the number of users a run would create or update sane?

Twilio bills a Conversations user as active for the month when its user record is edited, so
an accidental `UPDATE internal_users SET attributes = …` over 100,000 rows must not silently
make 100,000 users billable. A run that would write more distinct users than
`max_writes_per_run`, or than `max_writes_percent` of the linked users, counted with the users
already written within the rolling window (`written_recently`, across every run), writes none
of them: the writes are held, like a mass deletion, until a run with `allow_writes` (an
operator's explicit yes) releases them.

An **initial sync** is never held: it is a run of a Service this service links no user of yet
(`linked == 0`), whose every user is a create by design. Writes an initial sync or
`allow_writes` made spend no budget (they were expected or asked for), so the runs after them
are not held for the window's rest. The percent's base is the users in reach: those linked
now, or the users to write if there are more (creates), so 100 percent never holds a run; and
a window that writes at most `max_writes_percent_floor` users is never held by the percent (a
Service of five users is not held for one edit).

`exceeds` is the same limits without the window: the runner uses it while it is still counting
a run's writes, since the window can only add to them.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.domain.guards import HELD_EARLIER
from service.domain.policy import Policy


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteVerdict:
    allowed: bool
    guarded: bool
    """Whether the writes count against the window (not an initial sync, not allowed by an
    operator)."""
    reason: str | None = None
    """Why the writes are held, as a sentence for the run record and the operator."""


def initial_sync(*, linked: int) -> bool:
    """A run of a Service none of whose users is linked here yet."""
    return linked == 0


def guard_writes(
    count: int,
    *,
    policy: Policy,
    linked: int,
    allow_writes: bool,
    written_recently: int = 0,
    held_earlier: int = 0,
) -> WriteVerdict:
    """Whether this run's `count` users (none of them among the `written_recently` distinct
    users of the window) may be written; `linked`: users with a remote sid now."""
    if allow_writes or initial_sync(linked=linked):
        return WriteVerdict(allowed=True, guarded=False)
    if count == 0:
        return WriteVerdict(allowed=True, guarded=True)
    if held_earlier:  # `held_earlier` of them wait for an operator already
        earlier = HELD_EARLIER.format(held_earlier, what="users' writes", flag="allow_writes")
        return WriteVerdict(allowed=False, guarded=True, reason=earlier)
    reason = _limit_problem(count, policy=policy, linked=linked, earlier=written_recently)
    return WriteVerdict(allowed=reason is None, guarded=True, reason=reason)


def exceeds(count: int, *, policy: Policy, linked: int) -> bool:
    """Whether `count` users are over a limit whatever the window holds."""
    return not guard_writes(count, policy=policy, linked=linked, allow_writes=False).allowed


def _limit_problem(count: int, *, policy: Policy, linked: int, earlier: int) -> str | None:
    total = count + earlier
    counted = f"{count} users to write" + (
        f" (and {earlier} earlier in the window)" if earlier else ""
    )
    problems = []
    if total > policy.max_writes_per_run:
        problems.append(f"{counted} exceed max_writes_per_run ({policy.max_writes_per_run})")
        counted = f"{total} users"
    known = max(linked, total)
    over_floor = total > policy.max_writes_percent_floor
    if over_floor and total * 100 > policy.max_writes_percent * known:
        problems.append(
            f"{counted} are {total * 100 / known:.1f}% of the {known} users in reach,"
            f" over max_writes_percent ({policy.max_writes_percent:g}%)"
        )
    if not problems:
        return None
    return (
        "; ".join(problems)
        + ": nothing is written (each user written may count as an active user this month);"
        " rerun with allow_writes to apply them"
    )
