"""Postgres advisory locks: one run at a time per Service, and (later) the leader.

A session-level advisory lock lives exactly as long as the connection that took it, so a
process killed with SIGKILL releases it when Postgres notices the connection is gone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine


class LockHeld(Exception):
    """Another process holds the lock."""


def lock_key(kind: str, service_key: str) -> str:
    return f"user-sync:{kind}:{service_key}"


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
    """A connection holding the lock for the duration; raises LockHeld if it is taken."""
    async with engine.connect() as connection:
        if not await try_lock(connection, key):
            raise LockHeld(key)
        await connection.commit()
        try:
            yield connection
        finally:
            await connection.rollback()
            await unlock(connection, key)
            await connection.commit()
