"""Twilio's API host from a region and an edge: the three-part host, default edges, refusals."""

from __future__ import annotations

import pytest

from service.config import ConfigError, Settings, load_settings
from service.regions import REGION_EDGES, api_host, check_edge, check_region

SID = "IS" + "0" * 32


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    for name in ("USERSYNC_REGION", "TWILIO_REGION", "USERSYNC_EDGE", "TWILIO_EDGE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("USERSYNC_API_BASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("USERSYNC_SECRETS_DIR", str(tmp_path / "no-secrets"))


@pytest.mark.parametrize(
    ("region", "edge", "host"),
    [
        (None, None, "conversations.twilio.com"),
        ("ie1", "dublin", "conversations.dublin.ie1.twilio.com"),
        ("au1", "sydney", "conversations.sydney.au1.twilio.com"),
        ("ie1", None, "conversations.dublin.ie1.twilio.com"),
        ("au1", None, "conversations.sydney.au1.twilio.com"),
        ("jp1", None, "conversations.tokyo.jp1.twilio.com"),
        ("us1", None, "conversations.ashburn.us1.twilio.com"),
        (None, "dublin", "conversations.dublin.us1.twilio.com"),
        ("us1", "ashburn-ix", "conversations.ashburn-ix.us1.twilio.com"),
    ],
)
def test_the_host_has_an_edge_and_a_region_or_neither(
    region: str | None, edge: str | None, host: str
):
    assert api_host("conversations", region=region, edge=edge).host == host


@pytest.mark.parametrize("region", list(REGION_EDGES))
def test_a_region_alone_never_makes_the_two_part_host_that_stopped(region: str):
    host = api_host("conversations", region=region, edge=None).host
    assert host.count(".") == 4
    assert host != f"conversations.{region}.twilio.com"


def test_the_default_host_is_processed_in_us1_without_an_edge():
    target = api_host("conversations", region=None, edge=None)
    assert (target.region, target.edge) == ("us1", None)


def test_names_are_taken_in_any_case():
    assert (check_region(" IE1 "), check_edge("Dublin")) == ("ie1", "dublin")


@pytest.mark.parametrize("value", ["eu1", "ie", "us-east-1", "dublin", ""])
def test_an_unknown_region_is_refused_listing_the_known_ones(value: str):
    with pytest.raises(ValueError, match="us1, ie1, au1, jp1"):
        check_region(value)


@pytest.mark.parametrize("value", ["ie1", "paris", "dublin.ie1", ""])
def test_an_unknown_edge_is_refused_listing_the_known_ones(value: str):
    with pytest.raises(ValueError, match="ashburn, dublin"):
        check_edge(value)


def test_settings_derive_the_base_url_for_each_flavour():
    conversations = Settings(_env_file=None, region="ie1")
    chat = Settings(_env_file=None, api="chat-v2", service_sid=SID, region="au1", edge="sydney")
    assert conversations.base_url == "https://conversations.dublin.ie1.twilio.com"
    assert chat.base_url == "https://chat.sydney.au1.twilio.com"


def test_the_base_url_setting_wins_over_region_and_edge():
    settings = Settings(_env_file=None, region="ie1", api_base_url="http://127.0.0.1:4010/")
    assert settings.base_url == "http://127.0.0.1:4010"
    assert settings.api_host.host == "conversations.dublin.ie1.twilio.com"


def test_twilio_library_variables_are_read_too(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TWILIO_REGION", "au1")
    monkeypatch.setenv("TWILIO_EDGE", "sydney")
    assert load_settings().base_url == "https://conversations.sydney.au1.twilio.com"


@pytest.mark.parametrize(
    ("variable", "value"), [("USERSYNC_REGION", "eu1"), ("USERSYNC_EDGE", "paris")]
)
def test_a_bad_region_or_edge_fails_at_start_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=f"{variable}: must be one of Twilio's"):
        load_settings()
