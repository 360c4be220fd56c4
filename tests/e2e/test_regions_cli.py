"""`user-sync status` shows where the client goes; a bad region or edge stops it at start."""

from __future__ import annotations

import json
from typing import Any

from tests.e2e.test_cli import cli_env, run_cli


async def test_status_json_shows_region_edge_and_the_host_the_client_uses(
    db: Any, database_url: str, fast_emulator: Any
):
    env = cli_env(database_url, fast_emulator, USERSYNC_REGION="ie1")
    env.pop("USERSYNC_API_BASE_URL")

    code, out, _ = await run_cli("status", "--json", env=env)

    assert code == 0
    assert json.loads(out)["api"] == {
        "region": "ie1",
        "edge": "dublin",
        "host": "conversations.dublin.ie1.twilio.com",
        "base_url": "https://conversations.dublin.ie1.twilio.com",
        "base_url_overridden": False,
    }


async def test_status_says_when_the_base_url_overrides_the_region(
    db: Any, database_url: str, fast_emulator: Any
):
    env = cli_env(database_url, fast_emulator, USERSYNC_REGION="au1", USERSYNC_EDGE="sydney")

    code, out, _ = await run_cli("status", env=env)

    host = fast_emulator.base_url.removeprefix("http://")
    assert code == 0
    assert f"API: region au1, edge sydney, host {host}" in out
    assert "USERSYNC_API_BASE_URL overrides" in out


async def test_status_shows_twilios_default_host_without_region_or_edge(
    db: Any, database_url: str, fast_emulator: Any
):
    env = cli_env(database_url, fast_emulator)
    env.pop("USERSYNC_API_BASE_URL")

    code, out, _ = await run_cli("status", env=env)

    assert code == 0
    assert "API: region us1, edge none (Twilio's default host), host conversations.twilio.com" in (
        out
    )


async def test_a_region_twilio_does_not_have_exits_2_with_one_line_naming_it(
    database_url: str, fast_emulator: Any
):
    env = cli_env(database_url, fast_emulator, USERSYNC_REGION="eu1")

    code, out, err = await run_cli("sync", env=env)

    problems = [line for line in err.splitlines() if "USERSYNC_REGION" in line]
    assert code == 2
    assert out == ""
    assert problems == ["  USERSYNC_REGION: must be one of Twilio's regions: us1, ie1, au1, jp1"]
    assert "Traceback" not in err


async def test_an_unknown_edge_exits_2_naming_it(database_url: str, fast_emulator: Any):
    env = cli_env(database_url, fast_emulator, USERSYNC_EDGE="paris")

    code, _, err = await run_cli("status", env=env)

    assert code == 2
    assert "USERSYNC_EDGE: must be one of Twilio's edge locations: ashburn" in err
    assert "Traceback" not in err
