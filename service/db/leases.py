"""Leases: a run writes for a user only from a plan that is still current, and alone.

Runs overlap (a full run, an incremental one, event runs, an operator's `--user`, on one replica
or several), and a full run's plan can be minutes old when it is applied. So before any API
call for a user the run takes the user's lease in one statement that compares and sets:

- the source row's fingerprint is still the one planned from (`db.source.fingerprints`),
- the state's `version` (bumped by every write) is still the one read,
- no live run holds the lease (a run is live while its `alive` advisory lock is held: a
  killed process loses it with its connection, so its leases lapse at once),
- the claims the plan needs are free: the identity it creates or adopts is claimed by no other
  state, the sid it adopts is linked or retired by no other state.

The lease writes those claims (a create's identity, moving a renamed user's sid to
`retired_sid`; an adopted sid), so a killed run's create is still ours, and no other user can
take what this one is about to write. Users refused a lease are left to the run that holds them
or to the next run, which re-reads everything. Leases are taken under a per-Service transaction
lock, so two runs never check the same claim at once; the recorder writes the outcome only
where the run still holds the lease, and that write releases it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from service.db import locks
from service.db.source import Source, fingerprints
from service.db.vocabulary import GuardState, claims_identity, sql
from service.domain.users import SyncStatus


@dataclass(frozen=True, slots=True, kw_only=True)
class Claim:
    """What a user's state holds from the lease on: `identity`, and `sid` when adopting a
    remote user (None: a create of `identity`, unconfirmed until recorded); `retired_sid` is
    the old user of a rename."""

    identity: str
    sid: str | None
    retired_sid: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseRequest:
    """Lease `user_id` as planned from `fingerprint` (None: no source row) and state `version`
    (None: no state row), taking `claim` if the plan needs one."""

    user_id: str
    fingerprint: str | None
    version: int | None
    claim: Claim | None = None

    @property
    def key(self) -> str:
        return self.user_id


@dataclass(frozen=True, slots=True, kw_only=True)
class OrphanCheck:
    """Before mirror mode deletes a remote user nobody knew when the run listed it: still
    nobody names its identity in the source, and no state owns it or claims its identity."""

    sid: str
    identity: str

    @property
    def key(self) -> str:
        return self.sid


Lease = LeaseRequest | OrphanCheck


PENDING, SYNCED = sql(SyncStatus.PENDING), sql(SyncStatus.SYNCED)
APPLIED = sql(GuardState.APPLIED)


def _lease_sql(source: Source) -> str:
    return f"""
    WITH u AS (
        SELECT * FROM unnest(CAST(:user_ids AS text[]), CAST(:fingerprints AS text[]),
            CAST(:versions AS bigint[]), CAST(:identities AS text[]), CAST(:sids AS text[]),
            CAST(:retired AS text[]), CAST(:claims AS boolean[]))
            AS u(user_id, fingerprint, version, identity, sid, retired, claims)
    ), cur AS MATERIALIZED ({fingerprints(source, parameter="user_ids")}),
    ok AS (
        SELECT u.* FROM u
        LEFT JOIN cur ON cur.id = u.user_id
        LEFT JOIN sync_state s ON s.user_id = u.user_id
        WHERE cur.fingerprint IS NOT DISTINCT FROM u.fingerprint
          AND s.version IS NOT DISTINCT FROM u.version
          AND (s.lease_run IS NULL OR s.lease_run = :run OR NOT {locks.run_is_live("s.lease_run")})
          AND (NOT u.claims OR NOT EXISTS (SELECT 1 FROM sync_state o
               WHERE o.user_id <> u.user_id AND o.identity = u.identity
                 AND {claims_identity("o")}))
          AND (u.sid IS NULL OR NOT EXISTS (SELECT 1 FROM sync_state o
               WHERE o.remote_sid = u.sid AND o.user_id <> u.user_id))
          AND (u.sid IS NULL OR NOT EXISTS (SELECT 1 FROM sync_state o
               WHERE o.retired_sid = u.sid AND o.user_id <> u.user_id))
          AND (u.sid IS NULL OR NOT EXISTS (SELECT 1 FROM sync_deletion d
               WHERE d.sid = u.sid AND d.state = {APPLIED} AND d.user_id IS NULL
                 AND {locks.run_is_live("d.run_id::text")}))
    )
    INSERT INTO sync_state AS s
        (user_id, identity, remote_sid, retired_sid, status, lease_run, version, updated_at)
    SELECT user_id, identity, sid, retired, {PENDING}, :run, 1, clock_timestamp() FROM ok
    ON CONFLICT (user_id) DO UPDATE SET
        lease_run = :run, version = s.version + 1, updated_at = clock_timestamp(),
        identity = COALESCE(EXCLUDED.identity, s.identity),
        remote_sid = CASE WHEN EXCLUDED.identity IS NULL THEN s.remote_sid
                          ELSE EXCLUDED.remote_sid END,
        retired_sid = COALESCE(EXCLUDED.retired_sid, s.retired_sid),
        status = CASE WHEN EXCLUDED.identity IS NULL THEN s.status
                      WHEN EXCLUDED.remote_sid IS NOT DISTINCT FROM s.remote_sid
                           AND s.status = {SYNCED} THEN {SYNCED}
                      ELSE {PENDING} END
    RETURNING s.user_id
    """


async def take(
    session: AsyncSession,
    requests: Sequence[Lease],
    *,
    run_id: int,
    source: Source,
    service_key: str,
) -> set[str]:
    """Lease what can be leased now; the keys leased (user ids; sids of orphan checks that
    passed). One statement for the users of the batch, one for its orphans.

    Two requests of one batch for the same identity: only the first is tried (the planner
    never makes them; a source that repeats an identity is bad input).
    """
    users = _first_per_claim([r for r in requests if isinstance(r, LeaseRequest)])
    orphans = [r for r in requests if isinstance(r, OrphanCheck)]
    if not users and not orphans:
        return set()
    # Visibility, not durability, is what keeps runs apart: a commit is seen by every other
    # session at once either way. Should Postgres itself crash right after a lease, the claim
    # it lost is found again by identity (`users.claims`), so the lease need not wait for the
    # disk; the outcome records that follow are written durably.
    await session.execute(text("SET LOCAL synchronous_commit = off"))
    await locks.hold_for_transaction(session, locks.lock_key("claims", service_key))
    await locks.require_alive(session, run_id)  # a run that lost its lock leases nothing
    leased: set[str] = set()
    if users:
        found = await session.scalars(text(_lease_sql(source)), _parameters(users, run_id=run_id))
        leased |= set(found)
    if orphans:
        leased |= await _still_orphans(session, orphans, source=source)
    return leased


async def _still_orphans(
    session: AsyncSession, orphans: Sequence[OrphanCheck], *, source: Source
) -> set[str]:
    query = f"""
        SELECT u.sid FROM unnest(CAST(:sids AS text[]), CAST(:identities AS text[]))
            AS u(sid, identity)
        WHERE NOT EXISTS (SELECT 1 FROM {source.relation} l WHERE l.identity::text = u.identity)
          AND NOT EXISTS (SELECT 1 FROM sync_state o WHERE o.remote_sid = u.sid)
          AND NOT EXISTS (SELECT 1 FROM sync_state o WHERE o.retired_sid = u.sid)
          AND NOT EXISTS (SELECT 1 FROM sync_state o
              WHERE o.identity = u.identity AND {claims_identity("o")})
    """
    params = {"sids": [o.sid for o in orphans], "identities": [o.identity for o in orphans]}
    return set(await session.scalars(text(query), params))


def _first_per_claim(requests: Sequence[LeaseRequest]) -> list[LeaseRequest]:
    seen: set[str] = set()
    chosen = []
    for request in requests:
        identity = request.claim.identity if request.claim else None
        if identity is not None and identity in seen:
            continue
        if identity is not None:
            seen.add(identity)
        chosen.append(request)
    return chosen


def _parameters(requests: Sequence[LeaseRequest], *, run_id: int) -> dict[str, object]:
    claims = [r.claim for r in requests]
    return {
        "run": run_id,
        "user_ids": [r.user_id for r in requests],
        "fingerprints": [r.fingerprint for r in requests],
        "versions": [r.version for r in requests],
        "identities": [c.identity if c else None for c in claims],
        "sids": [c.sid if c else None for c in claims],
        "retired": [c.retired_sid if c else None for c in claims],
        "claims": [c is not None for c in claims],
    }


async def release(session: AsyncSession, user_ids: Sequence[str], *, run_id: int) -> None:
    """Give back leases this run holds without writing anything else (a held deletion)."""
    if user_ids:
        await session.execute(
            text(
                "UPDATE sync_state SET lease_run = NULL"
                " WHERE lease_run = :run AND user_id = ANY(CAST(:ids AS text[]))"
            ),
            {"run": run_id, "ids": list(user_ids)},
        )
