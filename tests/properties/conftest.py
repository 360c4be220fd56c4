"""Each hypothesis example starts from empty tables and a fresh emulator (write limit off)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.e2e.conftest import fast_emulator, settings_for, sync
from tests.fixtures.postgres import TABLES

__all__ = ["fast_emulator", "settings_for", "sync"]  # the e2e fixtures, shared with this tier

Reset = Callable[[], Awaitable[None]]


@pytest.fixture
def reset_world(engine: AsyncEngine, fast_emulator: Any) -> Reset:
    async def reset() -> None:
        async with engine.begin() as connection:
            await connection.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY"))
        fast_emulator.emulator.reset()
        fast_emulator.emulator.set_write_limit(None)

    return reset
