"""One module a revision, applied in order by alembic (ids `0001`, `0002`, …); never edited once
released: a change to the schema is a new revision."""
