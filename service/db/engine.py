"""Engines, sessionmakers and dedicated connections, all from the one configured URL.

Operators give the URL as psql takes it (`service.libpq.url` reads it); this is the one place that
turns it into what the driver takes: the asyncpg dialect's URL for SQLAlchemy, and connect
arguments (`ssl`, `timeout`, `server_settings`) that the engine, alembic's environment and the
few raw asyncpg connections (the leader's session, admin connections) all share.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool

from service.libpq.tls import ssl_argument
from service.libpq.url import DatabaseUrl, parse_database_url

APPLICATION_NAME = "user-sync"
DRIVER_CONNECT_TIMEOUT = 60.0
"""asyncpg's own default, when neither the URL nor the caller says."""


def connect_args(
    target: DatabaseUrl,
    *,
    application_name: str = APPLICATION_NAME,
    connect_timeout: float = DRIVER_CONNECT_TIMEOUT,
    server_settings: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """asyncpg's arguments besides the address. What the URL says wins over the caller's
    defaults: `application_name` here is a fallback, like libpq's fallback_application_name."""
    return {
        "ssl": ssl_argument(target.tls),
        "timeout": target.connect_timeout or connect_timeout,
        "server_settings": {
            "application_name": application_name,
            **(server_settings or {}),
            **target.server_settings,
        },
    }


def connect_kwargs(url: str, **defaults: Any) -> dict[str, Any]:
    """Everything `asyncpg.connect()` or `asyncpg.create_pool()` takes for this URL."""
    target = parse_database_url(url)
    return {"dsn": target.dsn(), **connect_args(target, **defaults)}


async def connect(
    url: str,
    *,
    application_name: str = APPLICATION_NAME,
    connect_timeout: float = DRIVER_CONNECT_TIMEOUT,
    server_settings: Mapping[str, str] | None = None,
) -> asyncpg.Connection:
    """One connection outside any pool (LISTEN, session locks, CREATE DATABASE)."""
    arguments = connect_kwargs(
        url,
        application_name=application_name,
        connect_timeout=connect_timeout,
        server_settings=server_settings,
    )
    return await asyncpg.connect(**arguments)


def create_engine(
    url: str, *, pool_size: int | None = 10, application_name: str = APPLICATION_NAME
) -> AsyncEngine:
    """A pooled engine (`pool_size` None: a new connection each time, as alembic's CLI uses)."""
    target = parse_database_url(url)
    pooling: dict[str, Any] = (
        {"poolclass": NullPool}
        if pool_size is None
        else {"pool_size": pool_size, "max_overflow": pool_size}
    )
    return create_async_engine(
        target.url,
        pool_pre_ping=True,  # survive a Postgres restart without a service restart
        connect_args=connect_args(target, application_name=application_name),
        **pooling,
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
