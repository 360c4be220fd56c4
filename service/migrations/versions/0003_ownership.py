"""One owner per remote user: exclusive claims, leases, and the deletion log.

- `sync_state.version` counts every write of a user's state, and `lease_run` names the run
  applying it now: a run writes to Twilio for a user only after taking its lease with the
  version and the source fingerprint it planned from (compare-and-set), so no plan older than
  the user's latest source change or recorded outcome is ever applied.
- Claims are exclusive, and Postgres says so: a remote sid is linked by at most one state, a
  retired sid by at most one, and an identity is claimed (linked, or a create that may have
  happened unrecorded) by at most one. States that broke this before (two users linking one
  remote user) are repaired first: the user that linked it first keeps it, the others are
  unlinked and re-planned.
- `waiting`: a user whose identity is still held by another user's remote user.
- `sync_deletion` logs every deletion decided (applied, failed) and holds the held ones, so the
  deletion guards bound deletions over a rolling window across runs.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_STATUSES = "'synced', 'pending', 'failed', 'quarantined', 'deleted'"
STATUSES = "'synced', 'pending', 'failed', 'quarantined', 'deleted', 'waiting'"
UNCONFIRMED = "'pending', 'failed', 'quarantined'"
CLAIMS_IDENTITY = f"status <> 'deleted' AND (remote_sid IS NOT NULL OR status IN ({UNCONFIRMED}))"
DELETION_STATES = "'held', 'applied', 'failed'"
STATUS_CHECK = "ck_sync_state_ck_sync_state_status"
"""The name 0001 gave the check (its explicit name went through the naming convention)."""

UNLINK = """
    UPDATE sync_state s SET remote_sid = NULL, identity = NULL, fingerprint = NULL,
        status = 'pending', next_attempt_at = now(), updated_at = now(),
        last_error_message = 'unlinked by migration 0003: ' || :why
    FROM ({ranked}) r WHERE r.user_id = s.user_id AND r.n > 1
"""
SAME_SID = """SELECT user_id, row_number() OVER (PARTITION BY remote_sid
    ORDER BY last_synced_at NULLS LAST, user_id) AS n
    FROM sync_state WHERE remote_sid IS NOT NULL"""
SAME_IDENTITY = f"""SELECT user_id, row_number() OVER (PARTITION BY identity
    ORDER BY remote_sid IS NULL, last_synced_at NULLS LAST, user_id) AS n
    FROM sync_state WHERE {CLAIMS_IDENTITY}"""  # noqa: S608 - constants only
SAME_RETIRED = """
    UPDATE sync_state s SET retired_sid = NULL FROM (
        SELECT user_id, row_number() OVER (PARTITION BY retired_sid ORDER BY user_id) AS n
        FROM sync_state WHERE retired_sid IS NOT NULL) r
    WHERE r.user_id = s.user_id AND (r.n > 1 OR EXISTS (
        SELECT 1 FROM sync_state o WHERE o.remote_sid = s.retired_sid))
"""


def _repair() -> None:
    """Make the claims exclusive before Postgres is asked to keep them so."""
    op.execute(
        sa.text(UNLINK.format(ranked=SAME_SID)).bindparams(
            why="another user links the same remote user"
        )
    )
    op.execute(
        sa.text(UNLINK.format(ranked=SAME_IDENTITY)).bindparams(
            why="another user claims the same identity"
        )
    )
    op.execute(SAME_RETIRED)


def upgrade() -> None:
    op.add_column(
        "sync_state", sa.Column("version", sa.BigInteger(), nullable=False, server_default="0")
    )
    op.add_column("sync_state", sa.Column("lease_run", sa.BigInteger()))
    op.drop_constraint(op.f(STATUS_CHECK), "sync_state", type_="check")
    op.create_check_constraint(op.f(STATUS_CHECK), "sync_state", f"status IN ({STATUSES})")
    _repair()
    op.drop_index("ix_sync_state_remote_sid", table_name="sync_state")
    op.create_index(
        "uq_sync_state_remote_sid",
        "sync_state",
        ["remote_sid"],
        unique=True,
        postgresql_where=sa.text("remote_sid IS NOT NULL"),
    )
    op.create_index(
        "uq_sync_state_retired_sid",
        "sync_state",
        ["retired_sid"],
        unique=True,
        postgresql_where=sa.text("retired_sid IS NOT NULL"),
    )
    op.create_index(
        "uq_sync_state_claimed_identity",
        "sync_state",
        ["identity"],
        unique=True,
        postgresql_where=sa.text(CLAIMS_IDENTITY),
    )
    op.create_table(
        "sync_deletion",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("service_key", sa.Text(), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("sid", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text()),
        sa.Column("identity", sa.Text()),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("held_reason", sa.Text()),
        sa.Column(
            "decided_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("id", name="pk_sync_deletion"),
        sa.CheckConstraint(f"state IN ({DELETION_STATES})", name="ck_sync_deletion_state"),
    )
    op.create_index(
        "ix_sync_deletion_window", "sync_deletion", ["service_key", "state", "decided_at"]
    )
    op.create_index(
        "uq_sync_deletion_held",
        "sync_deletion",
        ["service_key", "sid"],
        unique=True,
        postgresql_where=sa.text("state = 'held'"),
    )
    op.create_index("ix_sync_deletion_user_id", "sync_deletion", ["user_id"])
    op.create_index("ix_sync_deletion_sid", "sync_deletion", ["sid"])


def downgrade() -> None:
    op.drop_table("sync_deletion")
    op.drop_index("uq_sync_state_claimed_identity", table_name="sync_state")
    op.drop_index("uq_sync_state_retired_sid", table_name="sync_state")
    op.drop_index("uq_sync_state_remote_sid", table_name="sync_state")
    op.create_index("ix_sync_state_remote_sid", "sync_state", ["remote_sid"])
    op.execute("UPDATE sync_state SET status = 'pending' WHERE status = 'waiting'")
    op.drop_constraint(op.f(STATUS_CHECK), "sync_state", type_="check")
    op.create_check_constraint(op.f(STATUS_CHECK), "sync_state", f"status IN ({OLD_STATUSES})")
    op.drop_column("sync_state", "lease_run")
    op.drop_column("sync_state", "version")
