"""Typed SQLAlchemy models of our tables. Migrations, not `create_all`, create them.

`internal_users` is the source of truth (operators may point the service at a view with the
same columns instead). `sync_state` has one row per internal user we have looked at; it keeps
no foreign key to `internal_users` because a deleted user's state is what tells us to delete
the remote user. `sync_run` and `sync_error` are the record of what happened.
`user_event` is the durable queue that triggers and webhooks feed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from service.db.vocabulary import HELD, claims_identity, sql_list
from service.domain.users import SyncStatus

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _now() -> Any:
    return func.now()


class InternalUser(Base):
    __tablename__ = "internal_users"

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    identity: Mapped[str] = mapped_column(Text, unique=True)
    friendly_name: Mapped[str | None] = mapped_column(Text)
    role: Mapped[str | None] = mapped_column(Text)
    attributes: Mapped[Any] = mapped_column(JSONB, server_default="{}")
    active: Mapped[bool] = mapped_column(Boolean, server_default="true")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())


class SyncStateRow(Base):
    """One internal user as we last left it, and the claims it holds on remote users.

    Claims are exclusive: a sid is linked (`remote_sid`) or retired (`retired_sid`) by at most
    one state, and an identity claimed by at most one (unique partial indexes). `version`
    counts writes; `lease_run` is the run applying the user now (see `db.leases`).
    """

    __tablename__ = "sync_state"
    __table_args__ = (
        Index(
            "ix_sync_state_due",
            "next_attempt_at",
            postgresql_where=text(
                "status IN "
                + sql_list(SyncStatus.FAILED, SyncStatus.QUARANTINED, SyncStatus.PENDING)
            ),
        ),
        Index(
            "uq_sync_state_remote_sid",
            "remote_sid",
            unique=True,
            postgresql_where=text("remote_sid IS NOT NULL"),
        ),
        Index(
            "uq_sync_state_retired_sid",
            "retired_sid",
            unique=True,
            postgresql_where=text("retired_sid IS NOT NULL"),
        ),
        Index(
            "ix_sync_state_delete_after",
            "delete_after",
            postgresql_where=text("delete_after IS NOT NULL"),
        ),
        Index(
            "uq_sync_state_claimed_identity",
            "identity",
            unique=True,
            postgresql_where=text(claims_identity()),
        ),
    )

    user_id: Mapped[str] = mapped_column(Text, primary_key=True)
    remote_sid: Mapped[str | None] = mapped_column(Text)
    identity: Mapped[str | None] = mapped_column(Text, index=True)
    fingerprint: Mapped[str | None] = mapped_column(Text)
    attempted_fingerprint: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    last_error_code: Mapped[int | None] = mapped_column(Integer)
    last_error_message: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_synced_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    retired_sid: Mapped[str | None] = mapped_column(Text)
    managed_keys: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())
    version: Mapped[int] = mapped_column(BigInteger, server_default="0")
    lease_run: Mapped[int | None] = mapped_column(BigInteger)
    delete_after: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """A suspended user (`domain.suspension`): when its grace period ends."""
    restore_role_sid: Mapped[str | None] = mapped_column(Text)
    """A suspended user: its role before, for a reactivation whose source names none."""
    seen_friendly_name: Mapped[str | None] = mapped_column(Text)
    """The linked remote user as we last left it (`SyncState.seen_attributes`)."""
    seen_role_sid: Mapped[str | None] = mapped_column(Text)
    seen_attributes: Mapped[str | None] = mapped_column(Text)


class SyncRun(Base):
    __tablename__ = "sync_run"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    service_key: Mapped[str] = mapped_column(Text)
    trigger: Mapped[str] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(Text)
    target: Mapped[str | None] = mapped_column(Text)
    dry_run: Mapped[bool] = mapped_column(Boolean, server_default="false")
    allow_deletes: Mapped[bool] = mapped_column(Boolean, server_default="false")
    status: Mapped[str] = mapped_column(Text, index=True)
    started_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=_now(), index=True
    )
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    counts: Mapped[dict[str, int]] = mapped_column(JSONB, server_default="{}")
    api_calls: Mapped[int] = mapped_column(Integer, server_default="0")
    deletions_held: Mapped[int] = mapped_column(Integer, server_default="0")
    held_reason: Mapped[str | None] = mapped_column(Text)
    held_deletions: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default="[]")
    allow_writes: Mapped[bool] = mapped_column(Boolean, server_default="false")
    users_written: Mapped[int] = mapped_column(Integer, server_default="0")
    writes_held: Mapped[int] = mapped_column(Integer, server_default="0")
    write_held_reason: Mapped[str | None] = mapped_column(Text)
    held_writes: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default="[]")
    error: Mapped[str | None] = mapped_column(Text)
    pid: Mapped[int | None] = mapped_column(Integer)
    plan_context: Mapped[str | None] = mapped_column(Text)
    """What the run planned under (`domain.policy.plan_context`)."""


class SyncError(Base):
    __tablename__ = "sync_error"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    run_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("sync_run.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[str | None] = mapped_column(Text, index=True)
    identity: Mapped[str | None] = mapped_column(Text)
    action: Mapped[str] = mapped_column(Text)
    field: Mapped[str | None] = mapped_column(Text)
    http_status: Mapped[int | None] = mapped_column(Integer)
    twilio_code: Mapped[int | None] = mapped_column(Integer)
    message: Mapped[str] = mapped_column(Text)
    request_id: Mapped[str | None] = mapped_column(Text)
    """Twilio's `Twilio-Request-Id` of the failed call, for support tickets."""
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=_now(), index=True
    )


class SyncDeletion(Base):
    """A deletion the guards decided (`state`, a `GuardState`): `applied` (or `failed`) ones
    are the rolling window's log, `held` ones wait for an operator's release (at most one held
    row per remote sid)."""

    __tablename__ = "sync_deletion"
    __table_args__ = (
        Index("ix_sync_deletion_window", "service_key", "state", "decided_at"),
        Index(
            "uq_sync_deletion_held",
            "service_key",
            "sid",
            unique=True,
            postgresql_where=text(HELD),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    service_key: Mapped[str] = mapped_column(Text)
    run_id: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(Text)
    sid: Mapped[str] = mapped_column(Text, index=True)
    user_id: Mapped[str | None] = mapped_column(Text, index=True)
    identity: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    held_reason: Mapped[str | None] = mapped_column(Text)
    decided_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())


class SyncWrite(Base):
    """A user the write guard let a run create or update (`applied`: the rolling window's log)
    or held for an operator's release (`held`, at most one row per user)."""

    __tablename__ = "sync_write"
    __table_args__ = (
        Index("ix_sync_write_window", "service_key", "state", "decided_at"),
        Index(
            "uq_sync_write_held",
            "service_key",
            "user_id",
            unique=True,
            postgresql_where=text(HELD),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    service_key: Mapped[str] = mapped_column(Text)
    run_id: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(Text)
    user_id: Mapped[str] = mapped_column(Text)
    identity: Mapped[str | None] = mapped_column(Text)
    held_reason: Mapped[str | None] = mapped_column(Text)
    decided_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())


class SyncAudit(Base):
    """The audit trail: one row per write made to a user, or decided against (append-only)."""

    __tablename__ = "sync_audit"
    __table_args__ = (
        Index("ix_sync_audit_user", "user_id", "at", "id"),
        Index("ix_sync_audit_run", "run_id", "id"),
        Index("ix_sync_audit_at", "at", postgresql_using="brin"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())
    run_id: Mapped[int] = mapped_column(BigInteger)
    """No foreign key: rows are inserted joined with their run (see migration 0006)."""
    service_key: Mapped[str] = mapped_column(Text)
    trigger: Mapped[str] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(Text)
    user_id: Mapped[str | None] = mapped_column(Text)
    identity: Mapped[str | None] = mapped_column(Text)
    sid: Mapped[str | None] = mapped_column(Text)
    action: Mapped[str] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    changes: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    http_status: Mapped[int | None] = mapped_column(Integer)
    twilio_code: Mapped[int | None] = mapped_column(Integer)
    request_id: Mapped[str | None] = mapped_column(Text)
    message: Mapped[str | None] = mapped_column(Text)


class UserEvent(Base):
    """A hint that one user may need a reconcile; done once the outcome is recorded."""

    __tablename__ = "user_event"
    __table_args__ = (
        Index("ix_user_event_pending", "id", postgresql_where=text("done_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    user_id: Mapped[str] = mapped_column(Text)
    """An internal id, or (from webhooks and the API) an id or an identity."""
    source: Mapped[str] = mapped_column(Text)
    kind: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.clock_timestamp()
    )
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    claimed_by: Mapped[str | None] = mapped_column(Text)
    done_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    run_id: Mapped[int | None] = mapped_column(BigInteger)
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)


class WebhookNonce(Base):
    """The signature of an accepted webhook, kept until its timestamp is too old anyway."""

    __tablename__ = "webhook_nonce"

    signature: Mapped[str] = mapped_column(Text, primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
