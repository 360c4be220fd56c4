"""The words of a run that every layer stores or shows: what it covers and where it stands.

`sync_run.status` holds a `RunStatus` (`RUNNING` until the run is recorded finished), and
`sync_run.scope` a `Scope`; the SQL that reads them spells them from here.
"""

from __future__ import annotations

from enum import StrEnum


class Scope(StrEnum):
    FULL = "full"
    """Every local and remote user."""
    INCREMENTAL = "incremental"
    """Users changed since the last run, and those due for a retry."""
    USERS = "users"
    """The users a request names."""


class RunStatus(StrEnum):
    RUNNING = "running"
    """Started and not yet recorded finished (a killed run stays so until it is seen dead)."""
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"
    """Finished, with some users failed or deletions held."""
    FAILED = "failed"
    """Failed as a whole (`error` says why)."""
    ABORTED = "aborted"
    """Stopped before it finished (shutdown, cancelled)."""
