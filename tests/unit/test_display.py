"""What the operator's terminal is given: data as written, times with their age."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from service.display import cell, printable, safe, when

NOW = datetime(2026, 12, 1, 9, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("ago", "shown"),
    [
        (timedelta(0), "2026-12-01 09:00:00 UTC (just now)"),
        (timedelta(seconds=42), "2026-12-01 08:59:18 UTC (42 s ago)"),
        (timedelta(minutes=5, seconds=3), "2026-12-01 08:54:57 UTC (5 min 3 s ago)"),
        (timedelta(hours=3, minutes=5), "2026-12-01 05:55:00 UTC (3 h 5 min ago)"),
        (timedelta(days=2, hours=1), "2026-11-29 08:00:00 UTC (2 d 1 h ago)"),
        (timedelta(seconds=-58), "2026-12-01 09:00:58 UTC (in 58 s)"),
    ],
)
def test_a_time_is_shown_in_utc_to_the_second_with_its_age(ago: timedelta, shown: str) -> None:
    assert when(NOW - ago, NOW) == shown


def test_a_time_in_another_zone_is_shown_in_utc_and_none_is_never() -> None:
    paris = (NOW + timedelta(microseconds=333717)).astimezone(timezone(timedelta(hours=1)))
    assert when(paris, NOW) == "2026-12-01 09:00:00 UTC (just now)"
    assert when(None, NOW) == "never"


def test_control_characters_are_shown_as_escapes_and_markup_as_text() -> None:
    assert printable("ok [bold]x") == "ok [bold]x"
    assert printable("a\x1b[2Jb\rc\x00") == "a\\x1b[2Jb\\rc\\x00"
    assert safe("[/ops]\x1b") == "\\[/ops]\\x1b"
    assert cell("[bold]admin\x07").plain == "[bold]admin\\x07"
    assert cell(None).plain == ""
