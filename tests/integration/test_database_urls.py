"""The URLs operators write, against real servers: TLS per sslmode, sockets, passwords, session
parameters and timeouts, through every path that connects (the engine, alembic's environment and
the raw asyncpg sessions). The TLS server accepts TLS only (tests/fixtures/tls_postgres.py).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from service.db import channel, migrate
from service.db.engine import connect, create_engine
from tests.fixtures.tls_postgres import (
    PASSWORD,
    PASSWORD_ROLE,
    TlsServer,
    make_certificates,
)
from tests.integration.test_client_errors import closed_port

SESSION = (
    "SELECT ssl, current_user, inet_server_addr() IS NULL AS over_socket"
    " FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
)


async def session_of(url: str) -> dict[str, Any]:
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as connection:
            row = (await connection.execute(text(SESSION))).mappings().one()
            return dict(row)
    finally:
        await engine.dispose()


async def test_sslmode_require_connects_over_tls(tls_server: TlsServer):
    session = await session_of(tls_server.url("sslmode=require"))
    assert session["ssl"] is True


async def test_verify_full_with_the_ca_as_sslrootcert_connects(tls_server: TlsServer):
    session = await session_of(tls_server.url(f"sslmode=verify-full&sslrootcert={tls_server.ca}"))
    assert session["ssl"] is True


async def test_verify_full_refuses_a_host_name_the_certificate_does_not_name(
    tls_server: TlsServer,
):
    url = tls_server.url(f"sslmode=verify-full&sslrootcert={tls_server.ca}", host="127.0.0.2")
    with pytest.raises(ssl.SSLCertVerificationError, match=r"not valid for '127\.0\.0\.2'"):
        await session_of(url)


async def test_verify_ca_checks_the_chain_but_not_the_host_name(tls_server: TlsServer):
    url = tls_server.url(f"sslmode=verify-ca&sslrootcert={tls_server.ca}", host="127.0.0.2")
    assert (await session_of(url))["ssl"] is True


async def test_verify_full_refuses_a_server_signed_by_another_ca(
    tls_server: TlsServer, tmp_path: Path
):
    make_certificates(tmp_path)  # a CA of its own, which never signed the server's certificate
    url = tls_server.url(f"sslmode=verify-full&sslrootcert={tmp_path / 'ca.crt'}")
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        await session_of(url)


async def test_sslmode_disable_is_refused_by_a_server_that_requires_tls(tls_server: TlsServer):
    with pytest.raises(DBAPIError, match=r"no pg_hba\.conf entry .*, no encryption") as failure:
        await session_of(tls_server.url("sslmode=disable"))
    assert isinstance(failure.value.orig.__cause__, asyncpg.InvalidAuthorizationSpecificationError)


async def test_libpqs_default_prefer_uses_the_tls_the_server_offers(tls_server: TlsServer):
    assert (await session_of(tls_server.url()))["ssl"] is True


async def test_a_socket_directory_as_host_parameter_connects(tls_server: TlsServer):
    url = f"postgresql://postgres@/usersync_tls?host={tls_server.socket_dir}&port={tls_server.port}"
    assert (await session_of(url))["over_socket"] is True


async def over_socket_both_ways(url: str) -> tuple[bool, bool]:
    """Whether the pool's session and a raw asyncpg session (the leader's) used a socket."""
    connection = await connect(url)
    try:
        raw = bool(await connection.fetchval("SELECT inet_server_addr() IS NULL"))
    finally:
        await connection.close()
    return bool((await session_of(url))["over_socket"]), raw


async def test_a_percent_encoded_socket_directory_as_the_authoritys_host_connects(
    tls_server: TlsServer,
):
    host = quote(str(tls_server.socket_dir), safe="")
    url = f"postgresql://postgres@{host}:{tls_server.port}/usersync_tls"
    assert await over_socket_both_ways(url) == (True, True)


async def test_several_hosts_in_the_authority_are_tried_in_turn(tls_server: TlsServer):
    url = (
        f"postgresql://postgres@127.0.0.1:{closed_port()},127.0.0.1:{tls_server.port}/usersync_tls"
    )
    assert await over_socket_both_ways(url) == (False, False)


@pytest.mark.parametrize(
    "where",
    ["port", "host", "socket"],
    ids=["port in the query", "host in the query", "socket in the query"],
)
async def test_host_and_port_in_the_query_win_over_the_authority_for_every_session(
    tls_server: TlsServer, where: str
):
    """As in libpq, and for the pool and the raw sessions alike (found by an adversary: the
    pool took the query's port, the lock and leader sessions the authority's, so `status`
    worked and `sync` could not connect)."""
    right, wrong = tls_server.port, closed_port()
    url = {
        "port": f"postgresql://postgres@127.0.0.1:{wrong}/usersync_tls?port={right}",
        "host": f"postgresql://postgres@nosuchhost.invalid:{right}/usersync_tls?host=127.0.0.1",
        "socket": (
            f"postgresql://postgres@127.0.0.1:{right}/usersync_tls?host={tls_server.socket_dir}"
        ),
    }[where]
    assert await over_socket_both_ways(url) == (
        (True, True) if where == "socket" else (False, False)
    )


async def test_a_percent_encoded_password_logs_in_and_a_wrong_one_is_not_echoed(
    tls_server: TlsServer,
):
    session = await session_of(tls_server.password_url("sslmode=require"))
    assert session["current_user"] == PASSWORD_ROLE
    wrong = tls_server.password_url("sslmode=require").replace("%2B1", "%2B2")
    with pytest.raises(DBAPIError, match="password authentication failed") as failure:
        await session_of(wrong)
    shown = f"{failure.value} {failure.value!r} {failure.value.orig!r}"
    assert PASSWORD[:5] not in shown  # the start both passwords share, as written or encoded
    assert quote(PASSWORD[:5], safe="") not in shown


async def test_application_name_and_options_reach_the_session(tls_server: TlsServer):
    url = tls_server.url(
        "application_name=hr-sync&options=-c%20search_path%3Dhr%20-c%20statement_timeout%3D1234"
    )
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as connection:
            shown = await connection.execute(
                text(
                    "SELECT current_setting('application_name'), current_setting('search_path'),"
                    " current_setting('statement_timeout')"
                )
            )
            assert tuple(shown.one()) == ("hr-sync", "hr", "1234ms")
    finally:
        await engine.dispose()


async def test_the_leaders_session_takes_the_same_url(tls_server: TlsServer):
    url = tls_server.url(f"sslmode=verify-full&sslrootcert={tls_server.ca}&connect_timeout=5")
    connection = await channel.connect(url, application_name="user-sync-leader", connect_timeout=1)
    try:
        row = await connection.fetchrow(
            "SELECT ssl, current_setting('application_name') AS name,"
            " current_setting('tcp_keepalives_idle') AS idle"
            " FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        )
        assert row is not None
        assert (row["ssl"], row["name"], row["idle"]) == (True, "user-sync-leader", "5")
    finally:
        await connection.close()


@pytest.fixture
async def silent_server() -> AsyncIterator[int]:
    """A TCP port that accepts connections and never answers."""

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()


async def test_connect_timeout_in_the_url_bounds_the_wait(silent_server: int):
    url = f"postgresql://postgres@127.0.0.1:{silent_server}/x?sslmode=disable&connect_timeout=2"
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError):
        await connect(url, connect_timeout=60)
    # what is checked is which timeout applied (the URL's 2 s, not the caller's 60 s)
    assert loop.time() - started < 30


async def test_alembics_environment_migrates_through_a_verify_full_url(tls_server: TlsServer):
    url = tls_server.password_url(f"sslmode=verify-full&sslrootcert={tls_server.ca}")
    config = migrate.alembic_config()
    config.attributes["database_url"] = url
    await asyncio.to_thread(command.upgrade, config, "head")
    engine = create_engine(url, pool_size=1)
    try:
        assert await migrate.current_revision(engine) == migrate.head_revision()
        await asyncio.to_thread(command.downgrade, config, "base")
        assert await migrate.current_revision(engine) is None
    finally:
        await engine.dispose()
