"""The proof that a session stays one Postgres session, against Postgres and a real PgBouncer."""

from __future__ import annotations

import pytest

from service.db import affinity
from service.db.engine import connect
from tests.fixtures.pgbouncer import Bouncer

PROBE_LOCKS = """SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = $1"""


async def test_a_direct_session_keeps_its_lock(database_url: str):
    connection = await connect(database_url)
    try:
        problem = await affinity.session_problem(
            connection, url=database_url, application_name="test"
        )
        held = await connection.fetchval(PROBE_LOCKS, connection.get_server_pid())
    finally:
        await connection.close()

    assert problem is None
    assert held == 0  # the probe lock is released


async def test_a_transaction_pooled_session_is_refused(database_url: str, pgbouncer: Bouncer):
    url = pgbouncer.url(database_url)
    connection = await connect(url)
    try:
        problem = await affinity.session_problem(connection, url=url, application_name="test")
    finally:
        connection.terminate()

    assert problem is not None
    assert "USERSYNC_LEADER_DATABASE_URL" in affinity.refusal(problem)


@pytest.mark.parametrize("repeat", range(3))
async def test_the_pooler_is_caught_however_many_times_it_is_asked(
    database_url: str, pgbouncer: Bouncer, repeat: int
):
    url = pgbouncer.url(database_url)
    assert await affinity.url_problem(url, application_name="test") is not None


async def test_the_same_check_on_its_own_connection_passes_direct(database_url: str):
    assert await affinity.url_problem(database_url, application_name="test") is None
