"""The dry run says how many users a run would write: Twilio bills each created or updated user
as active for the month, so that number is what an operator checks before a run."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from tests.e2e.conftest import SyncFn, execute, insert_users
from tests.e2e.test_cli import cli_env, run_cli


async def test_the_dry_run_counts_users_created_or_updated_not_deleted_or_unchanged(
    engine: AsyncEngine, db: Any, sync: SyncFn, database_url: str, fast_emulator: Any
):
    await insert_users(engine, [{"id": i, "identity": i} for i in ("same", "renamed", "gone")])
    await sync()
    await execute(engine, "UPDATE internal_users SET friendly_name = 'New' WHERE id = 'renamed'")
    await execute(engine, "UPDATE internal_users SET active = false WHERE id = 'gone'")
    await insert_users(engine, [{"id": "new", "identity": "new"}])
    env = cli_env(database_url, fast_emulator, USERSYNC_MAX_DELETES_PERCENT="100")

    code, out, _ = await run_cli("sync", "--dry-run", "--json", env=env)
    _, text, _ = await run_cli("sync", "--dry-run", env=env)

    report = json.loads(out)
    assert code == 0
    assert len(report["plan"]) == 3  # create new, update renamed, delete gone
    assert report["would_write"] == 2
    assert "2 user(s) would be created or updated" in text
