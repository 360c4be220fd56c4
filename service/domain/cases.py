"""A `Case` is everything about one internal user; `match_cases` cuts whole tables into them.

Full runs join the source, `sync_state` and the remote snapshot in Postgres
(`service.db.gather`); `match_cases` is the in-memory reference of that join, for one-user runs
and tests, and defines what the join must produce. For a local user, `remote` is the remote
user with its identity and `previous` the one the state links if that is another user (a
rename), else the `retired_sid` user. With no local row, `remote` is the user the state links.
Orphans are remote users no local identity names and no state links or retires.

Limit: identities swapped between two users in one run are not supported (each would adopt
the other's old user); a swap done in two runs is.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from service.domain.users import LocalUser, RemoteUser, SyncState, SyncStatus, UserId, UserSid


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    """Everything about one internal user.

    `remote`: the remote user with `local.identity` (with no local row: the one the state
    links). `previous`: a remote user the state links under another identity (a rename) or the
    `retired_sid` user of an unfinished rename, if it still exists.
    """

    local: LocalUser | None
    state: SyncState | None
    remote: RemoteUser | None = None
    previous: RemoteUser | None = None

    @property
    def user_id(self) -> UserId | None:
        if self.local is not None:
            return self.local.id
        return self.state.user_id if self.state is not None else None


def match_cases(
    local: Iterable[LocalUser],
    remote: Iterable[RemoteUser],
    states: Iterable[SyncState],
) -> tuple[list[Case], list[RemoteUser]]:
    """Cases ordered by user id, orphans by identity then sid."""
    locals_by_id = {user.id: user for user in local}
    remotes = list(remote)
    by_sid = {user.sid: user for user in remotes}
    by_identity = {user.identity: user for user in remotes}
    states_by_id = {state.user_id: state for state in states}
    cases = []
    for user_id in sorted(locals_by_id.keys() | states_by_id.keys()):
        case = _case(
            locals_by_id.get(user_id),
            states_by_id.get(user_id),
            by_sid=by_sid,
            by_identity=by_identity,
        )
        if case is not None:
            cases.append(case)
    return cases, _orphans(remotes, locals_by_id.values(), states_by_id.values())


def _case(
    local: LocalUser | None,
    state: SyncState | None,
    *,
    by_sid: dict[UserSid, RemoteUser],
    by_identity: dict[str, RemoteUser],
) -> Case | None:
    linked = _get(by_sid, state.remote_sid if state else None)
    retired = _get(by_sid, state.retired_sid if state else None)
    if local is None:
        assert state is not None
        if state.status is SyncStatus.DELETED and linked is None and retired is None:
            return None
        return Case(local=None, state=state, remote=linked, previous=retired)
    current = by_identity.get(local.identity)
    renamed = linked is not None and (current is None or linked.sid != current.sid)
    previous = linked if renamed else retired
    return Case(local=local, state=state, remote=current, previous=previous)


def _get(by_sid: dict[UserSid, RemoteUser], sid: UserSid | None) -> RemoteUser | None:
    return by_sid.get(sid) if sid is not None else None


def _orphans(
    remotes: list[RemoteUser], local: Iterable[LocalUser], states: Iterable[SyncState]
) -> list[RemoteUser]:
    identities = {user.identity for user in local}
    referenced: set[UserSid | None] = set()
    for state in states:
        referenced |= {state.remote_sid, state.retired_sid}
    orphans = [r for r in remotes if r.identity not in identities and r.sid not in referenced]
    return sorted(orphans, key=lambda r: (r.identity, r.sid))
