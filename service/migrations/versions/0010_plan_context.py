"""What a run planned under, so a full run knows when it may skip unchanged users in SQL.

`sync_run.plan_context` holds `domain.policy.plan_context` of the run's settings (the planner's
version and the attributes mode): a full run leaves users whose source row and remote user are
as the last run left them to Postgres only when every run since the last completed full run
planned under the same context (`db.gather.may_skip_unchanged`). It starts NULL for every
existing run, which matches no context: the first full run after this revision plans everyone
in Python, as before. The downgrade drops it, losing nothing the code before this revision uses.

Revision ID: 0010_plan_context
Revises: 0009_remote_seen
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_plan_context"
down_revision: str | None = "0009_remote_seen"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("sync_run", sa.Column("plan_context", sa.Text()))


def downgrade() -> None:
    op.drop_column("sync_run", "plan_context")
