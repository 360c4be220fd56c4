"""The leader's own database session: one dedicated asyncpg connection, outside any pool.

It holds the session-level advisory lock that makes a replica the leader and LISTENs for
`user_sync_event`. Both live exactly as long as the connection: when Postgres restarts, the
network drops or the process is killed, the lock is released and the listen is gone, so the
caller treats any failure here as "step down, reconnect, start again". TCP keepalives are set
tight on the server side, so a leader whose host vanished without closing its socket loses the
lock within about 11 seconds (5 s idle, then 3 probes 2 s apart), inside the 15 s takeover goal.
"""

from __future__ import annotations

from collections.abc import Callable

import asyncpg

from service.db import engine
from service.db.events import CHANNEL

Connection = asyncpg.Connection

CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)
"""What a dead or unreachable server raises; anything else is a bug."""

KEEPALIVES = {
    "tcp_keepalives_idle": "5",
    "tcp_keepalives_interval": "2",
    "tcp_keepalives_count": "3",
}


async def connect(url: str, *, application_name: str, connect_timeout: float) -> Connection:
    """The URL's own `connect_timeout` and `application_name` win over the ones given here."""
    return await engine.connect(
        url,
        application_name=application_name,
        connect_timeout=connect_timeout,
        server_settings=KEEPALIVES,
    )


async def try_lock(connection: Connection, key: str) -> bool:
    """Take the session advisory lock named `key` if it is free (same hash as `db.locks`)."""
    taken = await connection.fetchval("SELECT pg_try_advisory_lock(hashtextextended($1, 0))", key)
    return bool(taken)


async def ping(connection: Connection) -> None:
    """A round trip; raises one of CONNECTION_ERRORS if the session is gone."""
    await connection.fetchval("SELECT 1")


async def listen(connection: Connection, wake: Callable[[], None]) -> None:
    """Call `wake()` on every NOTIFY of the event channel (it runs on the event loop)."""

    def on_notify(*_: object) -> None:
        wake()

    await connection.add_listener(CHANNEL, on_notify)


def on_lost(connection: Connection, callback: Callable[[], None]) -> None:
    """Call `callback()` as soon as the driver notices the connection closed."""

    def on_terminate(_: object) -> None:
        callback()

    connection.add_termination_listener(on_terminate)


def drop(connection: Connection) -> None:
    """Close at once, without a goodbye: the lock is released when the server sees it."""
    if not connection.is_closed():
        connection.terminate()
