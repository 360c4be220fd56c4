"""Shared fixtures: a real Postgres (tests/fixtures/postgres.py) and the emulator over HTTP."""

pytest_plugins = [
    "tests.fixtures.postgres",
    "tests.fixtures.tls_postgres",
    "tests.fixtures.emulator",
    "tests.fixtures.pgbouncer",
]
