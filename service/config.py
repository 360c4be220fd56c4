"""Settings: every knob of the service, read once at start and passed down.

Names follow DESIGN.md: `USERSYNC_` prefix for our own settings, Twilio's conventional
`TWILIO_ACCOUNT_SID` / `TWILIO_AUTH_TOKEN` (or `TWILIO_API_KEY` / `TWILIO_API_SECRET`) and plain
`DATABASE_URL` as an alternative to `USERSYNC_DATABASE_URL`. Secrets are `SecretStr`, so they
never show in reprs, logs or error messages, and may come from files in a secrets directory
(`/run/secrets` when it exists, or `USERSYNC_SECRETS_DIR`). A value that makes no sense fails at
start with a message naming the environment variable.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from service.domain.policy import AttributesMode, DeleteMode
from service.libpq.tls import ssl_argument
from service.libpq.url import parse_database_url
from service.regions import ApiFlavor, ApiHost, api_host, check_edge, check_region

TWILIO_WRITE_LIMIT_PER_SECOND = 30
"""Twilio's documented limit: user create, update and delete share 30 actions/s per Service."""


class LogFormat(StrEnum):
    AUTO = "auto"
    JSON = "json"
    CONSOLE = "console"


class ConfigError(Exception):
    """A setting is missing or makes no sense; the message names the environment variable."""


_SID = r"{prefix}[0-9a-fA-F]{{32}}"
"""Matched whole (`re.fullmatch`): `$` would let a trailing newline through."""
_SID_PREFIXES = {"account_sid": "AC", "api_key": "SK", "service_sid": "IS"}
_HEADER = re.compile(r"[A-Za-z0-9-]{1,64}")
MIN_SECRET_LENGTH = 16
_CREDENTIAL = re.compile(r"[!-~]+")
"""Printable ASCII, no space: what an auth token or API secret can be."""
_SECRET_TEXT = re.compile(r"[^\x00-\x1f\x7f\ud800-\udfff]+")
"""Any text a header can carry and UTF-8 can encode (not the bytes that are no text: an
environment value that is not UTF-8 arrives as surrogates), without control characters."""
DAY = 86_400
_LETTER = r"^\x00-\x40\x5b-\x5e\x60\x7b-\x7f\ud800-\udfff"
"""What Postgres' scanner takes for a letter in an unquoted name: ASCII letters, `_` and any
non-ASCII character (every byte with the high bit set; surrogates are no characters), said
as what it is not: the class of its ranges (U+0080-U+D7FF, U+E000-U+10FFFF) takes re 17 ms
to compile, at every start; tests/unit/test_config.py keeps the two equal on every code point."""
_LETTER_OR_DIGIT = r"^\x00-\x23\x25-\x2f\x3a-\x40\x5b-\x5e\x60\x7b-\x7f\ud800-\udfff"
"""`_LETTER`, digits and `$`."""
_NAME_PART = f"[{_LETTER}][{_LETTER_OR_DIGIT}]*"
_IDENTIFIER = re.compile(f"{_NAME_PART}(?:\\.{_NAME_PART})?")
MAX_NAME_BYTES = 63
"""Postgres' NAMEDATALEN - 1: a longer name part would be cut short without an error."""
CRON_FIELDS = 5
API_PRODUCTS = {ApiFlavor.CONVERSATIONS_V1: "conversations", ApiFlavor.CHAT_V2: "chat"}
"""The first label of each flavour's Twilio host (`conversations.dublin.ie1.twilio.com`)."""


def _alias(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="USERSYNC_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        populate_by_name=True,
        allow_inf_nan=False,
        # each field's docstring says what it means (tests/security/test_bad_settings.py
        # reads them); pydantic taking them as descriptions (`use_attribute_docstrings`)
        # would read and parse this file at every start (20-40 ms), and nothing shows them
    )

    # --- where things are -------------------------------------------------------------
    database_url: SecretStr | None = Field(
        default=None, validation_alias=_alias("USERSYNC_DATABASE_URL", "DATABASE_URL")
    )
    """Postgres URL as psql takes it (`postgresql://user:pw@host:5432/db?sslmode=require`)."""
    leader_database_url: SecretStr | None = None
    """Where the session-scoped advisory locks and LISTEN go (the leader's session and each
    run's lock connection): direct to Postgres when the main URL goes through a pooler."""
    source_table: str = "internal_users"
    """Table or view (optionally schema-qualified) read as the source of truth."""

    # --- the remote API ---------------------------------------------------------------
    account_sid: str | None = Field(
        default=None, validation_alias=_alias("TWILIO_ACCOUNT_SID", "USERSYNC_ACCOUNT_SID")
    )
    """The Twilio account, `AC` and 32 hex digits (`TWILIO_ACCOUNT_SID`)."""
    auth_token: SecretStr | None = Field(
        default=None, validation_alias=_alias("TWILIO_AUTH_TOKEN", "USERSYNC_AUTH_TOKEN")
    )
    """The account's auth token; the API key pair wins over it when both of that are set."""
    api_key: str | None = Field(
        default=None, validation_alias=_alias("TWILIO_API_KEY", "USERSYNC_API_KEY")
    )
    """An API key sid, `SK` and 32 hex digits, used with `api_secret` instead of the auth token."""
    api_secret: SecretStr | None = Field(
        default=None, validation_alias=_alias("TWILIO_API_SECRET", "USERSYNC_API_SECRET")
    )
    """The API key's secret."""
    service_sid: str | None = None
    """The Conversation Service, `IS` and 32 hex digits; unset: the account's default Service,
    learnt once at start (`GET /v1/Configuration`)."""
    api: ApiFlavor = ApiFlavor.CONVERSATIONS_V1
    """The dialect of the Users API; Chat v2 needs `service_sid`."""
    region: str | None = Field(
        default=None, validation_alias=_alias("USERSYNC_REGION", "TWILIO_REGION")
    )
    """Twilio Region of the Service and the credentials (`us1`, `ie1`, `au1`, `jp1`)."""
    edge: str | None = Field(default=None, validation_alias=_alias("USERSYNC_EDGE", "TWILIO_EDGE"))
    """Twilio Edge Location in the API host; unset: the region's own."""
    api_base_url: str | None = None
    """Wins over `region` and `edge` (the emulator, a proxy)."""
    webhook_enabled: bool = False
    """Value of `X-Twilio-Webhook-Enabled` on our writes; false so they do not echo back."""
    request_timeout: float = Field(default=10.0, ge=0.1, le=300)
    """Seconds one HTTP request to the Users API may take."""
    max_retries: int = Field(default=5, ge=0, le=20)
    """Further attempts of a call after a transient failure (connection, timeout, 5xx, 429)."""
    retry_backoff_base: float = Field(default=0.25, ge=0.001, le=60)
    """Seconds: the first retry's jittered wait cap, doubling with each attempt."""
    retry_backoff_max: float = Field(default=20.0, ge=0.001, le=600)
    """Seconds: the most a retry's jittered wait may be (a 429's Retry-After may ask more)."""

    # --- pace -------------------------------------------------------------------------
    write_rate: float = Field(default=30.0, ge=0.01, le=1_000_000)
    """Writes per second per Service at most (the pacer's ceiling); over 30 requires
    `write_rate_limit_raised`. Adaptive pacing backs off below it when writes meet 429s."""
    write_rate_adaptive: bool = True
    """Back off when writes are answered 429 (the Service's 30/s are shared with other
    clients) and climb back to `write_rate` when they are not; false paces at `write_rate`."""
    write_rate_floor: float = Field(default=5.0, ge=0.01, le=1_000_000)
    """Writes per second adaptive pacing never goes below, however many 429s it meets."""
    write_rate_limit_raised: bool = False
    """Twilio raised the account's write limit: allows a `write_rate` over 30 per second."""
    max_in_flight: int = Field(default=16, ge=1, le=256)
    """Requests to the Users API in flight at once, reads and writes (also the pool size)."""

    # --- policy -----------------------------------------------------------------------
    delete_mode: DeleteMode = DeleteMode.MANAGED
    """Which remote users a run may delete (`domain.policy.DeleteMode`)."""
    protected_identity_pattern: str | None = None
    """A regular expression (`re.search`) of identities never deleted, in any delete mode."""
    max_deletes_per_run: int = Field(default=100, ge=0, le=10_000_000)
    """Deletion guard: deletions within `deletion_window`, across runs; more are held."""
    max_deletes_percent: float = Field(default=10.0, ge=0, le=100)
    """Deletion guard: percent of the remote users in reach deleted within `deletion_window`."""
    max_writes_per_run: int = Field(default=1000, ge=0, le=10_000_000)
    """Write guard: users created or updated within `deletion_window`, across runs, outside an
    initial sync; more are held (each user written may count as active for the month)."""
    max_writes_percent: float = Field(default=10.0, ge=0, le=100)
    """Write guard: percent of the users in reach (linked, or those to write if more) created
    or updated within `deletion_window`."""
    max_writes_percent_floor: int = Field(default=10, ge=0, le=10_000_000)
    """Write guard: users a window may write whatever the percent says (on a Service of five
    users one edit is 20 percent, not a mass change); 0 applies the percent from one user."""
    deletion_window: float = Field(default=3600.0, ge=0, le=30 * DAY)
    """Seconds of the rolling window the two deletion limits and the two write limits count
    over, across runs (0: each run on its own)."""
    attributes_mode: AttributesMode = AttributesMode.REPLACE
    """Who owns a remote user's attributes (`domain.policy.AttributesMode`)."""
    read_before_write: bool = False
    """Incremental and targeted runs (and events) read every linked user before writing it,
    as full runs do; off: a user whose state remembers its remote user is planned from that
    (`users.remembered`). Merge mode always reads (keys others set are known only by a read)."""
    early_writes: bool = True
    """Full runs start the writes of linked users whose source row changed, planned from what
    their state remembers, while the listing runs (`reconcile.early`); off: a full run plans
    every user from its listing. Never in merge mode or with `read_before_write`."""
    delete_grace: float = Field(default=0.0, ge=0, le=365 * DAY)
    """Seconds a linked user gone or inactive locally stays suspended before it is deleted
    (`domain.suspension`); 0: deleted at once."""
    suspended_role: str | None = Field(default=None, min_length=1, max_length=64)
    """The Service role (sid or friendly name) of suspended users; required with a grace
    period. The service never creates it: it must exist on the Service."""
    suspended_marker: str | None = Field(default=None, min_length=1, max_length=128)
    """Merge mode: the attribute key set to true on suspended users (unset: no marker)."""
    failure_backoff_base: float = Field(default=60.0, ge=0.001, le=DAY)
    """Seconds before a failed user is retried after its first failure, doubling each time."""
    failure_backoff_max: float = Field(default=86_400.0, ge=0.001, le=30 * DAY)
    """Seconds: the longest a failed user waits for its next attempt."""
    quarantine_after: int = Field(default=8, ge=1, le=100)
    """Failed attempts of one user before it is quarantined (still retried, at the capped
    interval, and listed by `status`)."""
    error_retention_days: int = Field(default=30, ge=1, le=3650)
    """Days `sync_error` rows and the deletion log are kept before they are pruned."""
    audit: bool = True
    """Keep the audit trail (`sync_audit`): every write made to a user and every write decided
    against (held, invalid). Off only to measure what it costs."""
    audit_retention_days: int = Field(default=365, ge=1, le=3650)
    """Days audit trail entries are kept before they are pruned (at most ten years)."""
    audit_attribute_values: bool = False
    """Keep attribute values (old and new) in the audit trail, not only the keys that change:
    they are personal data."""

    # --- serve ------------------------------------------------------------------------
    http_host: str = "0.0.0.0"  # noqa: S104 - a container listens on all interfaces
    """The address `serve` listens on."""
    http_port: int = Field(default=8080, ge=0, le=65535)
    """The TCP port `serve` listens on (0: any free port)."""
    api_token: SecretStr | None = None
    """Bearer token of the admin HTTP API; `serve` refuses to start without one."""
    webhook_secret: SecretStr | None = None
    """HMAC-SHA256 key of signed webhooks on `POST /events` (unset: bearer token only)."""
    webhook_signature_header: str = "X-UserSync-Signature"
    """The header holding a signed webhook's `sha256=<hex>` HMAC-SHA256 signature."""
    webhook_timestamp_header: str = "X-UserSync-Timestamp"
    """The header holding a signed webhook's timestamp (Unix time, whole seconds)."""
    webhook_tolerance: float = Field(default=300.0, ge=1, le=3600)
    """Seconds a signed webhook's timestamp may be away from now; older ones are refused."""
    schedule_enabled: bool = True
    """False: no scheduled runs (events and on-demand runs still work)."""
    full_sync_interval: float = Field(default=3600.0, ge=0.1, le=30 * DAY)
    """Seconds between scheduled full runs (unless `full_sync_cron` is set)."""
    full_sync_cron: str | None = None
    """A 5-field cron expression (UTC); when set it replaces `full_sync_interval`."""
    incremental_interval: float = Field(default=60.0, ge=0.1, le=DAY)
    """Seconds between scheduled incremental runs."""
    leader_retry_interval: float = Field(default=2.0, ge=0.1, le=60)
    """Seconds between a standby's attempts to take the leader lock."""
    leader_check_interval: float = Field(default=1.0, ge=0.1, le=30)
    """Seconds between checks that the leader's own database session is alive."""
    event_poll_interval: float = Field(default=5.0, ge=0.1, le=300)
    """Fallback poll of the event queue, in case a NOTIFY was missed."""
    event_batch_size: int = Field(default=500, ge=1, le=10_000)
    """Events a consumer claims at once (coalesced per user)."""
    event_lease: float = Field(default=60.0, ge=1, le=3600)
    """Seconds before events claimed by a consumer that failed are claimed again."""
    event_max_attempts: int = Field(default=5, ge=1, le=100)
    """Attempts of one event before it is given up."""
    event_retention_hours: float = Field(default=24.0, ge=0.1, le=8760)
    """Hours done events are kept in the queue before they are pruned."""
    sync_user_timeout: float = Field(default=10.0, ge=0.1, le=120)
    """How long `POST /sync/users/{id}` waits for the outcome before answering 202."""
    shutdown_grace: float = Field(default=10.0, ge=0, le=20)
    """On SIGTERM, seconds runs in flight get to finish before they are aborted."""

    # --- logs -------------------------------------------------------------------------
    log_level: str = "INFO"
    """The least severe level logged, `DEBUG` to `CRITICAL`."""
    log_format: LogFormat = LogFormat.AUTO
    """`json`, `console`, or `auto` (console on a TTY, JSON otherwise)."""

    @field_validator("account_sid", "api_key", "service_sid")
    @classmethod
    def _sid_shape(cls, value: str | None, info: ValidationInfo) -> str | None:
        prefix = _SID_PREFIXES[str(info.field_name)]
        if value is not None and not re.fullmatch(_SID.format(prefix=prefix), value):
            raise ValueError(f"must be {prefix} followed by 32 hex digits")
        return value

    @field_validator("region")
    @classmethod
    def _region_known(cls, value: str | None) -> str | None:
        return None if value is None else check_region(value)

    @field_validator("edge")
    @classmethod
    def _edge_known(cls, value: str | None) -> str | None:
        return None if value is None else check_edge(value)

    @field_validator("database_url", "leader_database_url")
    @classmethod
    def _database_url_usable(cls, value: SecretStr | None) -> SecretStr | None:
        """Every parameter known and sensible, the TLS files readable (DatabaseUrlError is a
        ValueError whose message names the parameter, never the password)."""
        if value is not None:
            ssl_argument(parse_database_url(value.get_secret_value()).tls)
        return value

    @field_validator("source_table")
    @classmethod
    def _source_table_shape(cls, value: str) -> str:
        """Postgres' rules for an unquoted name (`db.source.quoted` folds it to lower case)."""
        if not _IDENTIFIER.fullmatch(value):
            raise ValueError(
                "must be a table or view name as written unquoted in SQL, optionally with its "
                "schema, like internal_users or idp.users_v (letters, digits, _ and $, not "
                "starting with a digit or $)"
            )
        if any(len(part.encode()) > MAX_NAME_BYTES for part in value.split(".")):
            raise ValueError(f"each part of the name must be at most {MAX_NAME_BYTES} bytes")
        return value

    @field_validator("api_base_url")
    @classmethod
    def _base_url_shape(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or value != value.strip():
            raise ValueError(
                "must be an absolute http(s) URL like https://conversations.twilio.com"
            )
        try:
            parts.port  # noqa: B018 - raises for a port that is not a number in range
        except ValueError:
            raise ValueError("has a port that is not a number from 0 to 65535") from None
        return value

    @field_validator("protected_identity_pattern")
    @classmethod
    def _pattern_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as e:
                raise ValueError(f"is not a valid regular expression: {e}") from None
        return value

    @field_validator("api_token", "webhook_secret")
    @classmethod
    def _secret_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_SECRET_LENGTH:
            raise ValueError(f"must be at least {MIN_SECRET_LENGTH} characters")
        text = value.get_secret_value() if value is not None else ""
        if value is not None and (not _SECRET_TEXT.fullmatch(text) or text != text.strip()):
            raise ValueError(
                "must be printable text with no control characters and no space at either end "
                "(the value is not shown)"
            )
        return value

    @field_validator("auth_token", "api_secret")
    @classmethod
    def _credential_shape(cls, value: SecretStr | None) -> SecretStr | None:
        """Twilio's tokens and secrets are letters and digits: a space, a newline (a file's
        last line, an export with quotes) or a byte that is no text would be refused by the
        API at the first call, or break the request before it is sent."""
        if value is not None and not _CREDENTIAL.fullmatch(value.get_secret_value()):
            raise ValueError(
                "must be printable ASCII without spaces or line breaks (the value is not shown)"
            )
        return value

    @field_validator("webhook_signature_header", "webhook_timestamp_header")
    @classmethod
    def _header_name(cls, value: str) -> str:
        if not _HEADER.fullmatch(value):
            raise ValueError("must be an HTTP header name like X-UserSync-Signature")
        return value

    @field_validator("full_sync_cron")
    @classmethod
    def _cron_parses(cls, value: str | None) -> str | None:
        """Exactly five fields (croniter also takes a sixth, seconds, and a seventh, years),
        and a time it fires at: `0 0 30 2 *` parses but never comes."""
        if value is None:
            return value
        # croniter only with a cron to check: a tenth of a second before every command's start
        from croniter import CroniterBadDateError, croniter  # noqa: PLC0415

        wanted = "a cron expression of 5 fields (minute hour day month weekday), e.g. '0 3 * * *'"
        if len(value.split()) != CRON_FIELDS or not croniter.is_valid(value):
            raise ValueError(f"must be {wanted}")
        try:
            croniter(value, datetime.now(UTC)).get_next(datetime)
        except CroniterBadDateError:
            raise ValueError("never fires (no such date within years), e.g. '0 0 30 2 *'") from None
        return value

    @field_validator("suspended_role", "suspended_marker")
    @classmethod
    def _printable_name(cls, value: str | None) -> str | None:
        if value is not None and (not value.isprintable() or value.strip() != value):
            raise ValueError("must be printable text with no space at either end")
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level_known(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.write_rate > TWILIO_WRITE_LIMIT_PER_SECOND and not self.write_rate_limit_raised:
            raise ValueError(
                f"USERSYNC_WRITE_RATE={self.write_rate:g} is over Twilio's limit of "
                f"{TWILIO_WRITE_LIMIT_PER_SECOND} writes/s per Service; set "
                "USERSYNC_WRITE_RATE_LIMIT_RAISED=true only if Twilio raised your limit"
            )
        if self.write_rate_floor > self.write_rate:
            raise ValueError(
                f"USERSYNC_WRITE_RATE_FLOOR={self.write_rate_floor:g} is over "
                f"USERSYNC_WRITE_RATE={self.write_rate:g}"
            )
        if self.api is ApiFlavor.CHAT_V2 and self.service_sid is None:
            raise ValueError("USERSYNC_API=chat-v2 needs USERSYNC_SERVICE_SID (v2 has no default)")
        if self.retry_backoff_max < self.retry_backoff_base:
            raise ValueError("USERSYNC_RETRY_BACKOFF_MAX must be >= USERSYNC_RETRY_BACKOFF_BASE")
        if self.failure_backoff_max < self.failure_backoff_base:
            raise ValueError(
                "USERSYNC_FAILURE_BACKOFF_MAX must be >= USERSYNC_FAILURE_BACKOFF_BASE"
            )
        if self.full_sync_cron is None and self.incremental_interval > self.full_sync_interval:
            raise ValueError(
                "USERSYNC_INCREMENTAL_INTERVAL must not be longer than USERSYNC_FULL_SYNC_INTERVAL"
            )
        if self.webhook_signature_header.lower() == self.webhook_timestamp_header.lower():
            raise ValueError(
                "USERSYNC_WEBHOOK_SIGNATURE_HEADER and USERSYNC_WEBHOOK_TIMESTAMP_HEADER must "
                "name two different headers"
            )
        if (self.api_key is None) != (self.api_secret is None):
            raise ValueError("TWILIO_API_KEY and TWILIO_API_SECRET must be set together")
        return self

    @model_validator(mode="after")
    def _suspension_complete(self) -> Self:
        if self.delete_grace > 0 and self.suspended_role is None:
            raise ValueError(
                "USERSYNC_DELETE_GRACE needs USERSYNC_SUSPENDED_ROLE (the role, sid or name, that"
                " suspended users are given)"
            )
        return self

    # --- derived ----------------------------------------------------------------------
    @property
    def api_host(self) -> ApiHost:
        """Twilio's host for the flavour, region and edge (whether or not the base URL wins)."""
        return api_host(API_PRODUCTS[self.api], region=self.region, edge=self.edge)

    @property
    def base_url(self) -> str:
        return (self.api_base_url or f"https://{self.api_host.host}").rstrip("/")

    def credentials(self) -> tuple[str, str]:
        """(username, password) for HTTP Basic: the API key pair when set, else the account."""
        if self.api_key is not None and self.api_secret is not None:
            return self.api_key, self.api_secret.get_secret_value()
        if self.account_sid is None or self.auth_token is None:
            raise ConfigError(
                "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN (or TWILIO_API_KEY and "
                "TWILIO_API_SECRET) are required to talk to the API"
            )
        return self.account_sid, self.auth_token.get_secret_value()

    def require_database_url(self) -> str:
        if self.database_url is None:
            raise ConfigError("USERSYNC_DATABASE_URL (or DATABASE_URL) is required")
        return self.database_url.get_secret_value()

    def require_session_database_url(self) -> str:
        """Where session advisory locks and LISTEN go: the leader URL, else the main one."""
        if self.leader_database_url is not None:
            return self.leader_database_url.get_secret_value()
        return self.require_database_url()


def _env_name(field: str) -> str:
    info = Settings.model_fields.get(field)
    if info is None:  # pydantic reports aliased fields by the alias that was used
        return field
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return f"USERSYNC_{field.upper()}"


def describe_validation_error(error: ValidationError) -> str:
    """One line per problem, each naming the environment variable; never echoes the value."""
    lines = []
    for problem in error.errors(include_input=False, include_url=False):
        location = [str(part) for part in problem["loc"]]
        name = _env_name(location[0]) if location else "settings"
        message = str(problem["msg"]).removeprefix("Value error, ")
        lines.append(f"{name}: {message}" if location else message)
    return "invalid settings:\n  " + "\n  ".join(lines)


def load_settings(**overrides: Any) -> Settings:
    """Read the environment (and .env, and the secrets directory) or raise ConfigError."""
    secrets_dir = os.environ.get("USERSYNC_SECRETS_DIR", "/run/secrets")
    kwargs: dict[str, Any] = dict(overrides)
    if Path(secrets_dir).is_dir():
        kwargs.setdefault("_secrets_dir", secrets_dir)
    try:
        return Settings(**kwargs)
    except ValidationError as e:
        raise ConfigError(describe_validation_error(e)) from None
    except UnicodeDecodeError as e:  # only the .env file is decoded outside a source's catch
        raise ConfigError(f"the .env file is not UTF-8 text (byte {e.start + 1})") from None
    except SettingsError as e:  # a secrets file that cannot be read as text
        raise ConfigError(_unreadable_source(e, secrets_dir)) from None


def _unreadable_source(error: SettingsError, secrets_dir: str) -> str:
    found = re.search(r'field "(\w+)"', str(error))
    name = _env_name(found.group(1)) if found else "a setting"
    cause = error.__cause__
    why = f": {type(cause).__name__}" if cause is not None else ""
    return f"{name}: its file in the secrets directory {secrets_dir} cannot be read as text{why}"
