"""Does a database session stay one Postgres session? Proven before anything relies on it.

Session advisory locks (the leader lock, each run's `run`/`users` and `alive` locks), LISTEN and
temporary tables belong to one server backend. A pooler in transaction or statement mode
(PgBouncer's `pool_mode = transaction`) hands the client's next transaction to whichever backend
is free: the lock stays behind on a backend that now serves other clients, never released, and a
NOTIFY reaches nobody, all without an error (authentik's pods deadlocked this way). So before a
replica leads, and before a `sync` runs, the session URL is probed:

1. the session takes a probe lock of its own (a random key) and notes its backend's pid;
2. a second connection to the same URL opens a transaction and looks whether *its* backend holds
   the probe lock (a pooler that reuses the most recently freed backend, PgBouncer's default,
   hands it the very backend the first session just used);
3. while that transaction is open, the first session looks again: its backend must still be the
   one that holds the lock.

A direct connection (or a session-mode pool) passes all three; a transaction pooler fails the
second or the third, or cannot run the statements at all (asyncpg's prepared statements do not
survive a change of backend), or makes the third wait for a free backend (a pool of one): each
is a refusal, with what was seen. Lost connections are not refusals: they propagate as they
are, and the caller reconnects.
"""

from __future__ import annotations

import asyncio
import secrets

import asyncpg

from service.db import engine

PROBE_PREFIX = "user-sync:session-check:"
CHECK_SECONDS = 5.0
"""How long the whole probe may take; a pooler with no free backend makes it wait for ever."""
ADVICE = (
    "session advisory locks and LISTEN need one Postgres session for the connection's life, "
    "which a pooler in transaction or statement mode (PgBouncer) does not keep: set "
    "USERSYNC_LEADER_DATABASE_URL to a direct connection to Postgres (or a session-mode pool)"
)

_TAKE = "SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS taken, pg_backend_pid() AS pid"
_HELD = """SELECT pg_backend_pid() AS pid, EXISTS (SELECT 1 FROM pg_locks k
    WHERE k.locktype = 'advisory' AND k.granted AND k.pid = pg_backend_pid() AND k.objsubid = 1
      AND ((k.classid::bigint << 32) | k.objid::bigint) = hashtextextended($1, 0)) AS held"""
_RELEASE = "SELECT pg_advisory_unlock(hashtextextended($1, 0))"


def _lost(error: BaseException) -> bool:
    """A connection that is gone, as opposed to statements a pooler could not run."""
    return isinstance(error, OSError | asyncpg.InterfaceError | asyncpg.PostgresConnectionError)


async def session_problem(
    connection: asyncpg.Connection, *, url: str, application_name: str
) -> str | None:
    """None when `connection` (opened from `url`) keeps its session; else what was seen."""
    key = PROBE_PREFIX + secrets.token_hex(8)
    try:
        async with asyncio.timeout(CHECK_SECONDS):
            return await _probe(connection, key, url=url, application_name=application_name)
    except TimeoutError:
        return (
            f"the check did not finish within {CHECK_SECONDS:g} s: a pooler with no free server "
            "connection for the session's next statement, or a very slow database"
        )
    except asyncpg.PostgresError as e:
        if _lost(e):
            raise
        return f"the session's statements failed: {type(e).__name__}: {e}".splitlines()[0]


async def _probe(
    connection: asyncpg.Connection, key: str, *, url: str, application_name: str
) -> str | None:
    taken = await connection.fetchrow(_TAKE, key)
    if taken is None or not taken["taken"]:
        return "the session could not take a lock nobody else knows"
    other = await engine.connect(url, application_name=f"{application_name}-check")
    try:
        async with other.transaction():
            elsewhere = await other.fetchrow(_HELD, key)
            again = await connection.fetchrow(_HELD, key)
    finally:
        other.terminate()
    await connection.fetchval(_RELEASE, key)
    return _verdict(taken["pid"], elsewhere, again)


def _verdict(
    pid: int, elsewhere: asyncpg.Record | None, again: asyncpg.Record | None
) -> str | None:
    if elsewhere is not None and elsewhere["held"]:
        return f"another connection was given the backend (pid {pid}) holding the session's lock"
    if again is None or not again["held"] or again["pid"] != pid:
        moved = "?" if again is None else again["pid"]
        return f"the session's lock was taken on backend {pid}, its next statement ran on {moved}"
    return None


async def url_problem(url: str, *, application_name: str) -> str | None:
    """`session_problem` on a connection of its own (what a `sync` checks before it runs)."""
    connection = await engine.connect(url, application_name=application_name)
    try:
        return await session_problem(connection, url=url, application_name=application_name)
    finally:
        connection.terminate()


_WHICH = """SELECT current_database() AS name, pg_postmaster_start_time() AS started,
    (SELECT oid FROM pg_database WHERE datname = current_database()) AS oid"""
"""Which database of which server a connection reached (the server's start time tells two
servers apart, behind a pooler too; the port does not)."""


async def other_database(connection: asyncpg.Connection, *, main_url: str) -> str | None:
    """None when `connection` (the session URL's) reached the database `main_url` names; else
    what each reached. A session URL to another database would take its locks and LISTEN there:
    runs would exclude nobody and see no event, while the pool works in the main database."""
    session = await connection.fetchrow(_WHICH)
    main = await engine.connect(main_url, application_name="user-sync-check")
    try:
        expected = await main.fetchrow(_WHICH)
    finally:
        main.terminate()
    if session is None or expected is None or tuple(session) == tuple(expected):
        return None
    where = "" if session["started"] == expected["started"] else " on another server"
    return (
        f"USERSYNC_LEADER_DATABASE_URL reaches database {session['name']}{where}, "
        f"USERSYNC_DATABASE_URL reaches {expected['name']}: both must reach the same database "
        "(the leader URL directly, the main URL directly or through the pooler)"
    )


async def url_mismatch(url: str, *, main_url: str) -> str | None:
    """`other_database` on a connection of its own (what a `sync` checks before it runs)."""
    connection = await engine.connect(url, application_name="user-sync-check")
    try:
        return await other_database(connection, main_url=main_url)
    finally:
        connection.terminate()


def refusal(problem: str) -> str:
    """The one line an operator reads."""
    return f"a session lock did not stay with its database session ({problem}); {ADVICE}"
