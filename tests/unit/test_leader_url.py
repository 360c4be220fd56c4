"""USERSYNC_LEADER_DATABASE_URL: where session locks and LISTEN go, read like the main URL."""

from __future__ import annotations

import pytest

from service.config import ConfigError, Settings, load_settings
from service.logs import secret_values

MAIN = "postgresql://sync:main-pass-123@pgbouncer:6432/hr"
DIRECT = "postgresql://sync:direct-pass-456@db.internal:5432/hr?sslmode=prefer"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    for name in ("DATABASE_URL", "USERSYNC_DATABASE_URL", "USERSYNC_LEADER_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("USERSYNC_SECRETS_DIR", str(tmp_path / "no-secrets"))


def test_sessions_use_the_main_url_when_no_leader_url_is_set():
    settings = Settings(_env_file=None, database_url=MAIN)
    assert settings.require_session_database_url() == MAIN


def test_sessions_use_the_leader_url_when_it_is_set(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("USERSYNC_DATABASE_URL", MAIN)
    monkeypatch.setenv("USERSYNC_LEADER_DATABASE_URL", DIRECT)
    settings = load_settings()
    assert settings.require_session_database_url() == DIRECT
    assert settings.require_database_url() == MAIN


def test_a_bad_leader_url_fails_at_start_naming_it_and_not_the_password(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv("USERSYNC_LEADER_DATABASE_URL", DIRECT.replace("sslmode", "ssl_mode"))
    with pytest.raises(ConfigError) as failure:
        load_settings()
    assert "USERSYNC_LEADER_DATABASE_URL: unsupported parameter 'ssl_mode'" in str(failure.value)
    assert "direct-pass" not in str(failure.value)


def test_the_leader_urls_password_is_kept_out_of_logs():
    settings = Settings(_env_file=None, database_url=MAIN, leader_database_url=DIRECT)
    assert {"main-pass-123", "direct-pass-456"} <= set(secret_values(settings))
