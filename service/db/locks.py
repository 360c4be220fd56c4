"""Postgres advisory locks, all named by `lock_key` and hashed alike: one run at a time per
Service and kind (`holding`), each run's liveness (`hold_alive`, `run_is_live`), and the
per-Service transaction locks under which leases are taken and deletions decided
(`hold_for_transaction`: `db.leases`, `db.deletions`). The leader's lock is named here too
(`lock_key("leader", …)`) but taken on the leader's own asyncpg session (`db.channel`).

A session-level advisory lock lives exactly as long as the connection that took it, so a
process killed with SIGKILL releases it when Postgres notices the connection is gone. Each run
holds `user-sync:alive:<run id>` on its lock connection for its whole life: whether a run is
still going is then a question Postgres answers (`run_is_live`), which is what lets a lease or a
`running` record of a killed run lapse at once, whichever process or replica looks.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession


class LockHeld(Exception):
    """Another process holds the lock."""


class LockLost(Exception):
    """The run's lock connection ended (its backend was terminated, say): the run no longer
    holds the Service nor its alive lock, so another run may be writing already."""

    def __init__(self, run_id: int) -> None:
        super().__init__(
            f"run {run_id} lost its lock connection to the database: it no longer holds the"
            " Service (another run may), so it stopped before another write"
        )


def lock_key(kind: str, service_key: str) -> str:
    return f"user-sync:{kind}:{service_key}"


async def hold_for_transaction(session: AsyncSession, key: str) -> None:
    """Wait for the lock `key`, held until the session's transaction ends."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": key}
    )


async def try_lock(connection: AsyncConnection, key: str) -> bool:
    taken = await connection.scalar(
        text("SELECT pg_try_advisory_lock(hashtextextended(:key, 0))"), {"key": key}
    )
    return bool(taken)


async def unlock(connection: AsyncConnection, key: str) -> None:
    await connection.execute(
        text("SELECT pg_advisory_unlock(hashtextextended(:key, 0))"), {"key": key}
    )


@asynccontextmanager
async def holding(engine: AsyncEngine, key: str) -> AsyncIterator[AsyncConnection]:
    """A connection holding the lock for the duration; raises LockHeld if it is taken.

    The connection is the holder's alone (a run takes its alive lock on it too); it goes back to
    the pool holding no advisory lock at all, or not at all: session locks survive a rollback,
    and a pooled session keeps them for as long as the engine lives."""
    async with engine.connect() as connection:
        if not await try_lock(connection, key):
            raise LockHeld(key)
        await connection.commit()
        try:
            yield connection
        except Exception:
            with contextlib.suppress(Exception):  # what ended the holder is what it raises
                await _let_go(connection)
            raise
        except BaseException:
            await _let_go(connection)
            raise
        await _let_go(connection)


async def _let_go(connection: AsyncConnection) -> None:
    """Release every advisory lock of the session; if that fails or is cancelled, end the
    session instead (Postgres then releases them), so that none rides back into the pool."""
    try:
        await connection.rollback()
        await connection.execute(text("SELECT pg_advisory_unlock_all()"))
        await connection.commit()
    except BaseException:
        await connection.invalidate()
        raise


def alive_key(run_id: int) -> str:
    return f"user-sync:alive:{run_id}"


def run_is_live(run: str) -> str:
    """SQL: the run whose id is the expression `run` holds its alive lock (`hold_alive`).

    A one-bigint advisory lock shows in `pg_locks` as classid (high 32 bits) and objid (low),
    objsubid 1. Advisory locks belong to a database, but `pg_locks` shows every database's:
    run ids of another database on the same server (a staging copy, another test run) must
    not keep this database's runs alive."""
    return f"""EXISTS (SELECT 1 FROM pg_locks k WHERE k.locktype = 'advisory' AND k.granted
        AND k.database = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND k.objsubid = 1 AND ((k.classid::bigint << 32) | k.objid::bigint)
            = hashtextextended('user-sync:alive:' || {run}, 0))"""


async def require_alive(session: AsyncSession, run_id: int) -> None:
    """`LockLost` unless run `run_id` holds its alive lock now (`hold_alive`)."""
    live = await session.scalar(
        text(f"SELECT {run_is_live('CAST(CAST(:run AS bigint) AS text)')}"), {"run": run_id}
    )
    if not live:
        raise LockLost(run_id)


async def hold_alive(connection: AsyncConnection, run_id: int) -> None:
    """Take run `run_id`'s alive lock on the run's own lock connection, for its lifetime."""
    await connection.execute(
        text("SELECT pg_advisory_lock(hashtextextended(:key, 0))"), {"key": alive_key(run_id)}
    )
    await connection.commit()
