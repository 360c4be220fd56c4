"""Building `ConversationsClient`s against a running emulator, in each of the three URL forms.

Retries use tiny backoffs and a recording sleep, so tests can assert how long the client *would*
have waited without waiting.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import Enum

import aiohttp

from service.conversations import CallRetry, ConversationsClient, Observer, WriteLimiter
from service.conversations.endpoints import ApiFlavor
from service.emulator import RunningEmulator


class Form(Enum):
    V1_DEFAULT = "v1-default-service"
    V1_SERVICE = "v1-service-sid"
    CHAT_V2 = "chat-v2"

    @property
    def api(self) -> ApiFlavor:
        return ApiFlavor.CHAT_V2 if self is Form.CHAT_V2 else ApiFlavor.CONVERSATIONS_V1


ALL_FORMS = list(Form)


class RecordingSleep:
    """An injected `sleep`: remembers each requested delay and yields to the loop at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


def fast_retry(*, max_retries: int = 3, sleep: RecordingSleep | None = None) -> CallRetry:
    return CallRetry(
        max_retries=max_retries,
        backoff_base=0.001,
        backoff_max=0.01,
        sleep=sleep or RecordingSleep(),
    )


@dataclass
class Target:
    """A client and the Service it talks to (None: the default one, as the emulator sees it)."""

    client: ConversationsClient
    service_sid: str | None


def target(
    running: RunningEmulator,
    session: aiohttp.ClientSession,
    *,
    form: Form = Form.V1_DEFAULT,
    retry: CallRetry | None = None,
    limiter: WriteLimiter | None = None,
    credentials: tuple[str, str] | None = None,
    timeout: float = 5.0,
    webhook_enabled: bool = False,
    observer: Observer | None = None,
    base_url: str | None = None,
) -> Target:
    """A client in `form`; the sid forms get a fresh Service of their own."""
    service_sid = None if form is Form.V1_DEFAULT else running.emulator.create_service()
    client = ConversationsClient(
        session,
        base_url=base_url or running.base_url,
        api=form.api,
        service_sid=service_sid,
        credentials=credentials or (running.config.account_sid, running.config.auth_token),
        limiter=limiter or WriteLimiter(25, max_in_flight=16),
        webhook_enabled=webhook_enabled,
        timeout=timeout,
        retry=retry or fast_retry(),
        observer=observer,
    )
    return Target(client=client, service_sid=service_sid)
