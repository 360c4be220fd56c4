"""Alembic environment, after alembic's async template.

The connection comes from the first of: `config.attributes["connection"]`, a connection of the
service's own engine that `db.migrate` hands over (`user-sync migrate`, the demo, the tests);
`config.attributes["database_url"]`, a URL a caller of alembic's commands set (a test does);
else `USERSYNC_DATABASE_URL` (or `DATABASE_URL`) from the settings in the environment, for
`alembic` run by hand, online or with `--sql`. URLs go through `service.db.engine` and
`service.libpq`, so every URL form and parameter the service takes works here too.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from service.config import load_settings
from service.db.engine import create_engine
from service.db.models import Base
from service.libpq.url import async_url

config = context.config
target_metadata = Base.metadata


def _database_url() -> str:
    url = config.attributes.get("database_url")
    if isinstance(url, str):
        return url
    return load_settings().require_database_url()


def run_migrations_offline() -> None:
    context.configure(
        url=async_url(_database_url()).render_as_string(hide_password=False),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations() -> None:
    engine = create_engine(_database_url(), pool_size=None, application_name="user-sync-migrate")
    async with engine.connect() as connection:
        await connection.run_sync(do_run_migrations)
    await engine.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        do_run_migrations(connection)
        return
    asyncio.run(run_async_migrations())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
