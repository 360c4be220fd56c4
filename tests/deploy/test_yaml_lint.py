"""yamllint over every YAML file under deploy/, warnings included (--strict)."""

from __future__ import annotations

from pathlib import Path

from tests.deploy.files import DEPLOY, REPO, tool


def test_deploy_yaml_is_lint_clean() -> None:
    result = tool(
        "yamllint", "--strict", "--format", "parsable", "--config-file", ".yamllint", DEPLOY
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_yamllint_config_is_itself_lint_clean() -> None:
    result = tool("yamllint", "--strict", "--config-file", ".yamllint", REPO / ".yamllint")
    assert result.returncode == 0, result.stdout + result.stderr


def test_yamllint_catches_a_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("key: value\nkey: again\nlist:\n- not indented\n")
    result = tool("yamllint", "--strict", "--config-file", ".yamllint", bad)
    assert result.returncode != 0
    assert "duplication of key" in result.stdout
