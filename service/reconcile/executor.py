"""Applying one user's plan through the Conversations client.

Every API failure becomes a per-user `Failure` in the outcome and never stops the run; any
other exception is a bug and propagates. Two answers re-plan the user with what the API just
told us, once: 409 on create (the user exists: fetch it and, unless another user owns it, adopt
it, updating what differs) and 404 on update (the user vanished: create it again; if the user
was planned from what our state remembers, not read, look its identity up first, since someone
may have made it again). 404 on
delete means already gone. A rename deletes the old remote user only after the new one exists;
if that delete fails the old sid is kept as `retired_sid` and retried by later runs, so we
never leave neither. The run holds the user's lease throughout (`db.leases`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace

from service.conversations import answers
from service.conversations import errors as api
from service.conversations.client import ConversationsClient
from service.domain.actions import (
    Action,
    CreateUser,
    DeleteReason,
    DeleteUser,
    LinkUser,
    UpdateUser,
)
from service.domain.audit import AuditPolicy, entries_of
from service.domain.cases import Case
from service.domain.outcome import Failure, Outcome, Result, unchanged
from service.domain.plan import plan_case
from service.domain.policy import Policy
from service.domain.roles import RoleDirectory
from service.domain.users import RemoteUser, UserId, UserSid

HolderOf = Callable[[UserId, RemoteUser], Awaitable[UserId | None]]
"""Which other user owns this remote user (or claims its identity), if any: asked before
adopting a user a 409 revealed."""


def failure(action: str, error: api.ConversationsError) -> Failure:
    if isinstance(error, api.ApiError):
        return Failure(
            message=str(error),
            action=action,
            http_status=error.status,
            twilio_code=error.code,
            request_id=error.request_id,
        )
    return Failure(message=str(error), action=action)


class Executor:
    """Applies plans for users; stateless between users apart from its dependencies."""

    def __init__(
        self,
        client: ConversationsClient,
        *,
        policy: Policy,
        holder_of: HolderOf,
        roles: Callable[[], RoleDirectory],
        audit: AuditPolicy | None = None,
    ) -> None:
        """`roles`: the Service's roles as the run has read them by now, to plan again with
        what the users were planned with (and to name them in the audit trail); `audit`:
        the outcomes carry the audit entries of their writes (None: the trail is off)."""
        self._audit = audit
        self._client = client
        self._policy = policy
        self._holder_of = holder_of
        self._roles = roles

    async def apply(self, case: Case, actions: tuple[Action, ...]) -> Outcome:
        outcome = unchanged(case)
        with answers.collecting() as answered:
            for action in actions:
                outcome = await self._apply_one(outcome, action, replanned=False)
                if outcome.failures:
                    break
        if self._audit is None:
            return outcome
        trail = entries_of(
            outcome.actions,
            answered,
            roles=self._roles(),
            policy=self._audit,
            created=outcome.remote_sid,
            identities={r.sid: r.identity for r in (case.remote, case.previous) if r is not None},
        )
        return replace(outcome, audit=tuple(trail))

    async def _apply_one(self, outcome: Outcome, action: Action, *, replanned: bool) -> Outcome:
        outcome = replace(outcome, actions=(*outcome.actions, action))
        if isinstance(action, LinkUser):
            return await self._link(outcome, action, replanned=replanned)
        if isinstance(action, CreateUser):
            return await self._create(outcome, action, replanned=replanned)
        if isinstance(action, UpdateUser):
            return await self._update(outcome, action, replanned=replanned)
        return await self._delete(outcome, action)

    async def _link(self, outcome: Outcome, action: LinkUser, *, replanned: bool) -> Outcome:
        """Record a remote user as ours. One the state did not link yet, seen only in a full
        run's listing while other runs overlapped, is read first: another run may have deleted
        it since, and linking a dead sid (then retiring the old one) would leave neither."""
        state = outcome.case.state
        if outcome.case.confirm and action.sid != (state.remote_sid if state else None):
            try:
                await self._client.fetch_user(action.sid)
            except api.NotFound:
                if replanned:
                    return _failed(outcome, "fetch", "the user vanished while being linked")
                return await self._replan(outcome, identity=None, result=Result.CREATED)
            except api.ConversationsError as e:
                return replace(outcome, failures=(failure("fetch", e),))
        return await self._retire(_linked(outcome, action), action.retires)

    async def _create(self, outcome: Outcome, action: CreateUser, *, replanned: bool) -> Outcome:
        try:
            user = await self._client.create_user(
                action.identity,
                friendly_name=action.friendly_name,
                attributes=action.attributes_json,
                role_sid=action.role_sid,
            )
        except api.AlreadyExists:
            claimed = _creating(outcome, action)
            if replanned:
                return _failed(claimed, "create", "the user exists but could not be adopted")
            return await self._replan(claimed, identity=action.identity, result=Result.ADOPTED)
        except api.ConversationsError as e:  # it may exist anyway: keep the claim the lease took
            return replace(_creating(outcome, action), failures=(failure("create", e),))
        created = replace(
            outcome,
            result=Result.CREATED,
            remote_sid=user.sid,
            identity=user.identity,
            retired_sid=None,
            managed_keys=action.managed_keys,
            wrote=True,
            seen=user if action.answered_as_meant(user) else None,
        )
        return await self._retire(created, action.retires)

    async def _update(self, outcome: Outcome, action: UpdateUser, *, replanned: bool) -> Outcome:
        try:
            user = await self._client.update_user(action.sid, **action.parameters())
        except api.NotFound:
            if action.suspends is not None:  # gone already: what the grace period ends in
                return replace(outcome, result=Result.DELETED, remote_sid=None)
            if replanned:
                return _failed(outcome, "update", "the user vanished while being updated")
            # planned from memory, not a read: someone may have made its identity again since
            look_up = action.identity if outcome.case.remembered else None
            return await self._replan(outcome, identity=look_up, result=Result.CREATED)
        except api.ConversationsError as e:  # an adopted user is ours from the lease on
            return replace(
                outcome,
                remote_sid=action.sid,
                identity=action.identity,
                retired_sid=action.retires or outcome.retired_sid,
                failures=(failure("update", e),),
            )
        result = Result.ADOPTED if action.adopted else Result.UPDATED
        updated = replace(
            outcome,
            result=Result.SUSPENDED if action.suspends else result,
            suspension=action.suspends,
            remote_sid=user.sid,
            identity=user.identity,
            retired_sid=None,
            managed_keys=action.managed_keys,
            wrote=True,
            seen=_as_meant(outcome.case, action, user),
        )
        return await self._retire(updated, action.retires)

    async def _delete(self, outcome: Outcome, action: DeleteUser) -> Outcome:
        try:
            await self._client.delete_user(action.sid)
        except api.NotFound:
            pass  # already gone: the end state we wanted
        except api.ConversationsError as e:
            return replace(outcome, failures=(failure("delete", e),))
        if action.reason is DeleteReason.RENAME:  # the old half of a rename: the link stays
            return replace(outcome, retired_sid=None)
        if action.reason is DeleteReason.SWAP:  # let go of the old identity: nothing linked
            return replace(outcome, result=Result.DELETED, remote_sid=None, retired_sid=None)
        return replace(outcome, result=Result.DELETED, remote_sid=None)

    async def _retire(self, outcome: Outcome, old_sid: UserSid | None) -> Outcome:
        """Second half of a rename: the new user exists, now delete the old one."""
        if old_sid is None or old_sid == outcome.remote_sid:
            return outcome
        try:
            await self._client.delete_user(old_sid)
        except api.NotFound:
            return outcome
        except api.ConversationsError as e:
            return replace(outcome, retired_sid=old_sid, failures=(failure("delete", e),))
        return replace(outcome, retired_sid=None)

    async def _replan(self, outcome: Outcome, *, identity: str | None, result: Result) -> Outcome:
        """Ask the API what is really there, plan again from that, apply once."""
        remote: RemoteUser | None = None
        if identity is not None:
            try:
                remote = await self._client.fetch_user(identity)
            except api.NotFound:
                remote = None
            except api.ConversationsError as e:
                return replace(outcome, failures=(failure("fetch", e),))
        holder = None
        user_id = outcome.case.user_id
        if remote is not None and user_id is not None:
            holder = await self._holder_of(user_id, remote)
        case = replace(outcome.case, remote=remote, holder=holder, remembered=False)
        plan = plan_case(case, policy=self._policy, roles=self._roles())
        if plan.waits_for is not None:
            return replace(
                outcome, remote_sid=None, result=Result.WAITING, waits_for=plan.waits_for
            )
        current = replace(outcome, case=case, result=result)
        if remote is not None:
            current = replace(current, remote_sid=remote.sid, identity=remote.identity)
        for action in plan.actions:
            current = await self._apply_one(current, action, replanned=True)
            if current.failures:
                break
        return replace(current, result=result) if not current.failures else current


def _creating(outcome: Outcome, action: CreateUser) -> Outcome:
    """What the lease of a create claimed: the new identity, unconfirmed, and the old sid of a
    rename as the one to retire."""
    return replace(
        outcome,
        remote_sid=None,
        identity=action.identity,
        retired_sid=action.retires or outcome.retired_sid,
    )


def _as_meant(case: Case, action: UpdateUser, answer: RemoteUser) -> RemoteUser | None:
    """The answer of an update, to remember, if it is what we meant the remote user to be;
    else None (unknown: the next run reads it, and a full run plans it)."""
    base = next((r for r in (case.remote, case.previous) if r and r.sid == action.sid), None)
    return answer if action.answered_as_meant(answer, planned_from=base) else None


def _linked(outcome: Outcome, action: LinkUser) -> Outcome:
    case = outcome.case
    seen = next((r for r in (case.remote, case.previous) if r and r.sid == action.sid), None)
    return replace(
        outcome,
        result=Result.LINKED,
        remote_sid=action.sid,
        identity=action.identity,
        retired_sid=None,
        managed_keys=action.managed_keys,
        seen=seen,
    )


def _failed(outcome: Outcome, action: str, message: str) -> Outcome:
    return replace(outcome, failures=(Failure(message=message, action=action),))
