"""What a run that failed as a whole says: one line naming the cause and what to do.

That line is the run's error everywhere an operator reads it: `sync_run.error`, the run's
"run finished" log line, `user-sync sync` (and `--json`), `status`, `GET /runs`. Known causes
name the settings to check: refused credentials (Twilio 20003) the credentials, an API that
cannot be reached its URL, a Service the API does not know its sid, a source relation the
column and the type wanted (`db.source` words those), a database that went away its cause.
Anything else is a bug: its type and message, and `expected` is False so the log line carries
the traceback too (the only place one is shown).
"""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError

from service.conversations import errors as api
from service.db import connectivity, locks
from service.db.source import SourceError

CREDENTIALS = "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN (or TWILIO_API_KEY and TWILIO_API_SECRET)"


def explain(error: BaseException, *, api_url: str) -> str:
    """The run's error: what failed, why, and what to check."""
    if isinstance(error, SourceError | locks.LockLost):
        return str(error)
    if isinstance(error, api.ConversationsError):
        return _api(error, api_url=api_url)
    if connectivity.is_connection_error(error):
        return f"the database failed during the run: {connectivity.describe(error)}"
    if isinstance(error, DBAPIError):  # the server's words, not the statement and its values
        return f"the database refused a statement of the run: {connectivity.describe(error)}"
    return f"{type(error).__name__}: {error}"


def expected(error: BaseException) -> bool:
    """A cause outside the service (settings, the API, the source, the database), not a bug."""
    return isinstance(error, SourceError | api.ConversationsError | locks.LockLost) or (
        connectivity.is_connection_error(error)
    )


def _api(error: api.ConversationsError, *, api_url: str) -> str:
    if isinstance(error, api.ApiError):
        return _answered(error)
    if isinstance(error, api.TransportError):
        return (
            f"cannot reach the API at {api_url} ({error}): check USERSYNC_API_BASE_URL "
            "and the network"
        )
    return (
        f"the API at {api_url} answered what the Users API never does ({error}): "
        "check USERSYNC_API_BASE_URL"
    )


def _answered(error: api.ApiError) -> str:
    if isinstance(error, api.Unauthorized) and error.status == 401:
        return f"the API refused the credentials ({error}): check {CREDENTIALS}"
    if isinstance(error, api.Unauthorized):
        return f"the API refused access ({error}): check that {CREDENTIALS} may use the Service"
    if isinstance(error, api.NotFound):
        return f"the API does not know the Service ({error}): check USERSYNC_SERVICE_SID"
    if error.transient:
        return f"the API kept failing ({error}) after USERSYNC_MAX_RETRIES retries: try again later"
    return f"the API refused a request of the run ({error})"
