"""The durable event queue: `user_event`, fed by a trigger on `internal_users`; webhook nonces.

Row changes of `internal_users` (insert, update of a synced column, delete; both ids when an
id changes) land in `user_event` in the same transaction as the change, and one
`pg_notify('user_sync_event')` per statement wakes the leader at commit. Statement-level
triggers with transition tables keep a bulk load of 100,000 rows one INSERT … SELECT, not
100,000 trigger calls. `webhook_nonce` remembers signatures of accepted webhooks until they
expire, so a captured request cannot be replayed.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SOURCES = "'trigger', 'webhook', 'api'"

# The NOTIFY channel is `service.db.events.CHANNEL`; the compared columns are those the sync
# reads (an update touching only `updated_at` or other columns queues nothing).
ENQUEUE_FUNCTION = """
CREATE FUNCTION user_sync_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  queued integer;
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO user_event (user_id, source, kind) SELECT id, 'trigger', 'insert' FROM new_rows;
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO user_event (user_id, source, kind) SELECT id, 'trigger', 'delete' FROM old_rows;
  ELSE
    INSERT INTO user_event (user_id, source, kind)
    SELECT changed.id, 'trigger', 'update' FROM (
      SELECT n.id FROM new_rows n LEFT JOIN old_rows o ON o.id = n.id
      WHERE o.id IS NULL
         OR ROW(n.identity, n.friendly_name, n.role, n.attributes, n.active)
            IS DISTINCT FROM ROW(o.identity, o.friendly_name, o.role, o.attributes, o.active)
      UNION
      SELECT o.id FROM old_rows o WHERE NOT EXISTS (SELECT 1 FROM new_rows n WHERE n.id = o.id)
    ) changed;
  END IF;
  GET DIAGNOSTICS queued = ROW_COUNT;
  IF queued > 0 THEN
    PERFORM pg_notify('user_sync_event', '');
  END IF;
  RETURN NULL;
END
$$
"""

TRIGGERS = {
    "internal_users_enqueue_insert": "AFTER INSERT ON internal_users "
    "REFERENCING NEW TABLE AS new_rows",
    "internal_users_enqueue_update": "AFTER UPDATE ON internal_users "
    "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
    "internal_users_enqueue_delete": "AFTER DELETE ON internal_users "
    "REFERENCING OLD TABLE AS old_rows",
}


def upgrade() -> None:
    op.create_table(
        "user_event",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text()),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.clock_timestamp(),
        ),
        sa.Column("claimed_at", sa.DateTime(timezone=True)),
        sa.Column("claimed_by", sa.Text()),
        sa.Column("done_at", sa.DateTime(timezone=True)),
        sa.Column("run_id", sa.BigInteger()),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text()),
        sa.PrimaryKeyConstraint("id", name="pk_user_event"),
        sa.CheckConstraint(f"source IN ({SOURCES})", name="ck_user_event_source"),
    )
    op.create_index(
        "ix_user_event_pending", "user_event", ["id"], postgresql_where=sa.text("done_at IS NULL")
    )
    op.create_index("ix_user_event_done_at", "user_event", ["done_at"])
    op.create_table(
        "webhook_nonce",
        sa.Column("signature", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("signature", name="pk_webhook_nonce"),
    )
    op.create_index("ix_webhook_nonce_expires_at", "webhook_nonce", ["expires_at"])
    op.execute(ENQUEUE_FUNCTION)
    for name, timing in TRIGGERS.items():
        op.execute(
            f"CREATE TRIGGER {name} {timing} FOR EACH STATEMENT "
            "EXECUTE FUNCTION user_sync_enqueue()"
        )


def downgrade() -> None:
    for name in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON internal_users")
    op.execute("DROP FUNCTION IF EXISTS user_sync_enqueue()")
    op.drop_table("webhook_nonce")
    op.drop_table("user_event")
