"""Settings: names from DESIGN.md, nonsense refused with the variable named, secrets hidden."""

from __future__ import annotations

import re

import pytest

from service import config
from service.config import ConfigError, Settings, load_settings

ACCOUNT = "AC" + "1" * 32
SECRET = "s3cr3t-token-value"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    for name in ("DATABASE_URL", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("USERSYNC_SECRETS_DIR", str(tmp_path / "no-secrets"))


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("USERSYNC_WRITE_RATE", "40", "USERSYNC_WRITE_RATE"),
        ("USERSYNC_WRITE_RATE", "fast", "USERSYNC_WRITE_RATE"),
        ("USERSYNC_WRITE_RATE", "0", "USERSYNC_WRITE_RATE"),
        ("TWILIO_ACCOUNT_SID", "ACnothex", "TWILIO_ACCOUNT_SID"),
        ("USERSYNC_SERVICE_SID", "IS123", "USERSYNC_SERVICE_SID"),
        ("USERSYNC_API", "chat-v3", "USERSYNC_API"),
        ("USERSYNC_DELETE_MODE", "sometimes", "USERSYNC_DELETE_MODE"),
        ("USERSYNC_MAX_DELETES_PERCENT", "150", "USERSYNC_MAX_DELETES_PERCENT"),
        ("USERSYNC_PROTECTED_IDENTITY_PATTERN", "([", "USERSYNC_PROTECTED_IDENTITY_PATTERN"),
        ("USERSYNC_SOURCE_TABLE", "users; drop table x", "USERSYNC_SOURCE_TABLE"),
        ("USERSYNC_HTTP_PORT", "70000", "USERSYNC_HTTP_PORT"),
        ("USERSYNC_LOG_LEVEL", "LOUD", "USERSYNC_LOG_LEVEL"),
        ("USERSYNC_MAX_IN_FLIGHT", "0", "USERSYNC_MAX_IN_FLIGHT"),
    ],
)
def test_a_bad_value_fails_with_a_message_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, named: str
):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=named):
        load_settings()


def test_a_write_rate_over_thirty_needs_the_raised_limit_override(monkeypatch):
    monkeypatch.setenv("USERSYNC_WRITE_RATE", "60")
    monkeypatch.setenv("USERSYNC_WRITE_RATE_LIMIT_RAISED", "true")
    assert load_settings().write_rate == 60


def test_chat_v2_needs_a_service_sid(monkeypatch):
    monkeypatch.setenv("USERSYNC_API", "chat-v2")
    with pytest.raises(ConfigError, match="USERSYNC_SERVICE_SID"):
        load_settings()


def test_api_key_and_secret_come_together(monkeypatch):
    monkeypatch.setenv("TWILIO_API_KEY", "SK" + "2" * 32)
    with pytest.raises(ConfigError, match="TWILIO_API_SECRET"):
        load_settings()


def test_plain_database_url_is_accepted(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@db/x")
    assert load_settings().require_database_url() == "postgresql://u:p@db/x"


def test_missing_credentials_are_named_when_needed():
    with pytest.raises(ConfigError, match="TWILIO_ACCOUNT_SID"):
        load_settings().credentials()


def test_api_key_takes_precedence_over_the_auth_token(monkeypatch):
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", ACCOUNT)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", SECRET)
    monkeypatch.setenv("TWILIO_API_KEY", "SK" + "2" * 32)
    monkeypatch.setenv("TWILIO_API_SECRET", "key-secret")
    assert load_settings().credentials() == ("SK" + "2" * 32, "key-secret")


def test_secrets_never_appear_in_reprs_or_error_messages(monkeypatch):
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", ACCOUNT)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", SECRET)
    monkeypatch.setenv("USERSYNC_API_TOKEN", "admin-" + SECRET)
    settings = load_settings()
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings.model_dump())
    monkeypatch.setenv("USERSYNC_WRITE_RATE", "nonsense")
    with pytest.raises(ConfigError) as failure:
        load_settings()
    assert SECRET not in str(failure.value)


def test_secrets_can_come_from_files(monkeypatch, tmp_path):
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "TWILIO_AUTH_TOKEN").write_text(SECRET)
    monkeypatch.setenv("USERSYNC_SECRETS_DIR", str(secrets))
    settings = load_settings()
    assert settings.auth_token is not None
    assert settings.auth_token.get_secret_value() == SECRET


def test_defaults_follow_the_design():
    settings = Settings(_env_file=None)
    assert settings.write_rate == 30 and settings.write_rate_adaptive
    assert settings.webhook_enabled is False
    assert (settings.http_host, settings.http_port) == ("0.0.0.0", 8080)
    assert settings.base_url == "https://conversations.twilio.com"


def test_a_deletion_grace_period_needs_the_suspended_role(monkeypatch):
    monkeypatch.setenv("USERSYNC_DELETE_GRACE", "604800")
    with pytest.raises(ConfigError, match="USERSYNC_DELETE_GRACE needs USERSYNC_SUSPENDED_ROLE"):
        load_settings()
    monkeypatch.setenv("USERSYNC_SUSPENDED_ROLE", "suspended")
    assert load_settings().delete_grace == 604800


def test_a_write_rate_floor_over_the_ceiling_is_refused(monkeypatch):
    monkeypatch.setenv("USERSYNC_WRITE_RATE", "10")
    monkeypatch.setenv("USERSYNC_WRITE_RATE_FLOOR", "12")
    with pytest.raises(ConfigError, match="USERSYNC_WRITE_RATE_FLOOR=12 is over"):
        load_settings()


def test_the_unquoted_name_classes_are_postgres_letters_on_every_code_point():
    """`_LETTER` says by exclusion what Postgres' scanner takes for a letter: ASCII letters,
    `_` and every non-ASCII character but surrogates; `_LETTER_OR_DIGIT` adds digits and `$`."""
    ranges = "A-Za-z_\u0080-\ud7ff\ue000-\U0010ffff"
    pairs = [
        (re.compile(f"[{config._LETTER}]"), re.compile(f"[{ranges}]")),
        (re.compile(f"[{config._LETTER_OR_DIGIT}]"), re.compile(f"[{ranges}0-9$]")),
    ]
    for ours, spelled_out in pairs:
        points = (chr(c) for c in range(0x110000))
        differ = [c for c in points if bool(ours.match(c)) != bool(spelled_out.match(c))]
        assert differ == []
