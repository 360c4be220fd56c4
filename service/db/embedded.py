"""An embedded PostgreSQL for the demo and for test sessions on a machine without a server.

`pgserver` ships the server binaries in a wheel (the `embedded` extra). It runs over a Unix
socket in a directory we own; stopping it removes everything when `cleanup` is true.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlsplit


class EmbeddedPostgresUnavailable(RuntimeError):
    """The `embedded` extra is not installed or the server did not start."""


class EmbeddedPostgresMissing(EmbeddedPostgresUnavailable):
    """The `embedded` extra is not installed (a matter of settings: install it, or set a URL)."""


@contextmanager
def embedded_postgres(data_dir: Path | None = None, *, keep: bool = False) -> Iterator[str]:
    """Start a private server; yield a `postgresql://` URL to its `postgres` database."""
    try:
        with warnings.catch_warnings():  # platformdirs warns when there is no XDG_RUNTIME_DIR
            warnings.simplefilter("ignore")
            import pgserver  # noqa: PLC0415 - optional dependency, imported only when used
    except ImportError as e:
        raise EmbeddedPostgresMissing(
            "no database URL is set and the embedded Postgres is not installed: "
            "pip install 'conversations-user-sync[embedded]' or set USERSYNC_DATABASE_URL"
        ) from e
    directory = data_dir or Path(tempfile.mkdtemp(prefix="user-sync-pg-"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = pgserver.get_server(directory, cleanup_mode=None if keep else "delete")
    try:
        yield _as_url(server.get_uri("postgres"))
    finally:
        if not keep:
            server.cleanup()


def _as_url(uri: str) -> str:
    """pgserver gives `postgresql://postgres:@/postgres?host=/tmp/x`; keep it, minus the colon."""
    parts = urlsplit(uri)
    host = parse_qs(parts.query).get("host", [""])[0]
    return f"postgresql://postgres@/{parts.path.lstrip('/')}?host={host}"
