"""`user-sync status` piped or on an 80-column terminal: ids support needs are never cut.

A request id (`RQ…`, 34 characters) and a held deletion's sid (`US…`) are what a support ticket
quotes; when the table is narrower than they are, their cells fold onto the next line instead
of ending in `…`.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from tests.e2e.conftest import execute, fetch_all, insert_users
from tests.e2e.test_cli import cli_env, run_cli

NARROW = {"COLUMNS": "80", "USERSYNC_MAX_DELETES_PER_RUN": "0"}


def column(out: str, title: str, index: int) -> str:
    """The text of column `index` of the (one-row) table titled `title`, folded lines joined."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if title in line)
    header_end = next(i for i in range(start, len(lines)) if lines[i].startswith("┡"))
    bottom = next(i for i in range(header_end, len(lines)) if lines[i].startswith("└"))
    return "".join(line.split("│")[index].strip() for line in lines[header_end + 1 : bottom])


async def test_status_on_80_columns_shows_request_ids_and_held_sids_whole(
    engine: AsyncEngine, db: Any, database_url: str, fast_emulator: Any
):
    await insert_users(engine, [{"id": "gone", "identity": "gone-user"}])
    env = cli_env(database_url, fast_emulator, **NARROW)
    assert (await run_cli("sync", env=env))[0] == 0
    [sid] = [u["sid"] for u in fast_emulator.emulator.users()]
    await execute(engine, "DELETE FROM internal_users")
    await insert_users(engine, [{"id": "failing", "identity": "failing-user"}])
    fast_emulator.emulator.inject_fault("status", status=400, operations=["create_user"])
    assert (await run_cli("sync", env=env))[0] == 1
    [row] = await fetch_all(engine, "SELECT request_id FROM sync_error")

    code, out, err = await run_cli("status", env=env)

    assert code == 0, err
    assert "…" not in out, out
    assert re.fullmatch(r"RQ[0-9a-f]{32}", row["request_id"])
    assert column(out, "Failing and quarantined users", 7) == row["request_id"], out
    assert column(out, "Deletions held", 3) == sid, out
