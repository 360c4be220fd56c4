"""`sync_audit`: the per-user audit trail, one row per write made or decided against.

Append-only: a trigger refuses every UPDATE (rows are only inserted, by the recorder, and
deleted, by the pruner past `USERSYNC_AUDIT_RETENTION_DAYS`). Read by user (`user_id`, newest
first: the index scans backwards) and by run (`run_id`); the pruner finds old rows through a
BRIN index on `at`, which costs next to nothing to keep on a table written in time order.
`run_id` has no foreign key: every row is inserted by a join with its `sync_run` row (runs are
never deleted), and the per-row check would cost each write of the trail a fifth more.

Revision ID: 0006_audit_trail
Revises: 0005
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006_audit_trail"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sync_audit",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("service_key", sa.Text(), nullable=False),
        sa.Column("trigger", sa.Text(), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=True),
        sa.Column("identity", sa.Text(), nullable=True),
        sa.Column("sid", sa.Text(), nullable=True),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column(
            "changes",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("twilio_code", sa.Integer(), nullable=True),
        sa.Column("request_id", sa.Text(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_audit")),
    )
    op.create_index("ix_sync_audit_user", "sync_audit", ["user_id", "at", "id"])
    op.create_index("ix_sync_audit_run", "sync_audit", ["run_id", "id"])
    op.create_index("ix_sync_audit_at", "sync_audit", ["at"], postgresql_using="brin")
    op.execute(
        "CREATE FUNCTION sync_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$"
        " BEGIN RAISE EXCEPTION 'sync_audit is append-only: rows are never updated'; END $$"
    )
    op.execute(
        "CREATE TRIGGER sync_audit_append_only BEFORE UPDATE ON sync_audit"
        " FOR EACH STATEMENT EXECUTE FUNCTION sync_audit_append_only()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER sync_audit_append_only ON sync_audit")
    op.execute("DROP FUNCTION sync_audit_append_only()")
    op.drop_table("sync_audit")
