""".ci/image_check.py: the parts that decide what it builds and runs, checked offline.

The script itself builds and runs the image in CI's `image` stage (minutes, as root, with
podman); these tests check what it reads and derives without building anything: the host's
apt mirrors, the weekly base, how compose.yaml's services become podman options, which leftovers
it removes, and that it says SKIPPED, exit 0, where it cannot run at all.
"""

from __future__ import annotations

import datetime
import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.deploy.files import COMPOSE_FILE, DOCKERFILE, REPO, load_yaml

SCRIPT = REPO / ".ci" / "image_check.py"


@pytest.fixture(scope="module")
def check() -> Iterator[ModuleType]:
    """.ci/image_check.py is a script, not a package module: load it from its path."""
    spec = importlib.util.spec_from_file_location("ci_image_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


DEB822 = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian/
Suites: bookworm bookworm-updates
Components: main

Types: deb-src
URIs: http://src.example/debian
Suites: bookworm
Components: main

Types: deb
URIs: http://off.example/debian-security
Suites: bookworm-security
Enabled: no

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
"""


def test_the_mirrors_are_read_from_the_hosts_deb822_sources(check: ModuleType) -> None:
    sources = check.deb822_sources(DEB822)
    assert sources == [
        ("http://mirror.example/debian/", ["bookworm", "bookworm-updates"]),
        ("http://mirror.example/debian-security", ["bookworm-security"]),
    ]
    assert check.mirrors(sources) == check.Mirrors(
        main="http://mirror.example/debian", security="http://mirror.example/debian-security"
    )


def test_one_line_sources_skip_options_comments_and_source_packages(check: ModuleType) -> None:
    text = (
        "# deb http://commented.example/debian bookworm main\n"
        "deb-src http://src.example/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://m.example/debian trixie main\n"
        "deb http://m.example/debian-security trixie-security main # the security mirror\n"
    )
    sources = check.one_line_sources(text)
    assert sources == [
        ("http://m.example/debian", ["trixie"]),
        ("http://m.example/debian-security", ["trixie-security"]),
    ]
    assert check.mirrors(sources).main == "http://m.example/debian"


def test_sources_without_a_security_mirror_are_refused_by_name(check: ModuleType) -> None:
    with pytest.raises(check.CheckFailed, match="security mirror"):
        check.mirrors([("http://m.example/debian", ["bookworm", "bookworm-updates"])])


@pytest.mark.parametrize(
    ("day", "key"),
    [
        (datetime.date(2026, 12, 1), "bookworm-2026w49"),
        (datetime.date(2026, 12, 6), "bookworm-2026w49"),
        (datetime.date(2026, 12, 7), "bookworm-2026w50"),
        (datetime.date(2027, 1, 1), "bookworm-2026w53"),
    ],
)
def test_the_base_is_made_once_an_iso_week(check: ModuleType, day: datetime.date, key: str) -> None:
    assert check.base_key(day) == key


def compose_services() -> dict[str, dict[str, object]]:
    return dict(load_yaml(COMPOSE_FILE)["services"])


def test_composes_hardening_and_healthcheck_become_podman_options(check: ModuleType) -> None:
    services = compose_services()
    options, env = check.compose_options(services["user-sync"], database="postgresql://db")
    assert {"--read-only", "--read-only-tmpfs=false", "--tmpfs=/tmp", "--cap-drop=ALL"} <= set(
        options
    )
    assert "--security-opt=no-new-privileges:true" in options
    health = [option for option in options if option.startswith("--health-cmd=")]
    assert health == [
        '--health-cmd=["python", "-c", "import urllib.request as u; '
        "u.urlopen('http://127.0.0.1:8080/readyz')\"]"
    ]
    assert env["USERSYNC_DATABASE_URL"] == "postgresql://db"
    assert env["USERSYNC_API_BASE_URL"] == "http://emulator:4010"
    assert "--add-host=emulator:127.0.0.1" in options


def test_a_compose_key_the_check_cannot_translate_fails_by_name(check: ModuleType) -> None:
    service = {**compose_services()["user-sync"], "user": "0:0"}
    with pytest.raises(check.CheckFailed, match=r"\['user'\]"):
        check.compose_options(service, database="postgresql://db")


def test_compose_services_start_after_what_they_depend_on(check: ModuleType) -> None:
    services = compose_services()
    order = check.compose_order(services)
    assert sorted(order) == sorted(services)
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert order.index(dependency) < order.index(name)
    assert [name for name in order if check.uses_the_image(services[name])] == [
        "emulator",
        "migrate",
        "user-sync",
    ]


def test_only_a_dead_runs_containers_and_databases_are_leftovers(check: ModuleType) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    gone = int(dead.stdout)
    assert check.leftover(f"usersync-check-{gone}-serve", "usersync-check-")
    assert check.leftover(f"usersync_check_{gone}_main", "usersync_check_")
    assert not check.leftover(f"usersync-check-{os.getpid()}-serve", "usersync-check-")
    assert not check.leftover(f"usersync-check-{gone}x-serve", "usersync-check-")
    assert not check.leftover(f"someone-else-{gone}-serve", "usersync-check-")


def test_it_says_skipped_and_exits_0_when_not_root() -> None:
    """Not root: the one case, with apt-get failing, where it passes without building."""
    command = [sys.executable, str(SCRIPT)]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        assert setpriv is not None, "util-linux's setpriv drops root for this test"
        command = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "IMAGE CHECK SKIPPED" in done.stdout
    assert "NOT built or run" in done.stdout


def test_ci_runs_the_image_check_after_the_linters_and_before_the_tests() -> None:
    lines = (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    stages = [line for line in lines if line.startswith('echo "== ')]
    assert stages[-3:] == ['echo "== lint"', 'echo "== image"', 'echo "== tests"']
    assert ".venv/bin/python .ci/image_check.py" in lines


def test_the_stand_in_is_the_base_the_dockerfile_names(check: ModuleType) -> None:
    assert check.dockerfile_bases(DOCKERFILE.read_text(encoding="utf-8")) == {check.BASE}
    other = "FROM python:3.12-slim AS builder\nFROM builder AS test\nFROM gcr.io/distroless/base\n"
    assert check.dockerfile_bases(other) == {"python:3.12-slim", "gcr.io/distroless/base"}


def test_it_says_skipped_and_exits_0_when_apt_get_cannot_install_the_tools(
    tmp_path: Path,
) -> None:
    """Only the script's own interpreter on PATH, and an apt-get that fails as it does offline."""
    calls = tmp_path / "apt-get.calls"
    apt_get = tmp_path / "apt-get"
    apt_get.write_text(f'#!/bin/sh\necho "$@" >> {calls}\necho "E: no network" >&2\nexit 100\n')
    apt_get.chmod(0o755)
    env = {"PATH": str(tmp_path), "IMAGE_CHECK_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True,
                          timeout=60, check=False, env=env)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "IMAGE CHECK SKIPPED" in done.stdout
    if os.geteuid() == 0:
        assert "E: no network" in done.stdout
        assert calls.read_text().splitlines() == ["update -qq"]
