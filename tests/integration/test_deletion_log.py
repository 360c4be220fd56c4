"""The deletion log after a run stopped in its deletion phase: a deletion whose work never
started is not logged as made (it would say so to an auditor, and count against the window)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from service.db import deletions
from service.domain.cases import Case
from service.domain.users import RemoteUser, UserSid
from service.reconcile.verdict import not_tried


def remote(sid: str) -> RemoteUser:
    return RemoteUser(sid=UserSid(sid), identity=sid.lower(), friendly_name=None, role_sid=None,
                      attributes="{}")  # fmt: skip


async def test_deletions_never_started_stop_counting_and_the_started_ones_stay(db: Any) -> None:
    sids = [f"US{n:032d}" for n in range(3)]
    logged = [deletions.Deletion(sid=s, user_id=f"u{n}", identity=f"u{n}", reason="inactive")
              for n, s in enumerate(sids)]  # fmt: skip
    async with db.begin() as session:
        await deletions.log_applied(session, logged, service_key="IS-log", run_id=7)

    started = [Case(local=None, state=None, remote=remote(sids[0]))]  # then SIGTERM
    await not_tried(db, set(sids), started=started, run_id=7)

    async with db() as session:
        rows = await session.execute(text("SELECT sid, state FROM sync_deletion ORDER BY sid"))
        states = {sid: state for sid, state in rows}
    assert states == {sids[0]: "applied", sids[1]: "failed", sids[2]: "failed"}
