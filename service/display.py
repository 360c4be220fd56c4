"""Values from data as the operator's terminal shows them, and times as people read them.

Whatever the data holds reaches the screen as written and nothing more: rich markup in an id,
a role or a message (`[/ops]`, `[bold]admin`) is text, not a style (and never a crash), and a
control character (an ESC that would recolour the terminal or move the cursor, a carriage
return that would overwrite the line) is shown as its escape, `\\x1b`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.text import Text


def printable(text: str) -> str:
    """The text with each non-printable character written as its Python escape."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def safe(text: str) -> str:
    """Data to put in a markup string: printable, its brackets escaped."""
    from rich.markup import escape  # noqa: PLC0415 - the logs take `printable` without rich

    return escape(printable(text))


def cell(value: object) -> Text:
    """A table cell from data: plain, printable text."""
    from rich.text import Text  # noqa: PLC0415 - as in `safe`

    return Text("" if value is None else printable(str(value)))


def when(moment: datetime | None, now: datetime) -> str:
    """A time as people read it: UTC to the second, and how long ago (or from now)."""
    if moment is None:
        return "never"
    seconds = (now - moment).total_seconds()
    span = _span(abs(seconds))
    relative = "just now" if span is None else f"{span} ago" if seconds >= 0 else f"in {span}"
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC ({relative})"


def _span(seconds: float) -> str | None:
    if seconds < 1:
        return None
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            whole, rest = divmod(int(seconds), size)
            smaller = {"d": (3600, "h"), "h": (60, "min"), "min": (1, "s")}[unit]
            part = rest // smaller[0]
            return f"{whole} {unit}" + (f" {part} {smaller[1]}" if part else "")
    return f"{int(seconds)} s"
