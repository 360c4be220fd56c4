"""The Dockerfile: lint-clean, and installing exactly the way CI does.

There is no Docker engine where the tests run, so the image is never built here. What makes the
build trustworthy anyway: hadolint finds nothing at any level, the image installs the hash-locked
dependencies and then the project with --no-deps (the two steps .ci/run runs on every CI run, on
the dev lock that pins the same versions), and every file the image needs is both copied and let
through by .dockerignore.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from service.db import migrate
from tests.deploy.files import DOCKERFILE, REPO, tool

REQUIRED_LABELS = ("title", "description", "version", "revision", "licenses")


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text(encoding="utf-8"))
    lines = [line.strip() for line in text.splitlines()]
    return [
        (word.upper(), rest.strip())
        for word, _, rest in (line.partition(" ") for line in lines)
        if word and not word.startswith("#")
    ]


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def pip_installs(steps: list[tuple[str, str]]) -> list[list[str]]:
    commands = [args for word, args in steps if word == "RUN" and "pip install" in args]
    return [shlex.split(command)[1:] for command in commands]


def test_hadolint_finds_nothing_at_any_level() -> None:
    label_rules = [
        option
        for label in REQUIRED_LABELS
        for option in ("--require-label", f"org.opencontainers.image.{label}:text")
    ]
    result = tool(
        "hadolint",
        *("--no-color", "--format", "json", "--failure-threshold", "style"),
        *("--disable-ignore-pragma", *label_rules, DOCKERFILE),
    )
    assert json.loads(result.stdout or "[]") == [], result.stdout
    assert result.returncode == 0, result.stderr


def test_the_image_installs_the_runtime_lock_then_the_project_without_deps() -> None:
    installs = [" ".join(words) for words in pip_installs(instructions())]
    assert installs == [
        "install --no-cache-dir --require-hashes -r requirements.lock -r requirements-build.lock",
        "install --no-cache-dir --no-deps --no-build-isolation . "
        "&& pip uninstall --yes setuptools pip",
    ]


def test_ci_runs_the_same_two_install_steps_on_the_dev_lock() -> None:
    script = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    installs = [
        " ".join(shlex.split(line)[3:])
        for line in script.splitlines()
        if line.startswith(".venv/bin/python -m pip install") and "--upgrade pip" not in line
    ]
    assert installs == [
        "install --quiet --require-hashes -r requirements-dev.lock -r requirements-build.lock",
        "install --quiet --no-deps --no-build-isolation -e .",
    ]


def test_the_final_stage_runs_user_sync_serve_as_a_fixed_non_root_user() -> None:
    stage = dict(final_stage())
    assert re.fullmatch(r"[1-9]\d{3,}:[1-9]\d{3,}", stage["USER"])
    assert json.loads(stage["ENTRYPOINT"]) == ["user-sync"]
    assert json.loads(stage["CMD"]) == ["serve"]
    assert stage["EXPOSE"] == "8080"
    assert "/healthz" in stage["HEALTHCHECK"]
    for variable in ("PATH=/opt/venv/bin:$PATH", "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1"):
        assert variable in stage["ENV"]


def test_the_final_stage_copies_only_the_venv() -> None:
    copies = [args for word, args in final_stage() if word == "COPY"]
    assert copies == ["--from=builder /opt/venv /opt/venv"]
    assert not [args for word, args in final_stage() if word == "RUN" and "apt-get" in args]


def test_every_file_the_build_copies_passes_the_dockerignore() -> None:
    allowed = {
        line.removeprefix("!").rstrip("/")
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.startswith("!")
    }
    sources = {
        source.rstrip("/")
        for word, args in instructions()
        if word == "COPY" and not args.startswith("--from")
        for source in args.split()[:-1]
    }
    assert sources <= allowed
    assert all((REPO / source).exists() for source in sources)


def test_migrate_finds_the_migrations_in_the_package_from_any_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The image copies no migrations: they are package data, found wherever the process runs."""
    monkeypatch.chdir(tmp_path)
    config = migrate.alembic_config()
    assert config.config_file_name is None
    assert migrate.head_revision() is not None


def test_no_syntax_directive_makes_buildkit_fetch_a_frontend_image() -> None:
    """`# syntax=` before the first instruction names a frontend image that BuildKit pulls
    from a registry; the plain Dockerfile frontend builds this file."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert not re.search(r"^#\s*syntax\s*=", text, flags=re.IGNORECASE | re.MULTILINE)
