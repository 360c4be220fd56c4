"""The emulator's configuration: who may call it, which service is the default, how strict it is.

The defaults are fixed, well-known values so that a developer can start the emulator and point
the service at it without copying anything; they are fake credentials that only this emulator
accepts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

DEFAULT_ACCOUNT_SID = "AC" + "e0" * 16
DEFAULT_AUTH_TOKEN = "emulator-auth-token-0123456789abcdef"  # noqa: S105 (fake, emulator-only)
DEFAULT_SERVICE_SID = "IS" + "e1" * 16
DEFAULT_MESSAGING_SERVICE_SID = "MG" + "e2" * 16
"""What the account's Configuration names as its default Messaging Service (Twilio makes one
with the default Conversation Service); the emulator has no Messaging Services beyond the name."""
DEFAULT_WRITE_LIMIT_PER_SECOND = 30.0
"""Twilio's documented limit: user create, update and delete share 30 actions/s per Service."""


def _no_keys() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True)
class EmulatorConfig:
    """Everything the emulator needs to start; `port=0` lets the OS choose a free port."""

    host: str = "127.0.0.1"
    port: int = 0
    account_sid: str = DEFAULT_ACCOUNT_SID
    auth_token: str = DEFAULT_AUTH_TOKEN
    default_service_sid: str = DEFAULT_SERVICE_SID
    api_keys: Mapping[str, str] = field(default_factory=_no_keys)
    """API key sid (`SK…`) -> secret, accepted as Basic credentials besides the auth token."""
    write_limit_per_second: float | None = DEFAULT_WRITE_LIMIT_PER_SECOND
    """Writes per second per Service before 429/20429; None turns the limit off."""
    seed: int | None = None
    """Makes generated sids (and fault fractions) deterministic when set."""
