"""The account's Conversations Configuration: which Service `/v1/Users` means, and the defaults
new conversations get.

One per account (`GET`/`POST /v1/Configuration`, spec operations `FetchConfiguration` and
`UpdateConfiguration`). The default Conversation Service itself is kept by the `Directory`
(it is what `/v1/Users` and `/v1/Roles` resolve to), so changing it here moves those URLs to
the new Service at once, as Twilio does. The rest is stored here and only echoed back: the
emulator has no conversations for timers to act on and no Messaging Services, so a
`DefaultMessagingServiceSid` is checked for its shape only.

An update is checked completely before anything changes. Refusals are 400/20001 naming the
parameter: a sid of the wrong shape, a Conversation Service that does not exist, a timer that
is not an ISO 8601 duration of days, hours, minutes and seconds (years and months have no
fixed length) or is shorter than the spec's minimum (1 minute inactive, 10 minutes closed;
zero, `PT0S`, turns a timer off and is allowed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from service.emulator.directory import Directory
from service.emulator.errors import invalid_parameter
from service.emulator.sids import MESSAGING_SERVICE_PREFIX, SERVICE_PREFIX, sid_pattern

INACTIVE_TIMER_MIN_SECONDS = 60
CLOSED_TIMER_MIN_SECONDS = 600

_DURATION = re.compile(
    r"^P(?=\d|T\d)(?:(?P<days>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)S)?)?$"
)
_UNIT_SECONDS = {"days": 86400, "hours": 3600, "minutes": 60, "seconds": 1}


@dataclass(slots=True)
class Configuration:
    """What the account's Configuration holds besides the default Conversation Service."""

    default_messaging_service_sid: str | None
    default_inactive_timer: str | None = None
    """An ISO 8601 duration, or None: a new account has no timers."""
    default_closed_timer: str | None = None


@dataclass(frozen=True, slots=True)
class ConfigurationChange:
    """The form fields of an update; None means "not given, leave it"."""

    default_chat_service_sid: str | None = None
    default_messaging_service_sid: str | None = None
    default_inactive_timer: str | None = None
    default_closed_timer: str | None = None


def apply_change(
    change: ConfigurationChange, *, configuration: Configuration, directory: Directory
) -> None:
    """Checks every given field, then applies them all; raises the 400 `ApiError` otherwise."""
    chat = change.default_chat_service_sid
    if chat is not None:
        _check_service(chat, directory)
    messaging = change.default_messaging_service_sid
    if messaging is not None:
        _check_sid(messaging, prefix=MESSAGING_SERVICE_PREFIX, name="DefaultMessagingServiceSid")
    inactive, closed = change.default_inactive_timer, change.default_closed_timer
    if inactive is not None:
        _check_timer(inactive, minimum=INACTIVE_TIMER_MIN_SECONDS, name="DefaultInactiveTimer")
    if closed is not None:
        _check_timer(closed, minimum=CLOSED_TIMER_MIN_SECONDS, name="DefaultClosedTimer")
    if chat is not None:
        directory.default_service_sid = chat
    if messaging is not None:
        configuration.default_messaging_service_sid = messaging
    if inactive is not None:
        configuration.default_inactive_timer = inactive
    if closed is not None:
        configuration.default_closed_timer = closed


def duration_seconds(value: str) -> int | None:
    """Seconds in an ISO 8601 duration of days, hours, minutes and seconds; None if not one."""
    match = _DURATION.match(value)
    if match is None:
        return None
    parts = match.groupdict()
    return sum(int(parts[unit] or 0) * seconds for unit, seconds in _UNIT_SECONDS.items())


def render_configuration(
    configuration: Configuration,
    *,
    default_chat_service_sid: str,
    account_sid: str,
    origin: str,
) -> dict[str, Any]:
    """The spec's `conversations.v1.configuration`, with absolute URLs from `origin`."""
    url = f"{origin}/v1/Configuration"
    return {
        "account_sid": account_sid,
        "default_chat_service_sid": default_chat_service_sid,
        "default_messaging_service_sid": configuration.default_messaging_service_sid,
        "default_inactive_timer": configuration.default_inactive_timer,
        "default_closed_timer": configuration.default_closed_timer,
        "url": url,
        "links": {
            "service": f"{origin}/v1/Services/{default_chat_service_sid}/Configuration",
            "webhooks": f"{url}/Webhooks",
        },
    }


def _check_sid(value: str, *, prefix: str, name: str) -> None:
    if not sid_pattern(prefix).match(value):
        raise invalid_parameter(f"Invalid {name}: {value} is not {prefix} and 32 hex digits")


def _check_service(value: str, directory: Directory) -> None:
    _check_sid(value, prefix=SERVICE_PREFIX, name="DefaultChatServiceSid")
    if directory.service(value) is None:
        raise invalid_parameter(
            f"Invalid DefaultChatServiceSid: no Conversation Service {value} on this account"
        )


def _check_timer(value: str, *, minimum: int, name: str) -> None:
    seconds = duration_seconds(value)
    if seconds is None:
        raise invalid_parameter(f"Invalid {name}: {value} is not an ISO 8601 duration")
    if 0 < seconds < minimum:
        raise invalid_parameter(
            f"Invalid {name}: {value} is shorter than the minimum of {minimum} seconds"
        )
