"""Twilio-shaped identifiers: a two-letter prefix and 32 hex digits.

A seed makes the sequence reproducible (the demo and snapshot-style tests); without one the
sids come from the OS's random source, like Twilio's.
"""

from __future__ import annotations

import random
import re

USER_PREFIX = "US"
SERVICE_PREFIX = "IS"
ROLE_PREFIX = "RL"
MESSAGING_SERVICE_PREFIX = "MG"
REQUEST_PREFIX = "RQ"


def sid_pattern(prefix: str) -> re.Pattern[str]:
    """The spec's `^XX[0-9a-fA-F]{32}$` for one prefix."""
    return re.compile(rf"^{prefix}[0-9a-fA-F]{{32}}$")


class SidFactory:
    """Makes new sids; deterministic when built with a seed."""

    def __init__(self, seed: int | None = None) -> None:
        self._random = random.Random(seed) if seed is not None else random.SystemRandom()

    def new(self, prefix: str) -> str:
        return f"{prefix}{self._random.getrandbits(128):032x}"
