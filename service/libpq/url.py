"""Database URLs as operators write them for psql, read into what the asyncpg driver takes.

libpq's URI form (`postgresql://` or `postgres://`, percent-encoded user and password, a Unix
socket directory as `host=` in the query) carries connection parameters in the query string.
The driver knows none of them by those names, so they are taken out of the URL here and
turned into typed values; `service.db.engine` hands them to asyncpg as connect arguments.
Parameters this module does not know are refused, naming the parameter: a typo in `sslmode`
must not quietly connect without TLS.

Pure: no files are read here (the TLS files named by the URL are read by `service.libpq.tls`).
Messages name parameters, never the password; `DatabaseUrl`'s repr hides it too.

Limits: one value per parameter; query values are percent-decoded as libpq does (`+` stays a
plus sign); `sslcert`/`sslkey` need a mode that always encrypts (`require` or stricter), since
the driver's fallback modes (`allow`, `prefer`) take no client certificate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from urllib.parse import unquote

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

ASYNC_DRIVER = "postgresql+asyncpg"
SCHEMES = ("postgresql", "postgres", "postgresql+asyncpg")
DRIVER_PARAMETERS = frozenset({"host", "port"})
"""Left in the URL: SQLAlchemy's asyncpg dialect reads them (sockets, multiple hosts)."""
URL_PARTS = frozenset({"user", "password", "dbname"})
"""Allowed in the query too, as libpq allows; moved into the URL's own fields."""
TLS_PARAMETERS = frozenset({"sslmode", "sslrootcert", "sslcert", "sslkey"})
SESSION_PARAMETERS = frozenset({"application_name", "options"})
SUPPORTED = (
    DRIVER_PARAMETERS | URL_PARTS | TLS_PARAMETERS | SESSION_PARAMETERS | {"connect_timeout"}
)
MIN_CONNECT_TIMEOUT = 2
"""libpq's floor: a `connect_timeout` of 1 waits 2 seconds."""


class DatabaseUrlError(ValueError):
    """The URL cannot be used; the message names the parameter and never shows the password."""


class SslMode(StrEnum):
    DISABLE = "disable"
    ALLOW = "allow"
    PREFER = "prefer"
    REQUIRE = "require"
    VERIFY_CA = "verify-ca"
    VERIFY_FULL = "verify-full"

    @property
    def encrypts(self) -> bool:
        """True when the connection is never made without TLS."""
        return self in {SslMode.REQUIRE, SslMode.VERIFY_CA, SslMode.VERIFY_FULL}


@dataclass(frozen=True, slots=True)
class Tls:
    """What `sslmode`, `sslrootcert`, `sslcert` and `sslkey` asked for (libpq's default mode)."""

    mode: SslMode = SslMode.PREFER
    root_cert: Path | None = None
    cert: Path | None = None
    key: Path | None = None


@dataclass(frozen=True, slots=True)
class DatabaseUrl:
    """A parsed URL: `url` for the driver (password hidden in its repr) and the rest typed."""

    url: URL
    tls: Tls = Tls()
    connect_timeout: float | None = None
    """Seconds; None is the driver's default, `inf` waits for ever (libpq's 0)."""
    server_settings: Mapping[str, str] = field(default_factory=dict)

    def dsn(self) -> str:
        """The URL as `asyncpg.connect()` takes it (only host and port left in the query)."""
        return self.url.set(drivername="postgresql").render_as_string(hide_password=False)


def parse_database_url(url: str) -> DatabaseUrl:
    """Read a libpq URL or raise DatabaseUrlError naming what is wrong."""
    base, _, query = url.partition("?")
    parameters = _query(query)
    unknown = sorted(parameters.keys() - SUPPORTED)
    if unknown:
        raise DatabaseUrlError(
            f"unsupported parameter {unknown[0]!r} in the URL "
            f"(supported: {', '.join(sorted(SUPPORTED))})"
        )
    return DatabaseUrl(
        url=_driver_url(base, parameters),
        tls=_tls(parameters),
        connect_timeout=_connect_timeout(parameters.get("connect_timeout")),
        server_settings={k: v for k, v in parameters.items() if k in SESSION_PARAMETERS},
    )


def shown(url: str) -> str:
    """The URL to show an operator: as written, but with the password (in the authority or as a
    `password` parameter) replaced by `***`; a URL that cannot be read shows as its scheme."""
    base, question, query = url.partition("?")
    try:
        rendered = make_url(base).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return f"{base.partition('://')[0]}://…"
    pairs = [p for p in query.split("&") if unquote(p.partition("=")[0]) != "password"]
    return rendered + (question + "&".join(pairs) if pairs else "")


def async_url(url: str) -> URL:
    """The URL SQLAlchemy's asyncpg dialect takes (libpq parameters removed)."""
    return parse_database_url(url).url


def with_database(url: str, database: str) -> str:
    """The same URL naming another database; the query string is kept exactly as written."""
    base, question, query = url.partition("?")
    renamed = make_url(base).set(database=database).render_as_string(hide_password=False)
    return f"{renamed}{question}{query}"


def _query(query: str) -> dict[str, str]:
    """libpq's decoding: `name=value` pairs split on `&`, percent-decoded, no `+` for space."""
    parameters: dict[str, str] = {}
    for pair in filter(None, query.split("&")):
        name, equals, value = pair.partition("=")
        name = unquote(name)
        if not equals:
            raise DatabaseUrlError(f"parameter {name!r} in the URL has no value")
        if name in parameters:
            raise DatabaseUrlError(f"parameter {name!r} is given more than once in the URL")
        parameters[name] = unquote(value)
    return parameters


def _driver_url(base: str, parameters: Mapping[str, str]) -> URL:
    scheme = base.partition("://")[0]
    if scheme not in SCHEMES:
        raise DatabaseUrlError("the URL must start with postgresql:// or postgres://")
    try:
        parsed = make_url(f"{ASYNC_DRIVER}://{base.partition('://')[2]}")
    except (ArgumentError, ValueError):
        raise DatabaseUrlError("the URL cannot be parsed (check its host and port)") from None
    return parsed.set(
        username=parameters.get("user", parsed.username),
        password=parameters.get("password", parsed.password),
        database=parameters.get("dbname", parsed.database),
        query={k: v for k, v in parameters.items() if k in DRIVER_PARAMETERS},
    )


def _tls(parameters: Mapping[str, str]) -> Tls:
    raw_mode = parameters.get("sslmode", SslMode.PREFER.value)
    try:
        mode = SslMode(raw_mode)
    except ValueError:
        modes = ", ".join(m.value for m in SslMode)
        raise DatabaseUrlError(f"sslmode must be one of {modes}") from None
    tls = Tls(
        mode=mode,
        root_cert=_path(parameters.get("sslrootcert")),
        cert=_path(parameters.get("sslcert")),
        key=_path(parameters.get("sslkey")),
    )
    if (tls.cert or tls.key) and not mode.encrypts:
        raise DatabaseUrlError(
            f"sslcert and sslkey need sslmode=require, verify-ca or verify-full (not {mode})"
        )
    return tls


def _path(value: str | None) -> Path | None:
    return Path(value).expanduser() if value else None


def _connect_timeout(value: str | None) -> float | None:
    """libpq's rules: whole seconds, at least 2; zero or less waits for ever."""
    if value is None:
        return None
    try:
        seconds = int(value.strip())
    except ValueError:
        raise DatabaseUrlError("connect_timeout must be a whole number of seconds") from None
    if seconds <= 0:
        return float("inf")
    return float(max(seconds, MIN_CONNECT_TIMEOUT))
