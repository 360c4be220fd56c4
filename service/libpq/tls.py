"""The TLS a URL's `sslmode` asks for, as the `ssl` argument asyncpg takes.

libpq's rules, which psql follows: `disable` never encrypts; `allow` and `prefer` encrypt when
the server will, without checking its certificate (the driver does these two itself, given the
mode's name, including the fallback to plain text); `require` encrypts and checks the chain only
when a root certificate is there (`sslrootcert`, else `~/.postgresql/root.crt`); `verify-ca`
checks the chain; `verify-full` also checks the server's name. A client certificate is
`sslcert`/`sslkey`, else `~/.postgresql/postgresql.crt` and `.key` when they exist.

The files are read when the context is built, at start; a missing or unreadable one is a
DatabaseUrlError naming the parameter and the file.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path

from service.libpq.url import DatabaseUrlError, SslMode, Tls

DRIVER_MODES = frozenset({SslMode.DISABLE, SslMode.ALLOW, SslMode.PREFER})
"""Modes asyncpg implements exactly as libpq when given the name."""


def ssl_argument(tls: Tls) -> ssl.SSLContext | str:
    """What to pass as asyncpg's `ssl`: the mode's name, or a context for the strict modes."""
    if tls.mode in DRIVER_MODES:
        return tls.mode.value
    return client_context(tls)


def client_context(tls: Tls) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # libpq's default minimum
    context.check_hostname = tls.mode is SslMode.VERIFY_FULL
    _trust(context, tls)
    _identify(context, tls)
    return context


def _trust(context: ssl.SSLContext, tls: Tls) -> None:
    root = tls.root_cert or _default_file("root.crt")
    if root is None and tls.mode is SslMode.REQUIRE:
        context.verify_mode = ssl.CERT_NONE
        return
    if root is None:
        raise DatabaseUrlError(
            f"sslmode={tls.mode} needs sslrootcert (the CA certificate that signed the "
            "server's certificate); ~/.postgresql/root.crt does not exist"
        )
    _require_file(root, parameter="sslrootcert")
    _load(lambda: context.load_verify_locations(cafile=root), what=f"sslrootcert {str(root)!r}")
    context.verify_mode = ssl.CERT_REQUIRED


def _identify(context: ssl.SSLContext, tls: Tls) -> None:
    cert = tls.cert or _default_file("postgresql.crt")
    if cert is None:
        return
    key = tls.key or _default_file("postgresql.key")
    _require_file(cert, parameter="sslcert")
    if key is not None:
        _require_file(key, parameter="sslkey")
    _load(  # an encrypted key fails here rather than prompting on the terminal (no sslpassword)
        lambda: context.load_cert_chain(cert, keyfile=key, password=_no_password),
        what="sslcert and sslkey",
    )


def _no_password() -> bytes:
    return b""


def _require_file(path: Path, *, parameter: str) -> None:
    if not path.is_file():
        raise DatabaseUrlError(f"{parameter}: file {str(path)!r} does not exist")


def _load(load: Callable[[], None], *, what: str) -> None:
    try:
        load()
    except (OSError, ssl.SSLError) as e:
        reason = getattr(e, "reason", None) or e.strerror or type(e).__name__
        raise DatabaseUrlError(f"{what}: not usable ({reason})") from None


def _default_file(name: str) -> Path | None:
    """libpq's per-user default, if it exists."""
    try:
        path = Path.home() / ".postgresql" / name
    except RuntimeError:  # no home directory
        return None
    return path if path.is_file() else None
