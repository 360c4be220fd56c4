"""Run alembic from inside the service (`user-sync migrate`, the demo, tests, /readyz).

Alembic's commands are synchronous; we hand them a connection from our async engine through
`run_sync`, which is what alembic's async cookbook recommends inside a running event loop.

Only migrating imports alembic (a third of a second at every start otherwise): every other
command checks the schema with one query against `HEAD`, the head revision written here, which
a test keeps equal to the migrations' own head (tests/integration/test_migrations.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

if TYPE_CHECKING:
    from alembic.config import Config

HEAD = "0010_plan_context"
"""The newest migration in service/migrations/versions (one line of history, one head)."""

SCRIPT_LOCATION = "service:migrations"
"""The migrations are package data (`service/migrations`), so an installed wheel carries them and
`user-sync migrate` works from any working directory; `alembic` run by hand from the repository
root reads the same location from alembic.ini."""


def alembic_config() -> Config:
    """The alembic configuration, built in code: no alembic.ini is needed at run time."""
    from alembic.config import Config  # noqa: PLC0415 (see the module doc)

    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.set_main_option("path_separator", "os")
    return config


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    from alembic import command  # noqa: PLC0415 (see the module doc)

    await _run(engine, lambda cfg: command.upgrade(cfg, revision))


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    from alembic import command  # noqa: PLC0415 (see the module doc)

    await _run(engine, lambda cfg: command.downgrade(cfg, revision))


async def _run(engine: AsyncEngine, operation: Callable[[Config], None]) -> None:
    config = alembic_config()

    def run(connection: Connection) -> None:
        config.attributes["connection"] = connection
        operation(config)

    async with engine.begin() as connection:
        await connection.run_sync(run)


def head_revision() -> str:
    """The head revision this code needs (`HEAD`)."""
    return HEAD


def scripts_head() -> str | None:
    """The head of the migration scripts themselves, as alembic reads them."""
    from alembic.script import ScriptDirectory  # noqa: PLC0415 (see the module doc)

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision alembic recorded in the database (None: no schema of this service), read
    as alembic does: its `alembic_version` table on the search path."""
    async with engine.connect() as connection:
        if await connection.scalar(text("SELECT to_regclass('alembic_version')")) is None:
            return None
        found = list(await connection.scalars(text("SELECT version_num FROM alembic_version")))
    return found[0] if len(found) == 1 else (",".join(sorted(found)) or None)


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
