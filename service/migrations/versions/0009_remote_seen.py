"""The linked remote user as we last left it, so incremental and targeted runs can write
without reading it first (`users.remembered`).

`sync_state.seen_friendly_name`, `seen_role_sid` and `seen_attributes` hold the remote user's
fields as the answer of our last write (or the last run that recorded it) gave them. They start
NULL for every existing row: `seen_attributes` NULL means unknown, and those users are read
as before until a run records them (a full run records every linked user it sees). The
downgrade drops them, losing nothing the code before this revision uses.

Revision ID: 0009_remote_seen
Revises: 0008_suspension
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_remote_seen"
down_revision: str | None = "0008_suspension"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("seen_friendly_name", "seen_role_sid", "seen_attributes")


def upgrade() -> None:
    for name in COLUMNS:
        op.add_column("sync_state", sa.Column(name, sa.Text()))


def downgrade() -> None:
    for name in reversed(COLUMNS):
        op.drop_column("sync_state", name)
