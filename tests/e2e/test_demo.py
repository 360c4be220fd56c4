"""`user-sync demo` runs the whole job with no settings, and cleans up after itself."""

from __future__ import annotations

import asyncio
import os
import sys

from service.db.engine import connect


def demo_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("USERSYNC_", "TWILIO_")) and k != "DATABASE_URL"
    }
    env.update(USERSYNC_SECRETS_DIR="/nonexistent", COLUMNS="400", **extra)
    return env


async def run_demo(env: dict[str, str], cwd: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service",
        "demo",
        "--users",
        "60",
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 180)
    assert process.returncode is not None
    return process.returncode, out.decode()


async def test_the_demo_needs_no_settings_and_shows_plan_outcome_and_status(tmp_path):
    code, out = await run_demo(demo_env(), cwd=str(tmp_path))

    assert code == 0, out
    assert "seeded 60 users" in out
    assert "created" in out
    assert "Plan (dry run, nothing written)" in out
    assert "then delete the old identity's user" in out  # the rename
    assert "attributes" in out and "16384" in out  # the invalid user, named with its field
    assert "Recent runs" in out
    assert "What to try next" in out
    assert "demo finished" in out


async def test_the_demo_on_a_configured_server_drops_its_database_afterwards(
    tmp_path, postgres_server: str
):
    code, out = await run_demo(demo_env(USERSYNC_DATABASE_URL=postgres_server), cwd=str(tmp_path))

    assert code == 0, out
    admin = await connect(postgres_server)
    try:
        exists = await admin.fetchval(
            "SELECT count(*) FROM pg_database WHERE datname = 'user_sync_demo'"
        )
    finally:
        await admin.close()
    assert exists == 0
