"""The package as operators install it: a built wheel in a fresh venv, run from `/`.

The symptom was `FileNotFoundError: alembic.ini and migrations/ not found (run from the project
root)`: the migrations lived beside the package, so only a checkout or an editable install found
them. The wheel is built from a copy of the sources (no stale `build/` directory can add files)
with the pinned backend and no build isolation, the way CI and the image build it, and installed
with the runtime lock only (no pgserver, no test tools).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.db.engine import connect, create_engine
from tests.e2e.conftest import insert_users
from tests.e2e.test_cli import cli_env

REPO = Path(__file__).resolve().parents[2]


def pip(*args: str | Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "--quiet", "--disable-pip-version-check", *map(str, args)],
        check=True,
        capture_output=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("wheel")
    source = root / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(
        REPO / "service", source / "service", ignore=shutil.ignore_patterns("__pycache__")
    )
    pip("wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", root / "dist", source)
    (built,) = (root / "dist").glob("*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    target = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", target], check=True)
    python = target / "bin" / "python"
    pip("--python", python, "install", "--require-hashes", "-r", REPO / "requirements.lock")
    pip("--python", python, "install", "--no-deps", wheel)
    yield target
    shutil.rmtree(target, ignore_errors=True)


async def installed(venv: Path, *args: str, env: dict[str, str]) -> tuple[int, str, str]:
    """`user-sync ARGS` from the venv's own script, in `/`, with nothing of the repo on the path."""
    clean = {k: v for k, v in env.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    process = await asyncio.create_subprocess_exec(
        str(venv / "bin" / "user-sync"),
        *args,
        cwd="/",
        env=clean,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 300)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def test_the_wheel_carries_every_migration(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    in_repo = {
        str(path.relative_to(REPO))
        for path in (REPO / "service" / "migrations").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert in_repo, "no migrations found in the repository"
    assert in_repo <= names
    assert "service/migrations/env.py" in names


@pytest.fixture
async def fresh_database(postgres_server: str) -> Any:
    name = f"usersync_wheel_{os.getpid()}"
    admin = await connect(postgres_server)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql://postgres@127.0.0.1:5432/{name}?sslmode=disable&application_name=wheel"
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


async def test_migrate_then_a_dry_run_from_root_with_the_installed_package(
    venv: Path, fresh_database: str, fast_emulator: Any
) -> None:
    env = cli_env(fresh_database, fast_emulator)

    code, out, err = await installed(venv, "migrate", env=env)
    assert (code, err) == (0, ""), err
    assert "database at revision 0003" in out

    engine: AsyncEngine = create_engine(fresh_database, pool_size=1)
    try:
        await insert_users(engine, [{"id": "w1", "identity": "wheel-user"}])
    finally:
        await engine.dispose()
    code, out, err = await installed(venv, "sync", "--dry-run", env=env)
    assert code == 0, err
    assert "create wheel-user" in out
    assert fast_emulator.emulator.users() == []


async def test_the_demo_runs_from_root_with_the_installed_package(
    venv: Path, postgres_server: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("USERSYNC_", "TWILIO_"))}
    env |= {"USERSYNC_DATABASE_URL": postgres_server, "USERSYNC_SECRETS_DIR": "/nonexistent"}
    code, out, err = await installed(venv, "demo", "--users", "20", env=env | {"COLUMNS": "200"})
    assert code == 0, out + err
    assert "seeded 20 users" in out
    assert "demo finished" in out
