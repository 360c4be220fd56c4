"""Every migration goes up and down on a real Postgres, and the models match the schema."""

from __future__ import annotations

from collections.abc import AsyncIterator
from enum import StrEnum

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from service.db import migrate
from service.db.engine import connect, create_engine
from service.db.models import Base
from service.db.vocabulary import GuardState
from service.domain.runs import RunStatus
from service.domain.users import SyncStatus
from service.libpq.url import with_database


@pytest.fixture
async def scratch_engine(postgres_server: str) -> AsyncIterator[AsyncEngine]:
    admin = await connect(postgres_server)
    await admin.execute('DROP DATABASE IF EXISTS "usersync_migrations_test" WITH (FORCE)')
    await admin.execute('CREATE DATABASE "usersync_migrations_test"')
    engine = create_engine(with_database(postgres_server, "usersync_migrations_test"), pool_size=1)
    yield engine
    await engine.dispose()
    await admin.execute('DROP DATABASE "usersync_migrations_test" WITH (FORCE)')
    await admin.close()


async def _tables(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        )
        return set(rows.scalars())


async def test_migrations_upgrade_to_head_and_downgrade_to_base(scratch_engine: AsyncEngine):
    await migrate.upgrade(scratch_engine)
    assert {"internal_users", "sync_state", "sync_run", "sync_error"} <= await _tables(
        scratch_engine
    )
    assert await migrate.current_revision(scratch_engine) == migrate.head_revision()

    await migrate.downgrade(scratch_engine, "base")
    assert await _tables(scratch_engine) == {"alembic_version"}

    await migrate.upgrade(scratch_engine)
    assert await migrate.current_revision(scratch_engine) == migrate.head_revision()


async def test_each_migration_steps_down_and_up_again(scratch_engine: AsyncEngine):
    await migrate.upgrade(scratch_engine)
    await migrate.downgrade(scratch_engine, "-1")
    assert await migrate.current_revision(scratch_engine) != migrate.head_revision()
    await migrate.upgrade(scratch_engine)
    assert await migrate.current_revision(scratch_engine) == migrate.head_revision()


async def test_models_match_the_migrated_schema(engine: AsyncEngine):
    def diff(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection)
        return list(compare_metadata(context, Base.metadata))

    async with engine.connect() as connection:
        differences = await connection.run_sync(diff)
    assert differences == []


PREDICATE = """
    SELECT pg_get_expr(i.indpred, i.indrelid) FROM pg_index i
    JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = :name
"""


async def test_partial_indexes_built_from_the_status_enums_are_the_migrated_ones(
    engine: AsyncEngine,
):
    """The models spell their predicates from the enums (`db.vocabulary`), the migrations in
    literals: Postgres, given the model's predicate on a copy of the table, reads it back as
    the migrated index's."""
    indexes = [
        (table.name, index)
        for table in Base.metadata.sorted_tables
        for index in table.indexes
        if index.dialect_options["postgresql"]["where"] is not None
    ]
    assert {i.name for _, i in indexes} >= {"ix_sync_state_due", "uq_sync_state_claimed_identity"}
    async with engine.connect() as connection:
        for table, index in indexes:
            where = str(index.dialect_options["postgresql"]["where"])
            copy = f"copy_{table}"
            await connection.execute(text(f"CREATE TEMPORARY TABLE {copy} (LIKE {table})"))
            columns = ", ".join(c.name for c in index.columns)
            await connection.execute(
                text(f"CREATE INDEX {copy}_ix ON {copy} ({columns}) WHERE {where}")
            )
            built = await connection.scalar(text(PREDICATE), {"name": f"{copy}_ix"})
            migrated = await connection.scalar(text(PREDICATE), {"name": index.name})
            await connection.execute(text(f"DROP TABLE {copy}"))
            assert built == migrated, index.name


CHECK = """
    SELECT pg_get_expr(k.conbin, k.conrelid) FROM pg_constraint k
    JOIN pg_class c ON c.oid = k.conrelid
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY(k.conkey)
    WHERE k.contype = 'c' AND c.relname = :table AND a.attname = :column
"""


@pytest.mark.parametrize(
    ("table", "column", "words"),
    [
        ("sync_state", "status", SyncStatus),
        ("sync_run", "status", RunStatus),
        ("sync_deletion", "state", GuardState),
    ],
)
async def test_the_status_columns_take_exactly_the_words_of_their_enum(
    engine: AsyncEngine, table: str, column: str, words: type[StrEnum]
):
    async with engine.connect() as connection:
        check = await connection.scalar(text(CHECK), {"table": table, "column": column})
        assert check is not None
        taken = {
            word
            for word in ["unknown", *(w.value for w in words)]
            if await connection.scalar(
                text(f"SELECT {check} FROM (SELECT CAST(:word AS text) AS {column}) t"),
                {"word": word},
            )
        }
    assert taken == {w.value for w in words}


async def test_internal_users_refuses_attributes_that_are_not_an_object(engine: AsyncEngine):
    with pytest.raises(IntegrityError, match="attributes_object"):
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO internal_users (id, identity, attributes) "
                    "VALUES ('u1', 'alice', '[1, 2]'::jsonb)"
                )
            )


@pytest.fixture
async def schema_database(postgres_server: str) -> AsyncIterator[str]:
    """A database whose service tables live in schema `hr` (the README's `options` example)."""
    admin = await connect(postgres_server)
    await admin.execute('DROP DATABASE IF EXISTS "usersync_schema_test" WITH (FORCE)')
    await admin.execute('CREATE DATABASE "usersync_schema_test"')
    url = with_database(postgres_server, "usersync_schema_test")
    setup = await connect(url)
    await setup.execute("CREATE SCHEMA hr")
    await setup.close()
    yield url
    await admin.execute('DROP DATABASE "usersync_schema_test" WITH (FORCE)')
    await admin.close()


async def test_the_event_trigger_works_for_writers_with_another_search_path(schema_database: str):
    engine = create_engine(f"{schema_database}?options=-c%20search_path%3Dhr", pool_size=1)
    try:
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()
    writer = await connect(schema_database)  # the identity system: the default search_path
    try:
        await writer.execute("INSERT INTO hr.internal_users (id, identity) VALUES ('1', 'ann')")
        await writer.execute("UPDATE hr.internal_users SET friendly_name = 'Ann' WHERE id = '1'")
        kinds = await writer.fetch("SELECT kind FROM hr.user_event ORDER BY id")
    finally:
        await writer.close()

    assert [row["kind"] for row in kinds] == ["insert", "update"]


async def test_downgrading_the_suspension_revision_turns_suspended_users_back_to_synced(
    scratch_engine: AsyncEngine,
):
    await migrate.upgrade(scratch_engine)
    async with scratch_engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO sync_state (user_id, remote_sid, identity, status, delete_after)"
                " VALUES ('u1', 'US' || repeat('0', 32), 'alice', 'suspended', now())"
            )
        )
    await migrate.downgrade(scratch_engine, "0007_write_guard")  # just below 0008
    async with scratch_engine.connect() as connection:
        status = await connection.scalar(text("SELECT status FROM sync_state"))
    assert status == "synced"
    await migrate.upgrade(scratch_engine)
    assert await migrate.current_revision(scratch_engine) == migrate.head_revision()


async def test_the_audit_trail_revision_goes_down_to_0005_and_up_again(
    scratch_engine: AsyncEngine,
):
    await migrate.upgrade(scratch_engine)
    assert "sync_audit" in await _tables(scratch_engine)

    await migrate.downgrade(scratch_engine, "0005")
    assert "sync_audit" not in await _tables(scratch_engine)
    async with scratch_engine.connect() as connection:
        leftover = await connection.scalar(
            text("SELECT count(*) FROM pg_proc WHERE proname = 'sync_audit_append_only'")
        )
    assert leftover == 0

    await migrate.upgrade(scratch_engine)
    assert "sync_audit" in await _tables(scratch_engine)
    assert await migrate.current_revision(scratch_engine) == migrate.head_revision()


def test_the_head_the_code_checks_against_is_the_migrations_head():
    assert migrate.head_revision() == migrate.scripts_head()


async def test_the_revision_read_without_alembic_is_the_one_alembic_reads(
    scratch_engine: AsyncEngine,
):
    def alembics(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    seen = []
    for step in (None, "head", "-1", "base"):
        if step == "head":
            await migrate.upgrade(scratch_engine)
        elif step is not None:
            await migrate.downgrade(scratch_engine, step)
        async with scratch_engine.connect() as connection:
            expected = await connection.run_sync(alembics)
        assert await migrate.current_revision(scratch_engine) == expected
        seen.append(expected)
    assert seen[0] is None and seen[1] == migrate.HEAD and seen[2] not in (None, migrate.HEAD)
