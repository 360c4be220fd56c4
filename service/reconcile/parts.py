"""What a runner is built from: its settings (`RunnerConfig`) and its collaborators
(`RunnerParts`), both wired by the composition root (`app.Connections.runtime`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from service.conversations.client import ConversationsClient
from service.domain.audit import AuditPolicy
from service.domain.backoff import FailureBackoff
from service.domain.policy import Policy
from service.domain.roles import RoleDirectory
from service.reconcile.executor import Executor
from service.reconcile.recorder import Recorder
from service.reconcile.sides import Sides


@dataclass(frozen=True, slots=True)
class RunnerConfig:
    """The settings a runner reads, for the one Service it runs for."""

    service_key: str
    source_table: str
    policy: Policy
    backoff: FailureBackoff
    error_retention: timedelta
    deletion_window: timedelta = timedelta(hours=1)
    audit: AuditPolicy = field(default_factory=AuditPolicy)
    early_writes: bool = True
    """Full runs write the changed users their state remembers while they list
    (`reconcile.early`)."""

    @property
    def trail(self) -> AuditPolicy | None:
        """The audit trail's settings, None when it is off."""
        return self.audit if self.audit.enabled else None


ExecutorFor = Callable[[Callable[[], RoleDirectory]], Executor]
"""An executor for one pass, given the run's roles as read by then (it plans again with them)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunnerParts:
    """What a runner works with, wired by the composition root (`app.Connections.runtime`)."""

    client: ConversationsClient
    sessions: async_sessionmaker[AsyncSession]
    """The pool's sessionmaker: leases, outcomes, the deletion log."""
    lock_engine: AsyncEngine
    """Where each run takes its lock connection (session advisory locks, the temp table of
    remote users): not a transaction pooler."""
    sides: Sides
    recorder: Recorder
    executor: ExecutorFor
