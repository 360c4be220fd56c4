"""A run's vocabulary: what is asked (`RunRequest`, `Scope`) and what came of it (`RunReport`).

Triggers (the CLI, the schedule, events, the HTTP API) build requests; reports go back to them
and to the renderers (tables, JSON, metrics). Nothing here does I/O.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum

from service.domain.outcome import Failure
from service.domain.plan import DeleteUser
from service.reconcile.progress import RunProgress


class Scope(StrEnum):
    FULL = "full"
    INCREMENTAL = "incremental"
    USERS = "users"


class RunStatus(StrEnum):
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"
    FAILED = "failed"
    ABORTED = "aborted"


class RunInProgress(Exception):
    """Another reconcile of this Service holds the run lock."""


class RunFailed(Exception):
    """A run that failed as a whole; it is recorded and logged already (`report.error` says
    why, naming what to check), so whoever catches this reports it and logs nothing more."""

    def __init__(self, report: RunReport) -> None:
        super().__init__(report.error)
        self.report = report


@dataclass(frozen=True, slots=True)
class RunRequest:
    trigger: str
    scope: Scope
    targets: tuple[str, ...] = ()
    dry_run: bool = False
    allow_deletes: bool = False


@dataclass(slots=True)
class RunReport:
    run_id: int
    request: RunRequest
    status: RunStatus = RunStatus.SUCCEEDED
    counts: Counter[str] = field(default_factory=Counter)
    api_calls: int = 0
    planned: list[str] = field(default_factory=list)
    would_write: int = 0
    """A dry run: the users it would create or update (Twilio bills each as active this month)."""
    failures: list[tuple[str, Failure]] = field(default_factory=list)
    held: list[DeleteUser] = field(default_factory=list)
    held_reason: str | None = None
    error: str | None = None
    remote_total: int | None = None
    """Remote users listed by a full run (the base of the percent guard in mirror mode)."""
    deferred: list[str] = field(default_factory=list)
    """Users left to another run (it held them, or they changed after this run planned)."""
    deferred_keys: set[str] = field(default_factory=set)
    """The ids and identities of `deferred`, as events may name them."""
    waiting: dict[str, str] = field(default_factory=dict)
    """Users waiting for their identity, and the user holding it."""
    progress: RunProgress = field(default_factory=lambda: RunProgress(watched=False))
