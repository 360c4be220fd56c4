"""The event trigger finds `user_event` whoever writes `internal_users`.

`user_sync_enqueue()` names `user_event` unqualified, so it resolved against the search_path of
the session that wrote the row: with the service's tables in a schema of their own (a URL with
`options=-c search_path=hr`), every INSERT by the identity system, whose sessions have the
default search_path, failed with `relation "user_event" does not exist`. The function now
carries the schema it was created in (and pg_catalog) as its own search_path.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OWN_SCHEMA = """
DO $$
DECLARE
  home text := (SELECT n.nspname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                WHERE p.oid = 'user_sync_enqueue()'::regprocedure);
BEGIN
  EXECUTE format('ALTER FUNCTION %I.user_sync_enqueue() SET search_path = %I, pg_catalog',
                 home, home);
END
$$
"""


def upgrade() -> None:
    op.execute(OWN_SCHEMA)


def downgrade() -> None:
    op.execute("ALTER FUNCTION user_sync_enqueue() RESET search_path")
