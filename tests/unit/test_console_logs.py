"""Console logs show values from data as escapes where they hold control characters."""

from __future__ import annotations

import io
import json
import logging

import pytest
import structlog

from service.config import LogFormat, Settings
from service.logs import LibraryLogs, configure_logging


def test_control_characters_in_logged_values_are_written_as_escapes() -> None:
    out = io.StringIO()
    configure_logging(Settings(_env_file=None, log_format=LogFormat.CONSOLE), stream=out)
    try:
        structlog.get_logger("test").warning(
            "user \x1b[31mfailed", user_id="esc\x1b[2J", error="a\x1bb c"
        )
    finally:
        structlog.reset_defaults()

    logged = out.getvalue()
    assert "user \\x1b[31mfailed" in logged
    assert "esc\\x1b[2J" in logged
    assert "'a\\x1bb c'" in logged  # quoted by the renderer itself, escaped once
    assert "\x1b[31mfailed" not in logged and "esc\x1b[2J" not in logged


def test_what_a_library_logs_is_a_scrubbed_line_of_the_service_not_raw_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Found by an adversary: SQLAlchemy's pool logged "Exception closing connection" with a
    traceback through Python's last-resort handler, raw text on stderr beside the JSON."""
    out = io.StringIO()
    secret = "s3cret-token-0123456789abcdef"
    configure_logging(
        Settings(_env_file=None, log_format=LogFormat.JSON, auth_token=secret), stream=out
    )
    try:
        try:
            raise RuntimeError(f"closing failed ({secret})")
        except RuntimeError:
            logging.getLogger("sqlalchemy.pool.impl").error(
                "Exception closing connection", exc_info=True
            )
        logging.getLogger("asyncpg").info("below the level: dropped")
    finally:
        structlog.reset_defaults()
        root = logging.getLogger()
        for handler in [h for h in root.handlers if isinstance(h, LibraryLogs)]:
            root.removeHandler(handler)

    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(x["event"], x["logger"], x["level"]) for x in lines] == [
        ("Exception closing connection", "sqlalchemy.pool.impl", "error")
    ]
    assert "RuntimeError" in lines[0]["exception"]
    assert secret not in out.getvalue()
    assert capsys.readouterr().err == ""
