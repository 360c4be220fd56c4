"""Realistic users for the demo: names, e-mail identities, roles and profile attributes.

Deterministic for a given seed, and inserted set-based (one multi-row statement per chunk).
The changes it makes afterwards are the ones an identity system makes every day.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

FIRST = [
    "Ada",
    "Alan",
    "Grace",
    "Linus",
    "Margaret",
    "Ken",
    "Barbara",
    "Dennis",
    "Frances",
    "Edsger",
    "Radia",
    "Tim",
    "Katherine",
    "John",
    "Hedy",
    "Claude",
    "Annie",
    "Guido",
    "Shafi",
    "Donald",
    "Joan",
    "Vint",
    "Sophie",
    "Niklaus",
    "Karen",
    "Bjarne",
    "Lynn",
    "Brian",
]
LAST = [
    "Lovelace",
    "Turing",
    "Hopper",
    "Torvalds",
    "Hamilton",
    "Thompson",
    "Liskov",
    "Ritchie",
    "Allen",
    "Dijkstra",
    "Perlman",
    "Berners-Lee",
    "Johnson",
    "McCarthy",
    "Lamarr",
    "Shannon",
    "Easley",
    "Rossum",
    "Goldwasser",
    "Knuth",
    "Clarke",
    "Cerf",
    "Wilson",
    "Wirth",
    "Jones",
    "Stroustrup",
    "Conway",
    "Kernighan",
]
DEPARTMENTS = ("support", "sales", "engineering", "success", "billing", "operations")
LOCATIONS = ("Berlin", "Lisbon", "Austin", "Toronto", "Singapore", "Nairobi", "Sydney")


@dataclass(frozen=True, slots=True)
class DemoUser:
    id: str
    identity: str
    friendly_name: str
    role: str | None
    attributes: dict[str, object]


def demo_users(count: int, *, seed: int = 7) -> Iterator[DemoUser]:
    rng = random.Random(seed)
    for n in range(1, count + 1):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        yield DemoUser(
            id=f"emp-{n:06d}",
            identity=f"{first}.{last}.{n}@example.com".lower(),
            friendly_name=f"{first} {last}",
            role="service admin" if rng.random() < 0.03 else None,
            attributes={
                "department": rng.choice(DEPARTMENTS),
                "location": rng.choice(LOCATIONS),
                "employee_number": n,
                "languages": rng.sample(["en", "de", "pt", "fr", "es", "ja"], k=rng.randint(1, 3)),
            },
        )


async def seed(engine: AsyncEngine, users: Iterator[DemoUser], *, chunk: int = 1000) -> int:
    batch, total = [], 0
    for user in users:
        batch.append(_row(user))
        if len(batch) == chunk:
            total += await _insert(engine, batch)
            batch = []
    return total + (await _insert(engine, batch) if batch else 0)


def _row(user: DemoUser) -> dict[str, object]:
    return {
        "id": user.id,
        "identity": user.identity,
        "friendly_name": user.friendly_name,
        "role": user.role,
        "attributes": json.dumps(user.attributes),
    }


async def _insert(engine: AsyncEngine, rows: list[dict[str, object]]) -> int:
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO internal_users (id, identity, friendly_name, role, attributes) "
                "VALUES (:id, :identity, :friendly_name, :role, CAST(:attributes AS jsonb))"
            ),
            rows,
        )
    return len(rows)


CHANGES = (
    (
        "promote emp-000002 to service admin (a role change)",
        "UPDATE internal_users SET role = 'service admin', updated_at = now() "
        "WHERE id = 'emp-000002'",
    ),
    (
        "emp-000003 moves to Lisbon and the success team (new attributes)",
        "UPDATE internal_users SET attributes = attributes || "
        '\'{"location": "Lisbon", "department": "success", "manager": "emp-000001"}\', '
        "updated_at = now() WHERE id = 'emp-000003'",
    ),
    (
        "emp-000004 leaves the company (deactivation)",
        "UPDATE internal_users SET active = false, updated_at = now() WHERE id = 'emp-000004'",
    ),
    (
        "emp-000005 changes their e-mail address (a rename of the identity)",
        "UPDATE internal_users SET identity = 'renamed.' || identity, updated_at = now() "
        "WHERE id = 'emp-000005'",
    ),
    (
        "emp-000006 gets a 20 KB profile blob (invalid: attributes over 16 KB)",
        "UPDATE internal_users SET attributes = jsonb_build_object('notes', repeat('x', 20000)), "
        "updated_at = now() WHERE id = 'emp-000006'",
    ),
)


async def apply_changes(engine: AsyncEngine) -> list[str]:
    async with engine.begin() as connection:
        for _, statement in CHANGES:
            await connection.execute(text(statement))
    return [description for description, _ in CHANGES]
