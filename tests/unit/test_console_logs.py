"""Console logs show values from data as escapes where they hold control characters."""

from __future__ import annotations

import io

import structlog

from service.config import LogFormat, Settings
from service.logs import configure_logging


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
