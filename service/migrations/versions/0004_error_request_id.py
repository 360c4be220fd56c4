"""`sync_error.request_id`: Twilio's `Twilio-Request-Id` of the failed call, for support tickets.

Null for errors without an answer (a dropped connection, a timeout), for refusals made before
any call (bad input), and for every error recorded before this revision.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("sync_error", sa.Column("request_id", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("sync_error", "request_id")
