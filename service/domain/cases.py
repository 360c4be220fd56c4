"""A `Case` is everything about one internal user; `match_cases` cuts whole tables into them.

Full runs join the source, `sync_state` and the remote snapshot in Postgres
(`service.db.gather`); `match_cases` is the in-memory reference of that join, and a test
(tests/integration/test_gather_reference.py) keeps the two equal on generated worlds.

Ownership: a remote user belongs to the state that links it (`remote_sid`), else to the one that
retires it (`retired_sid`), else to the state that claims its identity for a create that may have
happened unrecorded (see `users.claims`). For a local user, `remote` is the remote user with its
identity, `holder` another user that owns that remote user or claims the identity (then the
user waits: a person's Twilio user is never handed to another person), and `previous` the user
its state links under another identity (a rename), else its `retired_sid` user. With no local
row, `remote` is the user the state owns. Orphans are remote users nobody names or owns.

`copies` counts source rows with the user's id and `holders` active source rows with its
identity: a source that repeats either makes those users bad input.

A run reads its cases from Postgres (`db.gather`), which also says what the lease of the user
checks (`fingerprint` of the source row, `version` of the state), whether a full run's
snapshot may predate the user's state (`stale`) and whether a suspension's grace period is
over (`due`); the run marks `confirm` when another run overlapped its listing
(`reconcile.sides`). `match_cases` leaves those at their defaults.

Identities swapped between users wait on each other (each holds what the other wants): the run
lets one user of each cycle go first (`domain.waits`, `plan.py`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace

from service.domain.users import (
    UNCONFIRMED,
    LocalUser,
    RemoteUser,
    SyncState,
    SyncStatus,
    UserId,
    UserSid,
    claims_identity,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    """Everything about one internal user (see the module docstring)."""

    local: LocalUser | None
    state: SyncState | None
    remote: RemoteUser | None = None
    previous: RemoteUser | None = None
    holder: UserId | None = None
    copies: int = 1
    holders: int = 1
    fingerprint: str | None = None
    """The source row's fingerprint as read (None: no source row, or not read)."""
    version: int | None = None
    """The state's write count when read (None: no state)."""
    stale: bool = False
    """A full run's snapshot may predate this user's state: read its remote side again."""
    confirm: bool = False
    """Read a remote user from a full run's snapshot before linking it without a call: another
    run of the Service overlapped this one since its listing began."""
    due: bool = False
    """The state is suspended and its `delete_after` has passed (the gather asks the database
    clock): the grace period is over."""
    remembered: bool = False
    """`remote` is the user our state links as we last left it (`users.remembered`), not read:
    a 404 on its update means it was deleted behind our back."""

    @property
    def user_id(self) -> UserId | None:
        if self.local is not None:
            return self.local.id
        return self.state.user_id if self.state is not None else None


@dataclass(frozen=True, slots=True)
class _Owners:
    """Who owns what, by the rules of the module docstring."""

    linked: dict[UserSid, UserId]
    retired: dict[UserSid, UserId]
    identity: dict[str, UserId]

    @classmethod
    def of(cls, states: Iterable[SyncState]) -> _Owners:
        owners = cls({}, {}, {})
        for state in sorted(states, key=lambda s: s.user_id, reverse=True):
            if state.remote_sid is not None:
                owners.linked[state.remote_sid] = state.user_id
            if state.retired_sid is not None:
                owners.retired[state.retired_sid] = state.user_id
            if state.identity is not None and claims_identity(state):
                owners.identity[state.identity] = state.user_id
        return owners

    def of_remote(self, remote: RemoteUser) -> UserId | None:
        by_sid = self.linked.get(remote.sid) or self.retired.get(remote.sid)
        return by_sid or self.identity.get(remote.identity)

    def holder(self, me: UserId, identity: str, remote: RemoteUser | None) -> UserId | None:
        for owner in (
            self.linked.get(remote.sid) if remote else None,
            self.retired.get(remote.sid) if remote else None,
            self.identity.get(identity),
        ):
            if owner is not None and owner != me:
                return owner
        return None

    def sid_owned_by_other(self, sid: UserSid, me: UserId) -> bool:
        return self.linked.get(sid, me) != me or self.retired.get(sid, me) != me


def match_cases(
    local: Iterable[LocalUser],
    remote: Iterable[RemoteUser],
    states: Iterable[SyncState],
) -> tuple[list[Case], list[RemoteUser]]:
    """Cases ordered by user id, orphans by identity then sid. A repeated local id keeps one
    of its rows (which one is not specified: such a user is bad input whatever it holds)."""
    rows = list(local)
    copies = Counter(user.id for user in rows)
    holders = Counter(user.identity for user in rows if user.active)
    locals_by_id: dict[UserId, LocalUser] = {}
    for user in rows:
        locals_by_id.setdefault(user.id, user)
    remotes = list(remote)
    states_by_id = {state.user_id: state for state in states}
    world = _World(
        by_sid={user.sid: user for user in remotes},
        by_identity={user.identity: user for user in remotes},
        owners=_Owners.of(states_by_id.values()),
    )
    cases = []
    for user_id in sorted(locals_by_id.keys() | states_by_id.keys()):
        found = locals_by_id.get(user_id)
        case = world.case(found, states_by_id.get(user_id))
        if case is not None and found is not None:
            case = _counted(case, copies=copies[user_id], holders=holders[found.identity])
        if case is not None:
            cases.append(case)
    return cases, _orphans(remotes, rows, world.owners)


def _counted(case: Case, *, copies: int, holders: int) -> Case:
    return replace(case, copies=copies, holders=holders)


@dataclass(frozen=True, slots=True)
class _World:
    by_sid: dict[UserSid, RemoteUser]
    by_identity: dict[str, RemoteUser]
    owners: _Owners

    def case(self, local: LocalUser | None, state: SyncState | None) -> Case | None:
        linked = self._linked(state)
        retired = self._get(state.retired_sid if state else None)
        if local is None:
            assert state is not None
            if state.status is SyncStatus.DELETED and linked is None and retired is None:
                return None
            return Case(local=None, state=state, remote=linked, previous=retired)
        current = self.by_identity.get(local.identity)
        renamed = linked is not None and (current is None or linked.sid != current.sid)
        return Case(
            local=local,
            state=state,
            remote=current,
            previous=linked if renamed else retired,
            holder=self.owners.holder(local.id, local.identity, current),
        )

    def _linked(self, state: SyncState | None) -> RemoteUser | None:
        """The user our state links, or the one it claims by identity if nobody links it."""
        if state is None:
            return None
        if state.remote_sid is not None:
            return self._get(state.remote_sid)
        if state.identity is None or state.status not in UNCONFIRMED:
            return None
        claimed = self.by_identity.get(state.identity)
        if claimed is None or self.owners.sid_owned_by_other(claimed.sid, state.user_id):
            return None
        return claimed

    def _get(self, sid: UserSid | None) -> RemoteUser | None:
        return self.by_sid.get(sid) if sid is not None else None


def _orphans(
    remotes: list[RemoteUser], local: Iterable[LocalUser], owners: _Owners
) -> list[RemoteUser]:
    identities = {user.identity for user in local}
    orphans = [r for r in remotes if r.identity not in identities and owners.of_remote(r) is None]
    return sorted(orphans, key=lambda r: (r.identity, r.sid))
