"""Nothing the data holds can break or hide the human output of `user-sync sync` and `status`.

Ids, identities, roles and messages are shown as written: rich markup in them (`[/ops]`,
`[bold]admin`) is text, not a style and not a crash. A failed call's `Twilio-Request-Id` is kept
in `sync_error` and shown, for support tickets.
"""

from __future__ import annotations

import json
import re
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from tests.e2e.conftest import fetch_all, insert_users
from tests.e2e.test_cli import cli_env, run_cli

WIDE = {"COLUMNS": "400"}
"""Wide enough that no table cell wraps, so each value can be found whole."""


async def test_markup_in_ids_and_roles_is_shown_as_written_by_sync_and_status(
    engine: AsyncEngine, db: Any, database_url: str, fast_emulator: Any
):
    await insert_users(
        engine,
        [
            {"id": "[/ops]", "identity": "ops", "role": "[/ops]"},
            {"id": "u2", "identity": "[red]two", "role": "[bold]admin"},
        ],
    )
    env = cli_env(database_url, fast_emulator, **WIDE)

    code, out, err = await run_cli("sync", env=env)

    assert code == 1, err
    assert "Traceback" not in err
    assert "failed [/ops] (role)" in out
    assert 'role "[bold]admin" is not one of' in out

    code, out, err = await run_cli("status", env=env)

    assert code == 0, err
    assert "Traceback" not in err
    assert "│ [/ops] │" in out
    assert 'user [/ops]: role "[/ops]" is not one of' in out
    assert 'role "[bold]admin" is not one of' in out


async def test_status_shows_times_with_their_age_and_counts_as_a_table(
    engine: AsyncEngine, db: Any, database_url: str, fast_emulator: Any
):
    await insert_users(engine, [{"id": "a", "identity": "alice"}, {"id": "b", "identity": ""}])
    env = cli_env(database_url, fast_emulator, **WIDE)
    await run_cli("sync", env=env)

    code, out, err = await run_cli("status", env=env)

    assert code == 0, err
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \((just now|\d+ s ago)\)", out), out
    assert "+00:00" not in out
    assert "{" not in out
    assert "Users by status" in out
    assert re.search(r"synced\s*│\s*1\b", out), out
    assert re.search(r"failed\s*│\s*1\b", out), out


async def test_a_failed_calls_request_id_is_kept_and_shown(
    engine: AsyncEngine, db: Any, database_url: str, fast_emulator: Any
):
    await insert_users(engine, [{"id": "a", "identity": "alice"}])
    fast_emulator.emulator.inject_fault("status", status=400, operations=["create_user"])
    env = cli_env(database_url, fast_emulator, **WIDE)

    code, out, _ = await run_cli("sync", "--json", env=env)

    assert code == 1
    [failure] = json.loads(out)["failures"]
    assert re.fullmatch(r"RQ[0-9a-f]{32}", failure["request_id"] or ""), failure
    [row] = await fetch_all(engine, "SELECT request_id FROM sync_error")
    assert row["request_id"] == failure["request_id"]

    code, out, _ = await run_cli("sync", env=env)

    assert code == 1
    assert re.search(r"failed a: HTTP 400 .* \[request RQ[0-9a-f]{32}\]", out), out

    code, out, _ = await run_cli("status", env=env)

    assert code == 0
    [latest] = [
        r["request_id"]
        for r in await fetch_all(
            engine, "SELECT request_id FROM sync_error ORDER BY id DESC LIMIT 1"
        )
    ]
    assert latest in out

    code, out, _ = await run_cli("status", "--json", env=env)

    assert json.loads(out)["failing"][0]["request_id"] == latest


async def test_control_characters_in_data_reach_the_terminal_as_escapes(
    engine: AsyncEngine, db: Any, database_url: str, fast_emulator: Any
):
    await insert_users(engine, [{"id": "esc\x1b[2J", "identity": "e", "role": "\x1b[31mred\r"}])
    env = cli_env(database_url, fast_emulator, **WIDE)

    for command in (("sync",), ("sync", "--dry-run"), ("status",)):
        code, out, err = await run_cli(*command, env=env)

        assert code in (0, 1), err
        assert "Traceback" not in err
        assert "\x1b" not in out and "\r" not in out, command
    assert "esc\\x1b[2J" in out
    assert "\\x1b[31mred\\r" in out
