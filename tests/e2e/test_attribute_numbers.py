"""Attribute numbers reach the API exactly as the source holds them, and are never rewritten.

The source values are SQL literals cast in Postgres (never Python floats); what the emulator
stores is read back with a Decimal-aware parser, so a rounded digit would show.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.domain.runs import RunStatus, Scope
from tests.e2e.conftest import execute, fetch_all

PI = "3.14159265358979323846264338327950288"
LONG = "9" * 5000
"""An integer past the 4300 digits Python's int() converts from text."""
SOURCE = (
    f'{{"pi": {PI}, "big": 123456789012345678.5, "tiny": 1e-400,'
    ' "deep": [{"huge": 1e400}, -2.5e-10, 100.0]}'
)
EXPECTED = {
    "pi": Decimal(PI),
    "big": Decimal("123456789012345678.5"),
    "tiny": Decimal("1e-400"),
    "deep": [{"huge": Decimal("1e400")}, Decimal("-2.5e-10"), Decimal("100.0")],
}
WRITES = ("create_user", "update_user", "delete_user")


def exact(text: str) -> Any:
    """A JSON text read with every number a Decimal: nothing is rounded on the way."""
    return json.loads(text, parse_float=Decimal, parse_int=Decimal)


def writes(emulator: Any) -> int:
    stats = emulator.emulator.stats
    return sum(stats.get(op, 0) for op in WRITES)


@pytest.fixture(params=["text", "json", "jsonb"])
async def profile_view(request: Any, engine: AsyncEngine, db: Any) -> AsyncIterator[str]:
    """An identity system's table exposed through a view whose attributes are of a given type."""
    await execute(engine, "DROP SCHEMA IF EXISTS idp CASCADE")
    await execute(engine, "CREATE SCHEMA idp")
    await execute(
        engine, "CREATE TABLE idp.people (uid text PRIMARY KEY, email text, profile text)"
    )
    await execute(
        engine,
        "CREATE VIEW idp.users_v AS SELECT uid AS id, email AS identity, NULL::text AS"
        f" friendly_name, NULL::text AS role, profile::{request.param} AS attributes,"
        " true AS active, now() AS updated_at FROM idp.people",
    )
    yield "idp.users_v"
    await execute(engine, "DROP SCHEMA idp CASCADE")


async def test_jsonb_numbers_reach_the_api_exactly_and_a_second_run_writes_nothing(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
) -> None:
    await execute(
        engine,
        "INSERT INTO internal_users (id, identity, attributes)"
        f" VALUES ('n1', 'numbers@example.com', '{SOURCE}'::jsonb)",
    )

    first = await sync(Scope.FULL)

    assert (first.status, first.counts["created"]) == (RunStatus.SUCCEEDED, 1)
    [user] = fast_emulator.emulator.users()
    assert exact(user["attributes"]) == EXPECTED
    [held] = await fetch_all(engine, "SELECT attributes::text AS text FROM internal_users")
    assert exact(user["attributes"]) == exact(held["text"])
    fast_emulator.emulator.reset_stats()
    second = await sync(Scope.FULL)
    assert (second.status, second.counts["unchanged"]) == (RunStatus.SUCCEEDED, 1)
    assert writes(fast_emulator) == 0


async def test_numbers_from_a_view_of_any_json_column_type_reach_the_api_exactly(
    engine: AsyncEngine, sync: Any, fast_emulator: Any, profile_view: str
) -> None:
    await execute(engine, f"INSERT INTO idp.people VALUES ('p1', 'ann@example.com', '{SOURCE}')")

    first = await sync(Scope.FULL, source_table=profile_view)

    assert (first.status, first.counts["created"]) == (RunStatus.SUCCEEDED, 1)
    [user] = fast_emulator.emulator.users()
    assert exact(user["attributes"]) == EXPECTED
    fast_emulator.emulator.reset_stats()
    second = await sync(Scope.FULL, source_table=profile_view)
    assert (second.status, second.counts["unchanged"]) == (RunStatus.SUCCEEDED, 1)
    assert writes(fast_emulator) == 0


async def test_an_integer_of_5000_digits_is_sent_exactly_and_fails_no_one_else(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
) -> None:
    await execute(
        engine,
        "INSERT INTO internal_users (id, identity, attributes) VALUES"
        f" ('n1', 'long@example.com', '{{\"long\": {LONG}}}'::jsonb),"
        " ('n2', 'plain@example.com', '{}'::jsonb)",
    )

    run = await sync(Scope.FULL)

    assert (run.status, run.counts["created"]) == (RunStatus.SUCCEEDED, 2)
    remote = {u["identity"]: u["attributes"] for u in fast_emulator.emulator.users()}
    assert exact(remote["long@example.com"]) == {"long": Decimal(LONG)}
