"""Postgres access: the engine, the typed models, migrations and the repositories.

ORM rows never leave this package; repositories return domain values.
"""
