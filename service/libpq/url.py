"""Database URLs as operators write them for psql, read into what the asyncpg driver takes.

libpq's URI form (`postgresql://` or `postgres://`, percent-encoded user and password, one or
several `host:port` in the authority, a Unix socket directory as a percent-encoded host or as
`host=` in the query) carries connection parameters in the query string.
The driver knows none of them by those names, so they are taken out of the URL here and
turned into typed values; `service.db.engine` hands them to asyncpg as connect arguments.
Parameters this module does not know are refused, naming the parameter: a typo in `sslmode`
must not quietly connect without TLS.

Pure: no files are read here (the TLS files named by the URL are read by `service.libpq.tls`).
Messages name parameters, never the password; `DatabaseUrl`'s repr hides it too.

SQLAlchemy is loaded only when the driver's URL is asked for (`DatabaseUrl.url`): the settings
check every URL at start (`service.config`), and SQLAlchemy takes a quarter of a second to
import; what its parser could refuse (a port that is not a number) is checked before.

Limits: one value per parameter; query values are percent-decoded as libpq does (`+` stays a
plus sign) and, as libpq, a `%` not followed by two hex digits (or `%00`) is refused; ports are
1 to 65535 as libpq checks them, but here at parse time; several hosts, or a socket directory, in
the authority are handed to the driver as the query form `host=a,b&port=1,2` (a host of several
without a port gets 5432, since the driver needs every port); `sslcert`/`sslkey` need a mode
that always encrypts (`require` or stricter), since the driver's fallback modes (`allow`,
`prefer`) take no client certificate.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

ASYNC_DRIVER = "postgresql+asyncpg"
SCHEMES = ("postgresql", "postgres")
"""What psql takes; SQLAlchemy's `postgresql+asyncpg` is refused (the driver is not the
operator's choice)."""
DEFAULT_PORT = 5432
MAX_PORT = 65535
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
MAX_CONNECT_TIMEOUT = 2**31 - 1
"""libpq's ceiling (an `int`)."""
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})|%00")


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
    """A parsed URL: `url` for the driver (password hidden in the repr) and the rest typed."""

    driver: DriverUrl = field(repr=False)
    tls: Tls = Tls()
    connect_timeout: float | None = None
    """Seconds; None is the driver's default, `inf` waits for ever (libpq's 0)."""
    server_settings: Mapping[str, str] = field(default_factory=dict)

    @property
    def url(self) -> URL:
        """The URL SQLAlchemy's asyncpg dialect takes (libpq parameters taken out)."""
        return self.driver.url()

    @property
    def password(self) -> str | None:
        """The password the driver is given (`url.password`), read without SQLAlchemy: the
        logs hide it from the start (`service.logs`)."""
        if "password" in self.driver.parameters:
            return self.driver.parameters["password"]
        matched = _SQLALCHEMY_AUTHORITY.match(self.driver.text)
        given = matched["password"] if matched else None
        return None if given is None else unquote(given)

    def dsn(self) -> str:
        """The URL as `asyncpg.connect()` takes it (only host and port left in the query)."""
        return self.url.set(drivername="postgresql").render_as_string(hide_password=False)

    def __repr__(self) -> str:
        return (
            f"DatabaseUrl(url={self.url!r}, tls={self.tls!r}, connect_timeout="
            f"{self.connect_timeout!r}, server_settings={self.server_settings!r})"
        )


@dataclass(frozen=True, slots=True)
class DriverUrl:
    """The driver's URL, checked, before SQLAlchemy parses it (`url`): `text` for its parser,
    and the parts the query gives instead (libpq's `user`, `password`, `dbname`)."""

    text: str = field(repr=False)
    parameters: Mapping[str, str] = field(repr=False)
    query: Mapping[str, str] = field(repr=False)

    def url(self) -> URL:
        from sqlalchemy.engine import make_url  # noqa: PLC0415 - see the module docstring
        from sqlalchemy.exc import ArgumentError  # noqa: PLC0415

        try:
            parsed = make_url(self.text)
        except (ArgumentError, ValueError):  # `_check_authority` leaves it nothing to refuse
            raise DatabaseUrlError("the URL cannot be parsed (check its host and port)") from None
        return _query_wins(
            parsed.set(
                username=self.parameters.get("user", parsed.username),
                password=self.parameters.get("password", parsed.password),
                database=self.parameters.get("dbname", parsed.database),
            ),
            self.query,
        )


def _query_wins(url: URL, query: Mapping[str, str]) -> URL:
    """`host` and `port` from the query win over the authority's, as in libpq, for every
    reader of the URL: SQLAlchemy's dialect lets the query win, but asyncpg's own DSN parser
    (the raw sessions: locks, the leader) lets the authority win. So the two are not left
    side by side: one host and port go into the authority; several hosts or a socket
    directory stay in the query, with the authority's port if the query gives none."""
    host, port = query.get("host"), query.get("port")
    if host is None and port is None:
        return url.set(query=query)
    if (host is None or not ("," in host or host.startswith("/"))) and "," not in (port or ""):
        rest = {k: v for k, v in query.items() if k not in DRIVER_PARAMETERS}
        return url.set(host=host or url.host, port=int(port) if port else url.port, query=rest)
    moved = dict(query)
    if port is None and url.port is not None:
        moved["port"] = str(url.port)
    return url.set(query=moved)._replace(host=None, port=None)  # `set` skips None values


def parse_database_url(url: str) -> DatabaseUrl:
    """Read a libpq URL or raise DatabaseUrlError naming what is wrong."""
    cut = _Split.of(url)
    parameters = _query(cut.query)
    unknown = sorted(parameters.keys() - SUPPORTED)
    if unknown:
        raise DatabaseUrlError(
            f"unsupported parameter {unknown[0]!r} in the URL "
            f"(supported: {', '.join(sorted(SUPPORTED))})"
        )
    return DatabaseUrl(
        driver=_driver_url(cut, parameters),
        tls=_tls(parameters),
        connect_timeout=_connect_timeout(parameters.get("connect_timeout")),
        server_settings={k: v for k, v in parameters.items() if k in SESSION_PARAMETERS},
    )


@dataclass(frozen=True, slots=True)
class _Split:
    """A URL cut into its parts the way libpq's parser cuts it (`conninfo_uri_parse_options`):
    the user and password end at the first `@` (so a `?`, `,` or `&` in a password is the
    password's, and an `@` in it must be written %40), unless a `/` comes first; the hosts end
    at the first `/` or `?`; the query begins at the first `?` after them."""

    scheme: str
    separator: str
    userinfo: str
    at: str
    hosts: str
    path: str
    """`/` and the database name, or empty."""
    question: str
    query: str

    @classmethod
    def of(cls, url: str) -> _Split:
        scheme, separator, rest = url.partition("://")
        userinfo = at = ""
        cut = _first(rest, "@/")
        if cut is not None and rest[cut] == "@":
            userinfo, at, rest = rest[:cut], "@", rest[cut + 1 :]
        end = _first(rest, "/?")
        hosts, rest = (rest, "") if end is None else (rest[:end], rest[end:])
        path, question, query = rest.partition("?")
        return cls(scheme, separator, userinfo, at, hosts, path, question, query)


def _first(text: str, characters: str) -> int | None:
    """Where the first of `characters` is in `text`, or None."""
    found = [i for i in map(text.find, characters) if i >= 0]
    return min(found) if found else None


def shown(url: str) -> str:
    """The URL to show an operator: as written, but with the password (in the authority or as a
    `password` parameter) replaced by `***`; a URL that cannot be read shows as its scheme."""
    cut = _Split.of(url)
    if not cut.separator:
        return f"{cut.scheme}://…"
    user, colon, _ = cut.userinfo.partition(":")
    rendered = f"{cut.scheme}://{user}{':***' if colon else ''}{cut.at}{cut.hosts}{cut.path}"
    pairs = [p for p in cut.query.split("&") if unquote(p.partition("=")[0]) != "password"]
    return rendered + (cut.question + "&".join(pairs) if pairs else "")


def async_url(url: str) -> URL:
    """The URL SQLAlchemy's asyncpg dialect takes (libpq parameters removed)."""
    return parse_database_url(url).url


def with_database(url: str, database: str) -> str:
    """The same URL naming another database; everything else is kept exactly as written."""
    cut = _Split.of(url)
    authority = f"{cut.userinfo}{cut.at}{cut.hosts}"
    return f"{cut.scheme}://{authority}/{quote(database, safe='')}{cut.question}{cut.query}"


def _query(query: str) -> dict[str, str]:
    """libpq's decoding: `name=value` pairs split on `&`, percent-decoded, no `+` for space."""
    parameters: dict[str, str] = {}
    for pair in filter(None, query.split("&")):
        name, equals, value = pair.partition("=")
        name = _decoded(name, "a parameter name")
        if not equals:
            raise DatabaseUrlError(f"parameter {name!r} in the URL has no value")
        if name in parameters:
            raise DatabaseUrlError(f"parameter {name!r} is given more than once in the URL")
        parameters[name] = _decoded(value, f"the value of parameter {name!r}")
    return parameters


def _decoded(text: str, where: str) -> str:
    """libpq's percent-decoding, which refuses what it cannot decode (never shows `text`)."""
    if _BAD_PERCENT.search(text):
        raise DatabaseUrlError(f"invalid percent-encoded token in {where} in the URL")
    return unquote(text)


def _driver_url(cut: _Split, parameters: Mapping[str, str]) -> DriverUrl:
    if not cut.separator or cut.scheme not in SCHEMES:
        raise DatabaseUrlError("the URL must start with postgresql:// or postgres://")
    userinfo, at, hostspec, path = cut.userinfo, cut.at, cut.hosts, cut.path
    if "@" in hostspec:  # named without echoing: what follows the first `@` is the password's
        raise DatabaseUrlError(
            "a second '@' in the URL: an '@' in the user or password is written %40"
        )
    user, _, password = userinfo.partition(":")
    _decoded(user, "the user")
    _decoded(password, "the password")
    _decoded(path, "the database name")
    query = {k: v for k, v in parameters.items() if k in DRIVER_PARAMETERS}
    if "," in hostspec or "%" in hostspec:  # several hosts or a socket: the query form
        hosts, ports = _endpoints(hostspec)
        query = {"host": hosts, "port": ports} | query
        hostspec = ""
    query = _checked_hosts(query)
    text = f"{ASYNC_DRIVER}://{userinfo}{at}{hostspec}{path}"
    _check_authority(text)
    return DriverUrl(text, parameters, query)


_SQLALCHEMY_AUTHORITY = re.compile(
    r"[\w+]+://(?:[^:/]*(?::(?P<password>[^@]*))?@)?"
    r"(?:(?:\[(?P<ipv6>[^/?]+)\]|(?P<host>[^/:?]+))?(?::(?P<port>[^/?]*))?)?"
)
"""What SQLAlchemy's URL parser (`sqlalchemy.engine.url._parse_url`) reads as the password
(before it percent-decodes it), the host and the port."""


def _check_authority(text: str) -> None:
    """Refuse, without loading SQLAlchemy, the port its parser would refuse (one that is not
    a whole number) and the one libpq would (outside 1 to 65535, or not in ASCII digits), and
    a host name no connection could look up (`_host_name`)."""
    matched = _SQLALCHEMY_AUTHORITY.match(text)
    if matched and matched["host"]:
        _host_name(matched["host"])
    port = matched["port"] if matched else None
    if port is None:
        return
    try:
        int(port)  # as SQLAlchemy reads it (an empty one too: "db:/app" is refused)
    except ValueError:
        raise DatabaseUrlError("the URL cannot be parsed (check its host and port)") from None
    _port(port)


def _endpoints(hostspec: str) -> tuple[str, str]:
    """`h1:p1,[::1]:p2,%2Fdir` as the query form's `host` and `port` values, decoded."""
    hosts: list[str] = []
    ports: list[str] = []
    for endpoint in hostspec.split(","):
        if endpoint.startswith("["):
            host, _, after = endpoint[1:].partition("]")
            port = after.removeprefix(":")
        else:
            host, _, port = endpoint.partition(":")
        hosts.append(_decoded(host, "a host"))
        ports.append(port)
    return ",".join(hosts), ",".join(ports) if any(ports) else ""


def _checked_hosts(query: Mapping[str, str]) -> dict[str, str]:
    """Ports as libpq checks them; with several hosts every one gets a port (the driver's
    need: a missing one is 5432). Refuses a count of ports libpq could not match to hosts."""
    hosts = query["host"].split(",") if "host" in query else [""]
    if len(hosts) > 1 and not all(hosts):
        raise DatabaseUrlError(
            "an empty host in the list of hosts (name each one; a socket directory as"
            " %2Fvar%2Frun%2Fpostgresql)"
        )
    for host in hosts:
        _host_name(host)
    ports = [_port(p) if p else "" for p in query.get("port", "").split(",")]
    checked = {k: v for k, v in query.items() if v}
    if len(ports) not in {1, len(hosts)}:
        raise DatabaseUrlError(
            f"{len(ports)} ports given for {len(hosts)} hosts (give one port, or one per host)"
        )
    if len(hosts) > 1:
        ports = [p or str(DEFAULT_PORT) for p in ports * (len(hosts) // len(ports))]
        checked["port"] = ",".join(ports)
    return checked


_LIBPQ_INTEGER = re.compile(r"\s*[+-]?[0-9]+\s*")
"""An integer as libpq's `strtol` reads one: ASCII digits, a sign, blanks around (Python's
`int` takes more: `1_000`, other scripts' digits)."""


def _integer(value: str) -> int | None:
    return int(value) if _LIBPQ_INTEGER.fullmatch(value) else None


def _host_name(host: str) -> None:
    """Refuse a host name the resolver cannot be asked for (Python's IDNA encoding, which
    every connection's lookup uses, refuses an empty label or one of over 63 characters)."""
    if not host or host.startswith("/"):  # the default, or a socket directory
        return
    try:
        host.encode("idna")
    except UnicodeError:
        raise DatabaseUrlError(
            f"the host name {host!r} in the URL is not valid (each part between dots must be"
            " 1 to 63 characters)"
        ) from None


def _port(value: str) -> str:
    """libpq's check of a port: a whole number from 1 to 65535."""
    number = _integer(value)
    if number is None:
        raise DatabaseUrlError(f"invalid port number {value!r} in the URL")
    if not 1 <= number <= MAX_PORT:
        raise DatabaseUrlError(f"invalid port number {value!r} in the URL (1 to {MAX_PORT})")
    return str(number)


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
    seconds = _integer(value)
    if seconds is None:
        raise DatabaseUrlError("connect_timeout must be a whole number of seconds")
    if seconds > MAX_CONNECT_TIMEOUT:
        raise DatabaseUrlError(f"connect_timeout must be at most {MAX_CONNECT_TIMEOUT} seconds")
    if seconds <= 0:
        return float("inf")
    return float(max(seconds, MIN_CONNECT_TIMEOUT))
