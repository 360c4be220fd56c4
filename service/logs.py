"""Structured logs: JSON lines off a TTY, pretty on one, with secrets scrubbed.

Context (`run_id`, `trigger`, `scope`, `user_id`) is bound through structlog's contextvars, so
every line of a unit of work carries it without passing a logger around. As a last line of
defence, every rendered value is scrubbed of the secrets the settings hold.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO, cast

import structlog

from service.config import LogFormat, Settings
from service.display import printable

REDACTED = "[redacted]"


class SecretScrubber:
    """A structlog processor replacing any occurrence of a known secret value."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def __call__(
        self, _: Any, __: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        if not self._secrets:
            return event
        for key, value in event.items():
            if isinstance(value, str):
                event[key] = self.scrub(value)
            elif not isinstance(value, int | float | bool | type(None)):
                event[key] = self.scrub(str(value))
        return event

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text


def secret_values(settings: Settings) -> list[str]:
    fields = (settings.auth_token, settings.api_secret, settings.api_token, settings.webhook_secret)
    values = [f.get_secret_value() for f in fields if f is not None]
    for url in (settings.database_url, settings.leader_database_url):
        if url is not None:
            from service.libpq.url import parse_database_url  # noqa: PLC0415 - keep logs light

            password = parse_database_url(url.get_secret_value()).password
            if password:
                values.append(str(password))
    return values


class LogStream:
    """The stream log lines go to, outliving its reader: once the pipe's reader is gone (a log
    shipper died, `kubectl logs` piped into a closed `head`), writing raises BrokenPipeError
    into whatever was logging, a signal handler among them, and `serve` would ignore SIGTERM.
    Lines are dropped from then on (nobody can read them), and the descriptor is pointed at
    /dev/null so that the interpreter's own flush at exit does not fail either."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._gone = False

    def write(self, text: str) -> int:
        if not self._gone:
            try:
                return int(self._stream.write(text))
            except BrokenPipeError:
                self._reader_gone()
        return len(text)

    def flush(self) -> None:
        if not self._gone:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._reader_gone()

    def isatty(self) -> bool:
        return bool(self._stream.isatty())

    def _reader_gone(self) -> None:
        self._gone = True
        with contextlib.suppress(OSError, ValueError, AttributeError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)


QUOTED_BY_CONSOLE = frozenset(" \t=\r\n\"'")
"""A text value holding one of these is written by structlog's ConsoleRenderer as its repr, so
its control characters are escaped already; the others it writes as they are."""


def printable_values(
    logger: Any, method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """For the console: text from data (an id, a message) with its control characters written
    as escapes, so a value cannot recolour the terminal or overwrite the line. A traceback keeps
    its lines; JSON logs escape everything already."""
    return {key: _printable(key, value) for key, value in event_dict.items()}


def _printable(key: str, value: Any) -> Any:
    if not isinstance(value, str) or key == "exception":
        return value
    if key != "event" and not QUOTED_BY_CONSOLE.isdisjoint(value):
        return value
    return printable(value)


def configure_logging(settings: Settings, *, stream: Any = None) -> None:
    out = LogStream(stream or sys.stderr)
    pretty = settings.log_format is LogFormat.CONSOLE or (
        settings.log_format is LogFormat.AUTO and out.isatty()
    )
    renderer: Any = (
        structlog.dev.ConsoleRenderer() if pretty else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            SecretScrubber(secret_values(settings)),
            *([printable_values] if pretty else []),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[settings.log_level]
        ),
        # PrintLogger needs only write and flush of a TextIO
        logger_factory=structlog.PrintLoggerFactory(cast("TextIO", out)),
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, LibraryLogs)]:
        root.removeHandler(handler)  # configured again (in-process callers): one of them
    root.addHandler(LibraryLogs())
    root.setLevel(logging.WARNING)


class LibraryLogs(logging.Handler):
    """What libraries log through the standard `logging` (SQLAlchemy's pool, asyncpg, aiohttp)
    as the service's own lines, scrubbed and rendered alike, where it would otherwise reach
    stderr as raw text (Python's last-resort handler: a pool's "Exception closing connection"
    with its traceback when a signal cancels the close, unscrubbed)."""

    def emit(self, record: logging.LogRecord) -> None:
        logger = structlog.get_logger(record.name)
        fields: dict[str, Any] = {"logger": record.name}
        if record.exc_info:
            fields["exc_info"] = record.exc_info
        try:
            logger.log(record.levelno, record.getMessage(), **fields)
        except Exception:  # never let a library's log line fail the code that logged it
            self.handleError(record)
