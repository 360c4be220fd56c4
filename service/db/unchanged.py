"""Which users a full run may leave to Postgres: synced, unchanged on both sides since the run
that last recorded them.

A no-change full run over many users used to turn every joined row into a `Case` and plan it,
only to find nothing to do: seconds of CPU after the listing, at 20,000 users more than the
listing's own time. A user needs no planning when its source row is what the state applied
(`fingerprint`), its remote user (found by the listing under its identity) is the one the state
links and holds exactly the fields the state remembers of it (`seen_*`: the answer of our last
write, or what the last run that planned it read), nothing else of it is in flight (no rename,
suspension, claim by another user, held write or deletion; its state was not written since the
listing began) and the role its row names still resolves to the role the remote user has.
Such a user's plan is "unchanged, already recorded" (`domain.outcome.already_recorded`), and
a test keeps the two equal on tricky data (tests/e2e/test_unchanged_in_sql.py).

Two more things decide a plan besides the rows: the planner's code and who owns the attributes
(`domain.policy.plan_context`). So the skip is allowed only when every run since the last
complete full run (and every run overlapping it) planned under the same context: the first
full run after an upgrade or a switch of attributes mode plans everyone in Python again.
Remote fields the state remembers are written only when they are what we meant them to be
(`reconcile.executor`): a write whose answer shows someone else's change leaves them unknown.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from service.db.source import Source
from service.db.vocabulary import held_here, remembers_remote
from service.domain.roles import RoleDirectory, UnknownRole
from service.domain.runs import RunStatus, Scope
from service.domain.validation import wanted_role

CONDITION = f"""(
    l.id IS NOT NULL AND l.active AND l.copies = 1 AND l.fingerprint = s.fingerprint
    AND {remembers_remote("s")} AND s.identity = l.identity
    AND s.delete_after IS NULL AND s.restore_role_sid IS NULL
    AND s.updated_at < :listed_since
    AND r1.sid = s.remote_sid
    AND r1.friendly_name IS NOT DISTINCT FROM s.seen_friendly_name
    AND NULLIF(r1.role_sid, '') IS NOT DISTINCT FROM NULLIF(s.seen_role_sid, '')
    AND COALESCE(NULLIF(r1.attributes, ''), '{{}}') = s.seen_attributes
    AND o1.user_id IS NULL AND o2.user_id IS NULL AND o3.user_id IS NULL
    AND (l.role IS NULL OR l.role = '' OR EXISTS (
        SELECT 1 FROM unnest(CAST(:role_names AS text[]), CAST(:role_sids AS text[])) v(name, sid)
        WHERE v.name = l.role AND (v.sid IS NULL OR v.sid = r1.role_sid)))
    AND {held_here("l.id", negated=True)}
)"""
"""Over the full run's joins (`db.gather.full`): r1 is the listed remote user with the local
identity, o1-o3 the other states holding it or claiming that identity."""

_DONE = (RunStatus.SUCCEEDED.value, RunStatus.PARTIAL.value)

_MAY_SKIP = text(
    """
    WITH last AS (
        SELECT id, started_at, plan_context FROM sync_run
        WHERE service_key = :key AND scope = :full AND NOT dry_run AND status = ANY(:done)
        ORDER BY id DESC LIMIT 1)
    SELECT COALESCE((SELECT last.plan_context = :context AND NOT EXISTS (
        SELECT 1 FROM sync_run o WHERE o.service_key = :key AND NOT o.dry_run
          AND o.plan_context IS DISTINCT FROM :context
          AND (o.finished_at IS NULL OR o.finished_at >= last.started_at)) FROM last), false)
    """
)


@dataclass(frozen=True, slots=True)
class Unchanged:
    """The parameters of `CONDITION`: each role name the source uses and the sid it resolves
    to (None: the name is blank, the role is left as it is); unknown names are not listed, so
    their users are planned (and reported invalid)."""

    role_names: tuple[str, ...] = ()
    role_sids: tuple[str | None, ...] = ()

    @classmethod
    def resolving(cls, names: Iterable[str], roles: RoleDirectory) -> Unchanged:
        pairs: list[tuple[str, str | None]] = []
        for name in names:
            try:
                pairs.append((name, wanted_role(name, roles=roles)))
            except UnknownRole:
                continue
        return cls(tuple(n for n, _ in pairs), tuple(s for _, s in pairs))

    @property
    def params(self) -> dict[str, object]:
        return {"role_names": list(self.role_names), "role_sids": list(self.role_sids)}


async def may_skip(connection: AsyncConnection, *, service_key: str, context: str) -> bool:
    """Whether the last complete full run, and every run since it began, planned under
    `context` (a run recorded before contexts were has none: it matches nothing)."""
    params = {"key": service_key, "full": Scope.FULL.value, "done": list(_DONE)}
    allowed = await connection.scalar(_MAY_SKIP, {**params, "context": context})
    return bool(allowed)


async def role_names(connection: AsyncConnection, *, source: Source) -> list[str]:
    """The distinct non-empty role texts of the source (one index scan or one pass)."""
    found = await connection.scalars(
        text(
            f"SELECT DISTINCT l.role::text FROM {source.relation} l"
            " WHERE l.role IS NOT NULL AND l.role::text <> ''"
        )
    )
    return list(found)
