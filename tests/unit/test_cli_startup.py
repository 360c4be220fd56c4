"""`user-sync --help` answers with only argparse loaded: the application (the database driver,
the HTTP client, the engine, pydantic) is imported once a command is known. How long it takes
is measured in bench/startup.py, never here; here: what it loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

HEAVY = ("aiohttp", "sqlalchemy", "asyncpg", "alembic", "pydantic", "rich", "structlog")

PROBE = """
import json, sys
from service.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as e:
    code = e.code
tops = {name.split(".")[0] for name in sys.modules}
loaded = sorted(tops | {name for name in sys.modules if name.startswith("service.")})
structlog = sys.modules.get("structlog")
hidden = structlog is not None and structlog.dev.rich is None
print(json.dumps({"code": code, "loaded": loaded, "rich_hidden_from_structlog": hidden}))
"""


def loaded_by(*args: str, **settings: str) -> tuple[object, list[str]]:
    result = probed(*args, **settings)
    return result["code"], result["loaded"]


def probed(*args: str, **settings: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("USERSYNC_", "TWILIO_"))}
    env |= {"USERSYNC_SECRETS_DIR": "/nonexistent", **settings}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, check=True, env=env
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize(
    "args", [["--help"], ["sync", "--help"], ["status", "--help"], ["no-such-command"]]
)
def test_help_and_bad_usage_load_nothing_of_the_application(args: list[str]) -> None:
    code, loaded = loaded_by(*args)

    assert code in (0, 2)
    assert [name for name in HEAVY if name in loaded] == []
    assert [name for name in loaded if name.startswith("service.")] == ["service.cli"]


def test_a_bad_setting_is_refused_before_the_application_loads() -> None:
    url = "postgresql://u:p@db:6543/app?sslmode=require"  # checked without SQLAlchemy
    code, loaded = loaded_by("status", USERSYNC_WRITE_RATE="-1", USERSYNC_DATABASE_URL=url)

    assert code == 2
    skipped = ("aiohttp", "asyncpg", "alembic", "rich", "sqlalchemy", "croniter")
    assert [name for name in skipped if name in loaded] == []
    assert "service.commands" not in loaded


def test_a_cron_to_check_loads_croniter() -> None:
    code, loaded = loaded_by("status", USERSYNC_FULL_SYNC_CRON="0 0 30 2 *")

    assert code == 2
    assert "croniter" in loaded  # only a cron to check loads it


def test_a_command_loads_the_application_once_its_settings_are_read() -> None:
    closed = "postgresql://postgres@127.0.0.1:1/none?connect_timeout=2"
    code, loaded = loaded_by("status", "--json", USERSYNC_DATABASE_URL=closed)

    assert code == 1  # the database cannot be reached: one line, exit 1
    assert "service.commands" in loaded and "sqlalchemy" in loaded


def test_a_command_imports_structlog_without_rich_and_rich_after_it() -> None:
    """structlog's rich tracebacks and reprs are not used (exceptions are text before any
    renderer): the command imports structlog with rich hidden, then rich for its own output."""
    closed = "postgresql://postgres@127.0.0.1:1/none?connect_timeout=2"
    result = probed("status", USERSYNC_DATABASE_URL=closed, USERSYNC_LOG_FORMAT="console")

    assert result["code"] == 1
    assert result["rich_hidden_from_structlog"] is True
    assert "rich" in result["loaded"]  # the status tables' own import of it still works


def test_the_commands_load_without_the_served_application() -> None:
    """A sync wires its run through `service.wiring`: the HTTP API (aiohttp's server, the
    triggers, the metrics) loads for `serve` alone."""
    probe = "import json, sys, service.commands; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    loaded = set(json.loads(done.stdout))

    assert {"service.wiring", "service.reconcile.runner", "sqlalchemy.ext.asyncio"} <= loaded
    served = ("service.app", "service.triggers", "service.metrics", "aiohttp.web")
    assert [name for name in served if name in loaded] == []


def test_a_full_sync_can_begin_listing_before_the_database_layer_loads() -> None:
    """What `service.headstart` needs to begin listing: the settings and the client. The driver,
    the async engine, the ORM, the run's own code and the served app load meanwhile."""
    probe = "import json, sys, service.headstart; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    loaded = set(json.loads(done.stdout))

    assert {"aiohttp", "service.conversations.client", "service.reconcile.readahead"} <= loaded
    later = (
        "asyncpg",
        "alembic",
        "sqlalchemy.ext.asyncio",
        "sqlalchemy.orm",
        "service.db",
        "service.app",
        "service.commands",
        "service.reconcile.sides",
        "service.triggers",
    )
    assert [name for name in later if name in loaded] == []
