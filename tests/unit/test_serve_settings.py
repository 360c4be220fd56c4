"""The serve settings refuse nonsense, naming the variable."""

from __future__ import annotations

from typing import Any

import pytest

from service.config import ConfigError, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("USERSYNC_SECRETS_DIR", str(tmp_path / "no-secrets"))


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"full_sync_cron": "every day at 3"}, "USERSYNC_FULL_SYNC_CRON"),
        ({"api_token": "short"}, "USERSYNC_API_TOKEN"),
        ({"webhook_secret": "short"}, "USERSYNC_WEBHOOK_SECRET"),
        ({"webhook_signature_header": "X Sig: 1"}, "USERSYNC_WEBHOOK_SIGNATURE_HEADER"),
        ({"webhook_tolerance": 0}, "USERSYNC_WEBHOOK_TOLERANCE"),
        ({"shutdown_grace": 60}, "USERSYNC_SHUTDOWN_GRACE"),
        ({"event_batch_size": 0}, "USERSYNC_EVENT_BATCH_SIZE"),
        ({"incremental_interval": 7200}, "USERSYNC_INCREMENTAL_INTERVAL"),
    ],
)
def test_nonsense_is_refused_naming_the_variable(overrides: dict[str, Any], named: str):
    with pytest.raises(ConfigError, match=named):
        load_settings(_env_file=None, **overrides)


def test_a_cron_schedule_may_go_with_any_incremental_interval():
    settings = load_settings(_env_file=None, full_sync_cron="0 3 * * *", incremental_interval=7200)
    assert settings.full_sync_cron == "0 3 * * *"
