"""Suspended users: the grace period before a deletion (`domain.suspension`).

The new status `suspended` joins the check on `sync_state.status`.
`sync_state.delete_after` is when a suspended user's grace period ends (a partial index finds
the due ones for incremental runs); `restore_role_sid` is the role it had before, given back on
reactivation when the source names none. Both are NULL for every user that is not suspended, so
existing rows need no backfill. The downgrade loses only suspensions in progress: their states
become `synced` again (a status the code before this revision knows), so those users are deleted
as if there were no grace period, by the guarded runs that look at them.

Revision ID: 0008_suspension
Revises: 0005
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_suspension"
down_revision: str | None = "0007_write_guard"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_STATUSES = "'synced', 'pending', 'failed', 'quarantined', 'deleted', 'waiting'"
STATUSES = f"{OLD_STATUSES}, 'suspended'"
STATUS_CHECK = "ck_sync_state_ck_sync_state_status"
"""The name 0001 gave the check (its explicit name went through the naming convention)."""


def upgrade() -> None:
    op.add_column("sync_state", sa.Column("delete_after", sa.DateTime(timezone=True)))
    op.add_column("sync_state", sa.Column("restore_role_sid", sa.Text()))
    op.create_index(
        "ix_sync_state_delete_after",
        "sync_state",
        ["delete_after"],
        postgresql_where=sa.text("delete_after IS NOT NULL"),
    )
    _statuses(STATUSES)


def downgrade() -> None:
    op.execute("UPDATE sync_state SET status = 'synced' WHERE status = 'suspended'")
    _statuses(OLD_STATUSES)
    op.drop_index("ix_sync_state_delete_after", table_name="sync_state")
    op.drop_column("sync_state", "restore_role_sid")
    op.drop_column("sync_state", "delete_after")


def _statuses(allowed: str) -> None:
    op.drop_constraint(op.f(STATUS_CHECK), "sync_state", type_="check")
    op.create_check_constraint(op.f(STATUS_CHECK), "sync_state", f"status IN ({allowed})")
