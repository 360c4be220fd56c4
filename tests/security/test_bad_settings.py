"""Every constrained setting, given a bad value, fails at start naming its variable.

The cases are generated from `Settings.model_fields`: each numeric bound (gt/ge/lt/le) is crossed,
each enum gets a value outside it, each validated string gets nonsense, each boolean gets a
non-boolean. A field with a constraint the generator cannot see fails
`test_every_constrained_field_has_a_bad_value`, so new fields cannot slip through.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

import annotated_types
import pytest

from service.config import ConfigError, Settings, _env_name, load_settings

VALIDATED_STRINGS = {
    "source_table": "users; drop table x",
    "account_sid": "ACnothex",
    "api_key": "SK123",
    "service_sid": "IS123",
    "protected_identity_pattern": "([",
    "api_token": "short",
    "webhook_secret": "short",
    "webhook_signature_header": "X Sig: 1",
    "webhook_timestamp_header": "",
    "full_sync_cron": "every day at 3",
    "log_level": "LOUD",
    "database_url": "postgresql://u:pw@db/x?sslmod=require",
    "leader_database_url": "postgresql://u:pw@db/x?sslmod=require",
    "region": "eu1",
    "edge": "paris",
}
UNCONSTRAINED = {
    "auth_token", "api_secret", "api_base_url", "http_host",
}  # fmt: skip


def _numeric_cases(name: str, metadata: list[Any]) -> list[tuple[str, Any]]:
    cases: list[tuple[str, Any]] = [(name, "not-a-number")]
    for bound in metadata:
        if isinstance(bound, annotated_types.Gt):
            cases.append((name, bound.gt))
        if isinstance(bound, annotated_types.Ge):
            cases.append((name, bound.ge - 1))
        if isinstance(bound, annotated_types.Le):
            cases.append((name, bound.le + 1))
        if isinstance(bound, annotated_types.Lt):
            cases.append((name, bound.lt))
    return cases


def bad_values() -> list[tuple[str, Any]]:
    cases: list[tuple[str, Any]] = []
    for name, info in Settings.model_fields.items():
        annotation = info.annotation
        if name in VALIDATED_STRINGS:
            cases.append((name, VALIDATED_STRINGS[name]))
        elif isinstance(annotation, type) and issubclass(annotation, Enum):
            cases.append((name, "no-such-choice"))
        elif annotation is bool:
            cases.append((name, "perhaps"))
        elif annotation in (int, float):
            cases += _numeric_cases(name, info.metadata)
    return cases


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("USERSYNC_SECRETS_DIR", str(tmp_path / "no-secrets"))


def test_every_constrained_field_has_a_bad_value():
    covered = {name for name, _ in bad_values()}
    assert set(Settings.model_fields) - covered == UNCONSTRAINED


@pytest.mark.parametrize(("field", "value"), bad_values(), ids=lambda v: str(v)[:30])
def test_a_bad_value_fails_at_start_naming_the_variable(field: str, value: Any):
    with pytest.raises(ConfigError) as failure:
        load_settings(_env_file=None, **{field: value})
    message = str(failure.value)
    assert _env_name(field) in message
    assert "Traceback" not in message
