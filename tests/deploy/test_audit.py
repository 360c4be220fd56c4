""".ci/audit.py passes a clean audit, fails on a vulnerability, and skips only when unreachable."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from tests.deploy.files import REPO


@pytest.fixture(scope="module")
def audit() -> Iterator[ModuleType]:
    """.ci/audit.py is a script, not a package module: load it from its path."""
    spec = importlib.util.spec_from_file_location("ci_audit", REPO / ".ci" / "audit.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


def dependency(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "version": "1.0", "vulns": [], **fields}


NOT_FOUND = {"skip_reason": "Dependency not found on PyPI and could not be audited"}


def test_a_clean_audit_passes(audit: ModuleType) -> None:
    result = audit.summarize("pypi", [dependency("aiohttp"), dependency("yarl")])
    assert not result.unreachable
    assert audit.verdict("requirements.lock", result) == 0


def test_a_known_vulnerability_fails(audit: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    vuln = {"id": "GHSA-xxxx", "fix_versions": ["1.1"]}
    result = audit.summarize("pypi", [dependency("aiohttp", vulns=[vuln]), dependency("yarl")])
    assert audit.verdict("requirements.lock", result) == 1
    assert "aiohttp==1.0: GHSA-xxxx (fixed in: 1.1)" in capsys.readouterr().err


def test_every_pin_skipped_means_the_service_is_unreachable(audit: ModuleType) -> None:
    result = audit.summarize("pypi", [dependency("aiohttp", **NOT_FOUND)])
    assert result.unreachable


def test_a_connection_error_means_the_service_is_unreachable(audit: ModuleType) -> None:
    error = "requests.exceptions.ConnectionError: Max retries exceeded with url: /v1/query"
    assert audit.Audit("osv", [], [], [], error=error).unreachable


def test_some_pins_skipped_fails(audit: ModuleType) -> None:
    result = audit.summarize("pypi", [dependency("aiohttp"), dependency("yarl", **NOT_FOUND)])
    assert not result.unreachable
    assert audit.verdict("requirements.lock", result) == 1


def test_pip_audit_failing_otherwise_fails(audit: ModuleType) -> None:
    result = audit.Audit("pypi", [], [], [], error="ValueError: bad requirement")
    assert not result.unreachable
    assert audit.verdict("requirements.lock", result) == 1
