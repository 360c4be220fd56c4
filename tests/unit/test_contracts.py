"""The layer contracts hold: a lower layer that reaches up, or a domain that reads the clock, fails.

The import contracts are import-linter's (pyproject `[tool.importlinter]`); each case here runs it
on a copy of the tree with one offending line added and expects that copy to be refused. Reading
the clock is no import (`datetime` is the domain's vocabulary), so that is checked in the code.
"""

from __future__ import annotations

import ast
import importlib.util
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from service.db.vocabulary import UNCONFIRMED_ORDER
from service.domain.runs import RunStatus
from service.domain.users import UNCONFIRMED

ROOT = Path(__file__).resolve().parents[2]
DOMAIN = ROOT / "service" / "domain"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
CLOCK_READS = frozenset(
    {"now", "utcnow", "today", "time", "time_ns", "monotonic", "monotonic_ns", "perf_counter"}
)
"""Calls that read a clock (`datetime.now()`, `date.today()`, `time.monotonic()`, `loop.time()`)."""


def clock_reads(source: str) -> list[str]:
    """Where `source` reads a clock: `line: call` for each call named in `CLOCK_READS`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in CLOCK_READS:
                found.append(f"{node.lineno}: {ast.unparse(func)}()")
    return found


def test_the_domain_never_reads_the_clock() -> None:
    reads = {
        str(path.relative_to(ROOT)): clock_reads(path.read_text())
        for path in sorted(DOMAIN.rglob("*.py"))
    }
    assert {path: lines for path, lines in reads.items() if lines} == {}


@pytest.mark.parametrize(
    "line",
    [
        "from datetime import datetime\n_NOW = datetime.now()\n",
        "import datetime\nTODAY = datetime.date.today()\n",
        "from time import monotonic\nSTART = monotonic()\n",
    ],
)
def test_the_clock_check_finds_a_clock_read(line: str) -> None:
    source = (DOMAIN / "backoff.py").read_text() + line
    assert len(clock_reads(source)) == 1


def lint_copy(tmp_path: Path, module: str, line: str) -> subprocess.CompletedProcess[str]:
    """lint-imports over a copy of the tree whose `module` (a path) has `line` appended."""
    shutil.copytree(ROOT / "service", tmp_path / "service", ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    with (tmp_path / module).open("a") as f:
        f.write(line)
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_unchanged_tree_keeps_every_contract(tmp_path: Path) -> None:
    result = lint_copy(tmp_path, "service/domain/policy.py", "")
    assert result.returncode == 0, result.stdout
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "edge"),
    [
        (
            "service/domain/policy.py",
            "from service.config import Settings\n",
            "service.domain.policy -> service.config",
        ),
        (
            "service/domain/backoff.py",
            "from service import display\n",
            "service.domain.backoff -> service.display",
        ),
        (
            "service/conversations/client.py",
            "from service.config import Settings\n",
            "service.conversations.client -> service.config",
        ),
        (
            "service/db/status.py",
            "from service.metrics import Metrics\n",
            "service.db.status -> service.metrics",
        ),
        (
            "service/reconcile/run.py",
            "from service import logs\n",
            "service.reconcile.run -> service.logs",
        ),
        (
            "service/domain/waits.py",
            "import structlog\n",
            "service.domain.waits -> structlog",
        ),
    ],
)
def test_a_lower_layer_reaching_up_is_refused(
    tmp_path: Path, module: str, line: str, edge: str
) -> None:
    result = lint_copy(tmp_path, module, line)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout
    assert edge in result.stdout


def test_the_database_holds_exactly_the_run_statuses() -> None:
    """`sync_run.status`'s CHECK (migration 0001) allows exactly `RunStatus`, `running` too."""
    path = ROOT / "service" / "migrations" / "versions" / "0001_initial_schema.py"
    spec = importlib.util.spec_from_file_location("initial_schema", path)
    assert spec is not None and spec.loader is not None
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    allowed = {word.strip(" '") for word in migration.RUN_STATUSES.split(",")}
    assert allowed == {status.value for status in RunStatus}


def test_the_sql_spelling_of_unconfirmed_states_is_the_domain_set() -> None:
    """`db.vocabulary` orders `domain.users.UNCONFIRMED` as the migrations spell it."""
    assert frozenset(UNCONFIRMED_ORDER) == UNCONFIRMED
    assert len(UNCONFIRMED_ORDER) == len(UNCONFIRMED)


def _layered() -> list[str]:
    """The modules pyproject's layers contract names (`a | b`, `a : b`: both in that layer)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    [layers] = [c for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers"]
    names = " ".join(layers["layers"]).replace("|", " ").replace(":", " ")
    return names.split()


def test_every_module_of_the_service_is_in_a_layer() -> None:
    """A module outside every layer escapes the contracts (service.migrations did)."""
    layered = _layered()
    modules = [
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for path in sorted((ROOT / "service").rglob("*.py"))
    ]
    outside = [
        m
        for m in modules
        if m != "service" and not any(m == n or m.startswith(n + ".") for n in layered)
    ]
    assert outside == []
    # import-linter sees only packages: a folder of modules without `__init__.py` goes unchecked
    packages = [p.parent for p in (ROOT / "service").rglob("*.py") if p.name != "__init__.py"]
    assert [str(d) for d in sorted(set(packages)) if not (d / "__init__.py").exists()] == []
