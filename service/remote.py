"""The remote side as configured: the Conversations client, its pacer and its retries.

Part of the composition root (`service.wiring` wires these into everything else), apart so that
it loads without the database layer: the CLI's full sync builds its client here and starts
listing before SQLAlchemy is even imported (`service.headstart`).
"""

from __future__ import annotations

import aiohttp

from service.config import Settings
from service.conversations.adaptive import Adaptive
from service.conversations.client import ConversationsClient
from service.conversations.ratelimit import WriteLimiter
from service.conversations.retry import CallRetry
from service.conversations.stats import Observer

URGENT_SHARE = 4
"""`serve` keeps one in-flight slot in this many for urgent (event) calls."""


def call_retry(settings: Settings) -> CallRetry:
    """How the client retries a failed call: `USERSYNC_MAX_RETRIES`, `USERSYNC_RETRY_BACKOFF_*`."""
    return CallRetry(
        max_retries=settings.max_retries,
        backoff_base=settings.retry_backoff_base,
        backoff_max=settings.retry_backoff_max,
    )


def write_limiter(settings: Settings, *, reserve_for_urgent: bool = False) -> WriteLimiter:
    """The Service's one pacer as configured; `serve` keeps slots for events."""
    adaptive = Adaptive(floor=settings.write_rate_floor) if settings.write_rate_adaptive else None
    return WriteLimiter(
        settings.write_rate,
        max_in_flight=settings.max_in_flight,
        reserved=settings.max_in_flight // URGENT_SHARE if reserve_for_urgent else 0,
        adaptive=adaptive,
    )


def conversations_client(
    session: aiohttp.ClientSession,
    settings: Settings,
    *,
    service_sid: str | None = None,
    limiter: WriteLimiter | None = None,
    observer: Observer | None = None,
) -> ConversationsClient:
    """A client as configured; pass `limiter` to share one with other clients of the Service.

    `service_sid` is the Service to address, `settings.service_sid` when not given (the
    composition root passes the account's default once it has resolved it)."""
    return ConversationsClient(
        session,
        base_url=settings.base_url,
        api=settings.api,
        service_sid=service_sid or settings.service_sid,
        credentials=settings.credentials(),
        limiter=limiter or write_limiter(settings),
        webhook_enabled=settings.webhook_enabled,
        timeout=settings.request_timeout,
        retry=call_retry(settings),
        observer=observer,
    )
