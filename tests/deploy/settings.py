"""The environment variables the service reads, and Settings built from a manifest's values."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from pydantic import AliasChoices

from service.config import Settings


def setting_names() -> set[str]:
    """Every variable name Settings reads: USERSYNC_<FIELD>, or the field's aliases."""
    names = set()
    for field, info in Settings.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(choice) for choice in alias.choices)
        else:
            names.add(f"USERSYNC_{field.upper()}")
    return names


def settings_from(environment: Mapping[str, object], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings read from exactly this environment (no .env file, nothing inherited)."""
    for name in setting_names():
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, str(value))
    return Settings(_env_file=None)
