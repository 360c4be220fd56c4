"""Engine and sessionmaker construction, and URL normalisation.

Operators give a plain `postgresql://` URL (as psql and most tools use); SQLAlchemy needs the
asyncpg dialect named, and asyncpg wants a Unix socket directory as `host=` in the query.
"""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

ASYNC_DRIVER = "postgresql+asyncpg"


def async_url(url: str) -> URL:
    """`postgres://`, `postgresql://` or `postgresql+asyncpg://` → the asyncpg dialect URL."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(f"not a PostgreSQL URL (backend {parsed.get_backend_name()!r})")
    return parsed.set(drivername=ASYNC_DRIVER)


def libpq_dsn(url: str) -> str:
    """The URL in the plain form asyncpg.connect() takes (for LISTEN and COPY connections)."""
    return async_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def create_engine(
    url: str, *, pool_size: int = 10, application_name: str = "user-sync"
) -> AsyncEngine:
    return create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,  # survive a Postgres restart without a service restart
        connect_args={"server_settings": {"application_name": application_name}},
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
