"""The schema's history: alembic's environment (`env.py`) and one reversible revision a file
(`versions/`). Package data, so the wheel carries them (`db.migrate.SCRIPT_LOCATION`).
"""
