"""Where the deployment files are, how to read them, and the tools that check them.

The tools (hadolint, yamllint, check-jsonschema) are console scripts of the dev extra: they are
run from the virtual environment of the interpreter running the tests, so the checks do not
depend on PATH (CI runs `.venv/bin/pytest` without activating the environment).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
KUSTOMIZE_BASE = DEPLOY / "kubernetes"
COMPOSE_FILE = DEPLOY / "compose.yaml"
DASHBOARD_FILE = DEPLOY / "grafana" / "user-sync.json"
DOCKERFILE = REPO / "Dockerfile"


def load_yaml(path: Path) -> Any:
    """One YAML document (every file under deploy/ holds exactly one)."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def kustomization() -> dict[str, Any]:
    return dict(load_yaml(KUSTOMIZE_BASE / "kustomization.yaml"))


def kustomize_resources() -> list[Path]:
    return [KUSTOMIZE_BASE / name for name in kustomization()["resources"]]


def manifests() -> dict[str, dict[str, Any]]:
    """The base's resources by kind (one of each kind in this base)."""
    documents = [load_yaml(path) for path in kustomize_resources()]
    by_kind = {document["kind"]: document for document in documents}
    assert len(by_kind) == len(documents), "the base has one resource of each kind"
    return by_kind


def tool(name: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run a dev tool from this interpreter's environment, in the repository root."""
    executable = Path(sys.executable).parent / name
    return subprocess.run(
        [str(executable), *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
