"""A run stopped while it records what it wrote still records it (`recorder.to_the_end`).

The adversary saw, once in about 19 tries, a run whose lock connection was lost while it
recorded three updates: its report counted them, but their states and audit entries were not
stored, so the next run made the same three writes again.
"""

from __future__ import annotations

import asyncio

import pytest

from service.reconcile.recorder import to_the_end


async def test_a_save_under_way_ends_before_the_stop_is_raised() -> None:
    saved: list[str] = []

    async def save() -> None:
        await asyncio.sleep(0.05)
        saved.append("states and audit entries")

    caller = asyncio.create_task(to_the_end(save()))
    await asyncio.sleep(0.01)
    caller.cancel("stopped")

    with pytest.raises(asyncio.CancelledError):
        await caller
    assert saved == ["states and audit entries"]


async def test_a_save_that_fails_raises_its_error() -> None:
    async def save() -> None:
        raise RuntimeError("the database refused")

    with pytest.raises(RuntimeError, match="the database refused"):
        await to_the_end(save())
