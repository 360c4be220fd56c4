"""A full run planned from a listing begun before it opened (`service.headstart`, the CLI's
full sync): users whose state was written after the listing began are read again, as in a run
that lists after it opens, and the run takes that listing whole, once."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service import wiring
from service.config import Settings
from service.domain.runs import Scope
from service.reconcile.readahead import ReadAhead
from service.reconcile.run import RunFailed, RunRequest
from tests.e2e.conftest import execute, generate_users
from tests.fixtures.emulator import account_auth

FULL = RunRequest(trigger="test", scope=Scope.FULL)


def remote_by_identity(emulator: Any) -> dict[str, dict[str, Any]]:
    return {u["identity"]: u for u in emulator.emulator.users()}


async def until_listed(emulator: Any) -> None:
    """The listing's one page asked for and answered (the emulator answers at once)."""
    for _ in range(200):
        if emulator.emulator.stats.get("list_users", 0) >= 1:
            await asyncio.sleep(0.2)
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the listing never asked for a page")


async def test_a_user_written_after_the_listing_began_is_read_again_and_repaired(
    engine: AsyncEngine, sync: Any, fast_emulator: Any, settings_for: Any
):
    await generate_users(engine, 20)
    await sync(Scope.FULL)  # linked: the next full run leaves unchanged users to Postgres
    settings: Settings = settings_for()
    sid = remote_by_identity(fast_emulator)["user4@example.com"]["sid"]
    fast_emulator.emulator.reset_stats()
    async with wiring.runtime(settings) as runtime:
        listing = ReadAhead(runtime.client.iter_user_pages())
        await until_listed(fast_emulator)
        # after the listing read it: another writer edits the user in Twilio, and a run of
        # named users records it (its state written, as any run's would be)
        async with aiohttp.ClientSession(headers=account_auth(fast_emulator)) as http:
            edited = {"FriendlyName": "edited meanwhile"}
            async with http.post(f"{fast_emulator.base_url}/v1/Users/{sid}", data=edited) as r:
                assert r.status == 200
        await execute(
            engine, "UPDATE sync_state SET updated_at = clock_timestamp() WHERE user_id = 'user-4'"
        )

        report = await runtime.runner.run(FULL, listing=listing)

    assert report.status.value == "succeeded"
    assert report.counts.get("updated") == 1  # read again (stale), not planned from the listing
    assert remote_by_identity(fast_emulator)["user4@example.com"]["friendly_name"] == "User 4"
    assert fast_emulator.emulator.stats.get("list_users") == 1  # the one listing, no other


async def test_a_listing_is_taken_by_one_run_only(
    engine: AsyncEngine, sync: Any, fast_emulator: Any, settings_for: Any
):
    await generate_users(engine, 3)
    await sync(Scope.FULL)
    async with wiring.runtime(settings_for()) as runtime:
        listing = ReadAhead(runtime.client.iter_user_pages())
        first = await runtime.runner.run(FULL, listing=listing)

        with pytest.raises(RunFailed) as again:
            await runtime.runner.run(FULL, listing=listing)

    assert "this listing was already taken" in (again.value.report.error or "")
    assert first.status.value == "succeeded"
    assert first.counts.get("unchanged") == 3


async def test_a_full_sync_counts_the_pages_it_read_before_its_run_opened(
    engine: AsyncEngine, db: Any, database_url: str, fast_emulator: Any
):
    from tests.e2e.test_cli import cli_env, run_cli  # noqa: PLC0415 - the CLI's helpers

    await generate_users(engine, 120)  # 3 pages of 50

    code, out, _ = await run_cli("sync", "--json", env=cli_env(database_url, fast_emulator))

    assert code == 0
    assert json.loads(out)["api_calls"] == fast_emulator.emulator.stats["list_users"] + 120
