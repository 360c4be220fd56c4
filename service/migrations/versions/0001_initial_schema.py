"""Initial schema: the source table, per-user sync state, run records and errors.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = "'synced', 'pending', 'failed', 'quarantined', 'deleted'"
RUN_STATUSES = "'running', 'succeeded', 'partial', 'failed', 'aborted'"


def _timestamp(name: str, *, default: bool = True) -> sa.Column[object]:
    return sa.Column(
        name,
        sa.DateTime(timezone=True),
        server_default=sa.func.now() if default else None,
        nullable=not default,
    )


def upgrade() -> None:
    op.create_table(
        "internal_users",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("identity", sa.Text(), nullable=False),
        sa.Column("friendly_name", sa.Text()),
        sa.Column("role", sa.Text()),
        sa.Column("attributes", postgresql.JSONB(), nullable=False, server_default=sa.text("'{}'")),
        sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.true()),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_internal_users"),
        sa.UniqueConstraint("identity", name="uq_internal_users_identity"),
        sa.CheckConstraint(
            "jsonb_typeof(attributes) = 'object'", name="ck_internal_users_attributes_object"
        ),
    )
    op.create_table(
        "sync_state",
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("remote_sid", sa.Text()),
        sa.Column("identity", sa.Text()),
        sa.Column("fingerprint", sa.Text()),
        sa.Column("attempted_fingerprint", sa.Text()),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error_code", sa.Integer()),
        sa.Column("last_error_message", sa.Text()),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True)),
        sa.Column("last_synced_at", sa.DateTime(timezone=True)),
        sa.Column("retired_sid", sa.Text()),
        sa.Column(
            "managed_keys",
            postgresql.ARRAY(sa.Text()),
            nullable=False,
            server_default=sa.text("'{}'"),
        ),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("user_id", name="pk_sync_state"),
        sa.CheckConstraint(f"status IN ({STATUSES})", name="ck_sync_state_status"),
    )
    op.create_index("ix_sync_state_remote_sid", "sync_state", ["remote_sid"])
    op.create_index("ix_sync_state_identity", "sync_state", ["identity"])
    op.create_index(
        "ix_sync_state_due",
        "sync_state",
        ["next_attempt_at"],
        postgresql_where=sa.text("status IN ('failed', 'quarantined', 'pending')"),
    )
    op.create_table(
        "sync_run",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("service_key", sa.Text(), nullable=False),
        sa.Column("trigger", sa.Text(), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("target", sa.Text()),
        sa.Column("dry_run", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("allow_deletes", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("status", sa.Text(), nullable=False),
        _timestamp("started_at"),
        _timestamp("finished_at", default=False),
        sa.Column("counts", postgresql.JSONB(), nullable=False, server_default=sa.text("'{}'")),
        sa.Column("api_calls", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("deletions_held", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("held_reason", sa.Text()),
        sa.Column(
            "held_deletions", postgresql.JSONB(), nullable=False, server_default=sa.text("'[]'")
        ),
        sa.Column("error", sa.Text()),
        sa.Column("pid", sa.Integer()),
        sa.PrimaryKeyConstraint("id", name="pk_sync_run"),
        sa.CheckConstraint(f"status IN ({RUN_STATUSES})", name="ck_sync_run_status"),
    )
    op.create_index("ix_sync_run_status", "sync_run", ["status"])
    op.create_index("ix_sync_run_started_at", "sync_run", ["started_at"])
    op.create_table(
        "sync_error",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.Text()),
        sa.Column("identity", sa.Text()),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("field", sa.Text()),
        sa.Column("http_status", sa.Integer()),
        sa.Column("twilio_code", sa.Integer()),
        sa.Column("message", sa.Text(), nullable=False),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_sync_error"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["sync_run.id"], name="fk_sync_error_run_id_sync_run", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_sync_error_run_id", "sync_error", ["run_id"])
    op.create_index("ix_sync_error_user_id", "sync_error", ["user_id"])
    op.create_index("ix_sync_error_created_at", "sync_error", ["created_at"])


def downgrade() -> None:
    op.drop_table("sync_error")
    op.drop_table("sync_run")
    op.drop_table("sync_state")
    op.drop_table("internal_users")
