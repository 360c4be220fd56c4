"""Run alembic from inside the service (`user-sync migrate`, the demo, tests, /readyz).

Alembic's commands are synchronous; we hand them a connection from our async engine through
`run_sync`, which is what alembic's async cookbook recommends inside a running event loop.
"""

from __future__ import annotations

from collections.abc import Callable

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

SCRIPT_LOCATION = "service:migrations"
"""The migrations are package data (`service/migrations`), so an installed wheel carries them and
`user-sync migrate` works from any working directory; `alembic` run by hand from the repository
root reads the same location from alembic.ini."""


def alembic_config() -> Config:
    """The alembic configuration, built in code: no alembic.ini is needed at run time."""
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.set_main_option("path_separator", "os")
    return config


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    await _run(engine, lambda cfg: command.upgrade(cfg, revision))


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    await _run(engine, lambda cfg: command.downgrade(cfg, revision))


async def _run(engine: AsyncEngine, operation: Callable[[Config], None]) -> None:
    config = alembic_config()

    def run(connection: Connection) -> None:
        config.attributes["connection"] = connection
        operation(config)

    async with engine.begin() as connection:
        await connection.run_sync(run)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def current_revision(engine: AsyncEngine) -> str | None:
    def read(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with engine.connect() as connection:
        return await connection.run_sync(read)


class SchemaNotCurrent(Exception):
    """The database's schema is not the one this code needs; the message says to migrate."""


async def require_head(engine: AsyncEngine, *, where: str) -> None:
    """SchemaNotCurrent unless the schema is at this code's head revision (`where` names the
    database in the message, password hidden)."""
    current, head = await current_revision(engine), head_revision()
    if current == head:
        return
    found = f"is at revision {current}" if current else "has no schema of this service"
    raise SchemaNotCurrent(
        f"the database at {where} {found}; this version needs revision {head}: "
        "run `user-sync migrate` first"
    )
