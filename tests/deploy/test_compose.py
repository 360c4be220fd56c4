"""deploy/compose.yaml: valid against the Compose Specification, and wired the way it runs.

The schema is the compose-spec JSON schema that check-jsonschema ships (`vendor.compose-spec`),
so no network is needed. Beyond the schema: every dependency waits on a condition its target
can meet, and the service is configured for the emulator it starts (its real defaults).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from service.emulator import config as emulator
from tests.deploy.files import COMPOSE_FILE, load_yaml, tool
from tests.deploy.settings import settings_from


def services() -> dict[str, dict[str, Any]]:
    return dict(load_yaml(COMPOSE_FILE)["services"])


def test_compose_file_is_valid_against_the_compose_spec() -> None:
    result = tool("check-jsonschema", "--builtin-schema", "vendor.compose-spec", COMPOSE_FILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_catches_a_bad_condition(tmp_path: Path) -> None:
    bad = tmp_path / "compose.yaml"
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    bad.write_text(text.replace("service_completed_successfully", "service_finished"))
    result = tool("check-jsonschema", "--builtin-schema", "vendor.compose-spec", bad)
    assert result.returncode != 0


def test_it_runs_postgres_the_emulator_a_migration_and_the_service() -> None:
    commands = {name: service.get("command") for name, service in services().items()}
    assert commands == {
        "postgres": None,
        "emulator": ["emulator", "--host", "0.0.0.0", "--port", "4010"],
        "migrate": ["migrate"],
        "user-sync": ["serve"],
    }


def test_dependencies_wait_on_conditions_their_targets_can_meet() -> None:
    all_services = services()
    for name, service in all_services.items():
        for target, dependency in service.get("depends_on", {}).items():
            condition = dependency["condition"]
            assert target in all_services, f"{name} depends on unknown {target}"
            if condition == "service_healthy":
                assert "test" in all_services[target].get("healthcheck", {}), (name, target)
            if condition == "service_completed_successfully":
                assert all_services[target].get("restart") == "no", (name, target)
    waits = {t: d["condition"] for t, d in all_services["user-sync"]["depends_on"].items()}
    assert waits == {
        "postgres": "service_healthy",
        "emulator": "service_healthy",
        "migrate": "service_completed_successfully",
    }


def test_the_service_is_configured_for_the_emulator_it_starts() -> None:
    environment = services()["user-sync"]["environment"]
    assert environment["USERSYNC_API_BASE_URL"] == "http://emulator:4010"
    assert environment["TWILIO_ACCOUNT_SID"] == emulator.DEFAULT_ACCOUNT_SID
    assert environment["TWILIO_AUTH_TOKEN"] == emulator.DEFAULT_AUTH_TOKEN
    assert environment["USERSYNC_SERVICE_SID"] == emulator.DEFAULT_SERVICE_SID


@pytest.mark.parametrize("name", ["migrate", "user-sync"])
def test_the_settings_accept_the_environment(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_from(services()[name]["environment"], monkeypatch)
    assert settings.require_database_url().startswith("postgresql://")


def test_the_service_is_hardened_like_the_kubernetes_pods() -> None:
    service = services()["user-sync"]
    assert service["read_only"] is True
    assert service["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in service["security_opt"]
