"""HTTP Basic authentication as Twilio does it: Account SID + auth token, or API key + secret.

Anything else, including no credentials at all, is 401 with code 20003 "Authenticate".
Decoded with the standard library: aiohttp's `BasicAuth` is deprecated from 3.14 on.
"""

from __future__ import annotations

import base64
import hmac

from service.emulator.config import EmulatorConfig
from service.emulator.errors import unauthenticated


def authenticate(authorization: str | None, config: EmulatorConfig) -> str:
    """The authenticated username (account or API key sid), or raises the 401 `ApiError`."""
    username, password = _credentials(authorization or "")
    expected = _secret_for(username, config)
    if expected is None or not hmac.compare_digest(password.encode(), expected.encode()):
        raise unauthenticated()
    return username


def _credentials(authorization: str) -> tuple[str, str]:
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        raise unauthenticated()
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except ValueError:  # binascii.Error, UnicodeDecodeError, or non-ASCII header text
        raise unauthenticated() from None
    username, separator, password = decoded.partition(":")
    if not separator:
        raise unauthenticated()
    return username, password


def _secret_for(username: str, config: EmulatorConfig) -> str | None:
    if username == config.account_sid:
        return config.auth_token
    return config.api_keys.get(username)
