"""Reaching the database: one clear line when it cannot be reached, never a traceback.

Every command opens the database first (`check`); when that fails, the operator reads one line
naming the URL (password hidden, `libpq.url.shown`) and the cause in the words of the server
or the network: connection refused, a host name that does not resolve, TLS refused, a password
or role refused, a database that does not exist, no answer in time. `describe` finds that cause
under SQLAlchemy's wrapper (`DBAPIError.orig`, then the driver's own exception), so the same
words serve a run that lost its database midway.
"""

from __future__ import annotations

import socket
import ssl

import asyncpg
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from service.libpq.url import shown

CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.InvalidCatalogNameError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    OperationalError,
    InterfaceError,
)
"""What a database that is down, unreachable or refusing us raises (directly or wrapped)."""
_CONNECTING: tuple[type[BaseException], ...] = (DBAPIError, *CONNECTION_ERRORS)
"""While only connecting, before any statement, every driver error is about connecting."""


class DatabaseUnavailable(Exception):
    """The database could not be reached or refused the connection; the message names the URL
    (password hidden) and the cause."""


def cause(error: BaseException) -> BaseException:
    """The driver's or the network's own exception under SQLAlchemy's wrappers."""
    while isinstance(error, DBAPIError) and error.orig is not None:
        error = error.orig
    inner = error.__cause__
    if type(error).__module__.startswith("sqlalchemy") and inner is not None:
        return cause(inner)
    return error


def is_connection_error(error: BaseException) -> bool:
    return isinstance(cause(error), CONNECTION_ERRORS) or isinstance(error, CONNECTION_ERRORS)


def is_schema_missing(error: BaseException) -> bool:
    """A table or column of ours is not there: the database is not migrated to this code."""
    return isinstance(cause(error), asyncpg.UndefinedTableError | asyncpg.UndefinedColumnError)


def unavailable_reason(error: BaseException) -> str | None:
    """Why the database cannot answer, in a sentence, when that is what `error` says: out of
    reach (or refusing us), or not migrated. None for anything else."""
    if is_connection_error(error):
        return f"the database cannot be reached: {describe(error)}"
    if is_schema_missing(error):
        return "the database is not migrated to this version: run user-sync migrate"
    return None


def is_refusal(error: BaseException) -> bool:
    """The server answered a statement with an error (a grant missing, a schema changed)."""
    return isinstance(error, DBAPIError) or isinstance(cause(error), asyncpg.PostgresError)


def describe(error: BaseException) -> str:
    """The cause in a few words, as the server or the network said it."""
    found = cause(error)
    if isinstance(found, ConnectionRefusedError):
        return "connection refused (is Postgres running on that host and port?)"
    if isinstance(found, socket.gaierror):
        return f"the host name does not resolve ({found.strerror})"
    if isinstance(found, ssl.SSLError | ssl.CertificateError):
        return f"TLS failed: {found}"
    if isinstance(found, TimeoutError):
        return "no answer in time (see connect_timeout)"
    text = str(found).strip()
    return text if text else type(found).__name__


def unavailable(
    url: str, error: BaseException, *, setting: str = "USERSYNC_DATABASE_URL"
) -> DatabaseUnavailable:
    return DatabaseUnavailable(
        f"cannot connect to the database at {shown(url)}: {describe(error)}; check {setting}"
    )


async def check(engine: AsyncEngine, url: str, *, setting: str = "USERSYNC_DATABASE_URL") -> None:
    """Open one connection now, so a command fails at once, saying why, if it cannot."""
    try:
        async with engine.connect():
            pass
    except _CONNECTING as e:
        raise unavailable(url, e, setting=setting) from e
