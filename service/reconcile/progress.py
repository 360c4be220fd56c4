"""How far a run has got, for a display that polls it (the CLI's progress bar on a TTY).

The runner updates a `RunProgress` in place as it goes; reading it never blocks the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Phase(StrEnum):
    STARTING = "starting"
    LISTING = "listing remote users"
    RECONCILING = "reconciling"
    DELETING = "deleting"


@dataclass(slots=True)
class RunProgress:
    phase: Phase = Phase.STARTING
    listed: int = 0
    """Remote users read so far (full runs list them all first)."""
    total: int | None = None
    """Users the run looks at, once counted (only when `watched`: counting costs a query)."""
    done: int = 0
    """Users with an outcome recorded (deletions included)."""
    watched: bool = True
    """False for the runner's own default: nobody displays it, so nothing is counted."""
