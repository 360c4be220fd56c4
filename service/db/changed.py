"""The users a full run may write before its listing ends (`reconcile.early`), in Postgres.

A full run lists every remote user before it plans anyone, but a linked user whose source row
changed since it was last applied (the fingerprint says so) and whose state remembers its remote
user as we last left it (`domain.users.remembered`) needs no listing to be planned: an
incremental run would write it from that memory. `remembered_changed` selects those users, in
the layout of `db.gather`'s selections; `changed_count` counts every active user whose row
changed or that has no state yet (the writes a full run will most likely plan), so the write
guard can judge the early writes against the whole change, not a part of it.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from service.db.gather import Selection, _local_and_state
from service.db.source import Source, per_id
from service.db.vocabulary import remembers_remote


def remembered_changed(*, source: Source) -> Selection:
    """Active users whose source row changed since last applied, linked and synced under the
    same identity (no rename), whose state remembers the remote user."""
    query = f"""
        SELECT {_local_and_state(per_id(source))}
        WHERE l.id IS NOT NULL AND l.active AND l.fingerprint IS DISTINCT FROM s.fingerprint
          AND s.identity = l.identity AND {remembers_remote("s")}
    """
    return Selection(query, {})


async def changed_count(connection: AsyncConnection, *, source: Source) -> int:
    """Active users whose source row changed since last applied, or with no state yet."""
    query = f"""
        SELECT count(*) FROM ({per_id(source)}) l LEFT JOIN sync_state s ON s.user_id = l.id
        WHERE l.active AND (s.user_id IS NULL OR l.fingerprint IS DISTINCT FROM s.fingerprint)
    """
    return int(await connection.scalar(text(query)) or 0)
