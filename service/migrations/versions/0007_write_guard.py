"""The write guard's log and the cost of a run.

- `sync_write` logs every user a guarded run decided to create or update (`applied`), so the
  write guard counts the distinct users written within the rolling window across runs, and
  keeps the writes it holds (`held`, one row per user however many runs held it again).
- `sync_run` says whether a run was allowed to write past the guard (`allow_writes`), how many
  distinct users it wrote or would write (`users_written`; each may count as an active user of
  the month at Twilio) and the writes it held (`writes_held`, `write_held_reason`,
  `held_writes`).

Revision ID: 0007_write_guard
Revises: 0005
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007_write_guard"
down_revision: str | None = "0006_audit_trail"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sync_write",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("service_key", sa.Text(), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("identity", sa.Text()),
        sa.Column("held_reason", sa.Text()),
        sa.Column(
            "decided_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("id", name="pk_sync_write"),
        sa.CheckConstraint("state IN ('held', 'applied')", name="ck_sync_write_state"),
    )
    op.create_index("ix_sync_write_window", "sync_write", ["service_key", "state", "decided_at"])
    op.create_index(
        "uq_sync_write_held",
        "sync_write",
        ["service_key", "user_id"],
        unique=True,
        postgresql_where=sa.text("state = 'held'"),
    )
    op.add_column(
        "sync_run",
        sa.Column("allow_writes", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column(
        "sync_run", sa.Column("users_written", sa.Integer(), nullable=False, server_default="0")
    )
    op.add_column(
        "sync_run", sa.Column("writes_held", sa.Integer(), nullable=False, server_default="0")
    )
    op.add_column("sync_run", sa.Column("write_held_reason", sa.Text()))
    op.add_column(
        "sync_run",
        sa.Column(
            "held_writes", postgresql.JSONB(), nullable=False, server_default=sa.text("'[]'")
        ),
    )


def downgrade() -> None:
    for column in ("held_writes", "write_held_reason", "writes_held", "users_written"):
        op.drop_column("sync_run", column)
    op.drop_column("sync_run", "allow_writes")
    op.drop_table("sync_write")
