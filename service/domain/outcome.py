"""What applying one user's plan produced, and the `sync_state` that follows from it (pure).

The executor returns an `Outcome` for every user it touched; `state_record` turns an outcome into
the state to store, and the recorder writes it. An outcome's `remote_sid`, `identity` and
`retired_sid` are the claims the user's state holds afterwards: they start as the state's own
(never another user's remote user, `unchanged`) and each action moves them. Failures keep the
user's last applied fingerprint, remember the attempted one and move the next attempt out
exponentially; after enough attempts a user is quarantined (still retried, at the capped
interval, and visible in status). A waiting user keeps its claims and is looked at again by the
next run.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

from service.domain.actions import Action, Suspension
from service.domain.audit import AuditEntry
from service.domain.backoff import FailureBackoff
from service.domain.cases import Case
from service.domain.suspension import delete_after, role_before, still_suspended
from service.domain.users import (
    UNCONFIRMED,
    RemoteUser,
    SyncState,
    SyncStatus,
    UserId,
    UserSid,
    claims,
    recorded_as,
)


class Result(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    ADOPTED = "adopted"
    LINKED = "linked"
    DELETED = "deleted"
    UNCHANGED = "unchanged"
    FAILED = "failed"
    INVALID = "invalid"
    HELD = "held"
    PLANNED = "planned"
    WAITING = "waiting"
    """Another user still holds this user's identity."""
    DEFERRED = "deferred"
    """Another run holds the user, or changed it after this run planned: left to that run or
    the next one, nothing written."""
    SUSPENDED = "suspended"
    """Gone or inactive locally: put in the suspended role until its grace period ends."""


@dataclass(frozen=True, slots=True)
class Failure:
    message: str
    action: str
    field: str | None = None
    http_status: int | None = None
    twilio_code: int | None = None
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """The end state of one user after this run."""

    case: Case
    result: Result
    remote_sid: UserSid | None = None
    identity: str | None = None
    retired_sid: UserSid | None = None
    managed_keys: frozenset[str] = frozenset()
    failures: tuple[Failure, ...] = field(default=())
    waits_for: UserId | None = None
    leased: bool = False
    """The run holds this user's lease: its state is written (which releases the lease)."""
    suspension: Suspension | None = None
    """The suspension this run applied (`Result.SUSPENDED`)."""
    wrote: bool = False
    """The run created or updated the remote user record (what Twilio bills as active)."""
    actions: tuple[Action, ...] = ()
    """The actions the executor tried for this user, in order (a re-plan's too)."""
    audit: tuple[AuditEntry, ...] = ()
    """The audit trail's entries of this user's writes (`domain.audit`)."""
    seen: RemoteUser | None = None
    """The user's own remote user as we leave it: the answer of this run's write, else what
    the run read (or remembered). The state records its fields (`SyncState.seen_attributes`)."""

    @property
    def user_id(self) -> UserId | None:
        return self.case.user_id


NOT_RECORDED = frozenset({Result.HELD, Result.PLANNED, Result.DEFERRED})


def state_record(outcome: Outcome, *, now: datetime, backoff: FailureBackoff) -> SyncState | None:
    """The row to store for a leased user (writing it releases the lease); None for results
    that write nothing (held, planned, deferred) or a user without an id."""
    user_id = outcome.user_id
    if user_id is None or outcome.result in NOT_RECORDED:
        return None
    if outcome.failures:
        return _failed(outcome, user_id, now=now, backoff=backoff)
    if outcome.result is Result.WAITING:
        return _waiting(outcome, user_id, now=now)
    return _succeeded(outcome, user_id, now=now)


def already_recorded(outcome: Outcome) -> bool:
    """An unchanged user whose stored state already says all of this, for the source row as
    read: nothing to write."""
    state = outcome.case.state
    if outcome.result is Result.UNCHANGED and _still_suspended(outcome) and state is not None:
        return (
            state.status is SyncStatus.SUSPENDED and state.fingerprint == outcome.case.fingerprint
        )
    return (
        outcome.result is Result.UNCHANGED
        and state is not None
        and state.fingerprint == outcome.case.fingerprint
        and _remembers(state, _seen(outcome))
        and recorded_as(
            state,
            sid=outcome.remote_sid,
            identity=outcome.identity,
            managed_keys=outcome.managed_keys,
        )
    )


def _succeeded(outcome: Outcome, user_id: UserId, *, now: datetime) -> SyncState:
    gone = outcome.result is Result.DELETED or outcome.remote_sid is None
    local = outcome.case.local
    if gone and local is not None and local.active:  # let go first (a swap): not done yet
        return _let_go(outcome, user_id, now=now)
    midway = not gone and _midway(outcome)
    state = outcome.case.state
    status = SyncStatus.PENDING if midway else SyncStatus.SYNCED
    suspended = not gone and _still_suspended(outcome)
    record = SyncState(
        user_id=user_id,
        remote_sid=None if gone else outcome.remote_sid,
        identity=outcome.identity,
        fingerprint=state.fingerprint if midway and state else outcome.case.fingerprint,
        attempted_fingerprint=outcome.case.fingerprint,
        status=SyncStatus.DELETED if gone else SyncStatus.SUSPENDED if suspended else status,
        attempts=0,
        last_error_code=None,
        last_error_message=None,
        next_attempt_at=now if midway else None,
        last_synced_at=now,
        retired_sid=outcome.retired_sid,
        managed_keys=outcome.managed_keys,
        delete_after=delete_after(state, outcome.suspension, now=now) if suspended else None,
        restore_role_sid=role_before(state, outcome.suspension) if suspended else None,
    )
    return _remembering(record, None if gone or suspended else _seen(outcome))


def _seen(outcome: Outcome) -> RemoteUser | None:
    """What the state should remember of the remote user it links afterwards: the outcome's
    `seen`, if that is the user linked under the identity recorded."""
    seen = outcome.seen
    if seen is None or seen.sid != outcome.remote_sid or seen.identity != outcome.identity:
        return None
    return seen


def _remembers(state: SyncState, seen: RemoteUser | None) -> bool:
    """The state holds `seen`'s fields already (what `_remembering` would write), whether or
    not its status lets a run plan from them: a state that cannot (midway through a rename)
    is not rewritten on every full run for it."""
    return _remembering(state, seen) == state


def _remembering(record: SyncState, seen: RemoteUser | None) -> SyncState:
    """`record` with `seen`'s fields as the remote user it remembers (None: unknown, so the
    next run reads it)."""
    if seen is None:
        return replace(record, seen_friendly_name=None, seen_role_sid=None, seen_attributes=None)
    return replace(
        record,
        seen_friendly_name=seen.friendly_name,
        seen_role_sid=seen.role_sid,
        seen_attributes=seen.attributes,
    )


def _still_suspended(outcome: Outcome) -> bool:
    case = outcome.case
    return still_suspended(
        case.state, local=case.local, remote_sid=outcome.remote_sid, suspension=outcome.suspension
    )


def _let_go(outcome: Outcome, user_id: UserId, *, now: datetime) -> SyncState:
    """An active user left without a remote user (it let go of its old identity for others):
    pending, due at once, with no claim, so the next pass or run creates its identity."""
    state = outcome.case.state
    return SyncState(
        user_id=user_id,
        remote_sid=None,
        identity=None,
        fingerprint=state.fingerprint if state else None,
        attempted_fingerprint=outcome.case.fingerprint,
        status=SyncStatus.PENDING,
        attempts=0,
        last_error_code=None,
        last_error_message=None,
        next_attempt_at=now,
        last_synced_at=state.last_synced_at if state else None,
        retired_sid=outcome.retired_sid,
        managed_keys=state.managed_keys if state else frozenset(),
    )


def _midway(outcome: Outcome) -> bool:
    """Still linked to the remote user under the identity the source row has left (the first
    step of a second rename): not synced, and due at once, so the next run goes on."""
    local, state = outcome.case.local, outcome.case.state
    return (
        local is not None
        and state is not None
        and outcome.remote_sid == state.remote_sid
        and outcome.identity == state.identity
        and outcome.identity != local.identity
    )


def _failed(
    outcome: Outcome, user_id: UserId, *, now: datetime, backoff: FailureBackoff
) -> SyncState:
    state = outcome.case.state
    attempts = (state.attempts if state else 0) + 1
    delay = backoff.delay(attempts)
    quarantined = backoff.quarantined(attempts)
    last = outcome.failures[-1]
    return SyncState(
        user_id=user_id,
        remote_sid=outcome.remote_sid,
        identity=outcome.identity,
        fingerprint=state.fingerprint if state else None,
        attempted_fingerprint=outcome.case.fingerprint,
        status=SyncStatus.QUARANTINED if quarantined else SyncStatus.FAILED,
        attempts=attempts,
        last_error_code=last.twilio_code,
        last_error_message=last.message,
        next_attempt_at=now + timedelta(seconds=delay),
        last_synced_at=state.last_synced_at if state else None,
        retired_sid=outcome.retired_sid,
        managed_keys=state.managed_keys if state else frozenset(),
        delete_after=state.delete_after if state else None,
        restore_role_sid=state.restore_role_sid if state else None,
    )


def _waiting(outcome: Outcome, user_id: UserId, *, now: datetime) -> SyncState:
    """Keep every claim; say whom the user waits for. A state that may have created a user
    unrecorded keeps its status, so that claim is not dropped."""
    state = outcome.case.state
    unconfirmed = (  # a create of its own may still stand behind the claim it keeps
        state is not None
        and outcome.remote_sid is None
        and outcome.identity is not None
        and state.status in UNCONFIRMED
    )
    identity = outcome.case.local.identity if outcome.case.local else outcome.identity
    return SyncState(
        user_id=user_id,
        remote_sid=outcome.remote_sid,
        identity=outcome.identity,
        fingerprint=state.fingerprint if state else None,
        attempted_fingerprint=outcome.case.fingerprint,
        status=state.status if state and unconfirmed else SyncStatus.WAITING,
        attempts=state.attempts if state else 0,
        last_error_code=None,
        last_error_message=(
            f"waiting: identity {identity!r} is held by user {outcome.waits_for} until that"
            " user's old remote user is deleted"
        ),
        next_attempt_at=now,
        last_synced_at=state.last_synced_at if state else None,
        retired_sid=outcome.retired_sid,
        managed_keys=state.managed_keys if state else frozenset(),
    )


def unchanged(case: Case) -> Outcome:
    """The starting point: the user as gathered, before any action, holding what its state
    holds and was seen to exist (never another user's remote user). A linked user that was
    looked for and not found is gone, and so is the user a create may have made unrecorded:
    the state lets go of it, and of the identity it held."""
    state = case.state
    own = _own(case)  # every run reads the sides it plans from: unread means not there
    return Outcome(
        case=case,
        result=Result.UNCHANGED,
        remote_sid=own.sid if own else None,
        identity=own.identity if own else None,
        retired_sid=_still_retiring(case),
        managed_keys=state.managed_keys if state else frozenset(),
        seen=own,
    )


def _own(case: Case) -> RemoteUser | None:
    """The remote user the state links (or claims) among those read: `remote`, or for a
    renamed user `previous`."""
    remote, previous, state = case.remote, case.previous, case.state
    if remote is not None and claims(state, remote):
        return remote
    if previous is not None and state is not None and previous.sid == state.remote_sid:
        return previous
    return None


def _still_retiring(case: Case) -> UserSid | None:
    """The state's retired sid, if that user still exists (else there is nothing left of it)."""
    state, previous = case.state, case.previous
    if state is None or state.retired_sid is None or previous is None:
        return None
    return state.retired_sid if previous.sid == state.retired_sid else None


def deferred(case: Case) -> Outcome:
    """A user this run leaves alone: another run holds it, or it changed since planned."""
    return replace(unchanged(case), result=Result.DEFERRED)
