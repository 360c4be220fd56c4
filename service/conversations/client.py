"""`ConversationsClient`: the Users (and Roles) of one Service, over the Users API.

It speaks either dialect (Conversations v1, with or without a Service sid, or Chat v2; see
`endpoints.py`), returns domain values (`RemoteUser`, `Role`) and raises only the exceptions in
`errors.py`. Every call goes through the shared `WriteLimiter` (writes paced, everything bounded
in flight) and is retried when, and only when, its failure is transient (`retry.py`); a 4xx
other than 429 is an answer for the caller, never retried. It also reads the one account-level
fact the service needs: which Service is the account's default (`fetch_default_service_sid`,
from the Conversations Configuration), through the same machinery.

Ambiguous creates: when an attempt to create a user fails without a clear answer (connection
lost or timeout after sending, or a 5xx) the user may exist anyway; if the retry then meets
409/50201 the client raises `AlreadyExists` with `after_retry=True`, and the caller should fetch
the user by identity and adopt it. The same flag marks any `ApiError` that follows an ambiguous
attempt (a delete whose retry meets 404 most likely deleted the user itself). One blind spot:
aiohttp itself silently repeats an idempotent request (GET, DELETE) once when its
connection drops, so a delete may meet 404 without the flag; 404 on delete means "gone" anyway.

The aiohttp session is the caller's (one per application); the client never closes it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from enum import Enum
from typing import Final, TypeVar

import aiohttp
from pydantic import BaseModel, ValidationError
from yarl import URL

from service.conversations import answers
from service.conversations.endpoints import ApiFlavor, Endpoints, next_page
from service.conversations.errors import (
    ApiError,
    ConversationsError,
    InvalidResponse,
    TransportError,
    error_from_response,
    truncate,
)
from service.conversations.ratelimit import WriteLimiter
from service.conversations.retry import CallRetry
from service.conversations.schemas import (
    ConfigurationWire,
    Page,
    PageMeta,
    RolePage,
    UserPage,
    UserWire,
)
from service.conversations.stats import CallEvent, CallStats, Observer
from service.conversations.transport import Reply, Request, Transport
from service.domain.users import RemoteUser, Role

WEBHOOK_HEADER = "X-Twilio-Webhook-Enabled"

Model = TypeVar("Model", bound=BaseModel)
PageModel = TypeVar("PageModel", bound=Page)


class Unset(Enum):
    """Type of `UNSET`: "leave this field as it is" in `update_user`."""

    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = Unset.UNSET


class ConversationsClient:
    """The Users and Roles of one Service; `stats` counts every attempt, `limiter` is shared."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        api: ApiFlavor,
        service_sid: str | None,
        credentials: tuple[str, str],
        limiter: WriteLimiter,
        webhook_enabled: bool,
        timeout: float,
        retry: CallRetry,
        observer: Observer | None = None,
    ) -> None:
        self._endpoints = Endpoints(base_url, api, service_sid)
        self._transport = Transport(
            session, credentials=credentials, limiter=limiter, timeout=timeout
        )
        self._webhook = "true" if webhook_enabled else "false"
        self._retry = retry
        self._observer = observer
        self.limiter = limiter
        self.stats = CallStats()

    def __repr__(self) -> str:
        e = self._endpoints
        return f"ConversationsClient({e.api.value}, {e.base_url}, service_sid={e.service_sid})"

    @property
    def api(self) -> ApiFlavor:
        return self._endpoints.api

    @property
    def base_url(self) -> str:
        """Where the API is (the emulator's address in tests), for messages about reaching it."""
        return self._endpoints.base_url

    @property
    def service_sid(self) -> str | None:
        return self._endpoints.service_sid

    # --- users --------------------------------------------------------------------------

    async def create_user(
        self,
        identity: str,
        *,
        friendly_name: str | None = None,
        attributes: str | None = None,
        role_sid: str | None = None,
    ) -> RemoteUser:
        """Create a user (201). `attributes` is a JSON object as text; None sends none."""
        form = _form(
            Identity=identity, FriendlyName=friendly_name, Attributes=attributes, RoleSid=role_sid
        )
        request = self._write("create_user", "POST", self._endpoints.users(), form=form)
        return await self._user(request)

    async def fetch_user(self, sid_or_identity: str) -> RemoteUser:
        url = self._endpoints.user(sid_or_identity)
        return await self._user(Request("fetch_user", "GET", url))

    async def update_user(
        self,
        sid_or_identity: str,
        *,
        friendly_name: str | Unset = UNSET,
        attributes: str | Unset = UNSET,
        role_sid: str | Unset = UNSET,
    ) -> RemoteUser:
        """Update a user, sending only the fields given (200)."""
        form = _form(FriendlyName=friendly_name, Attributes=attributes, RoleSid=role_sid)
        url = self._endpoints.user(sid_or_identity)
        return await self._user(self._write("update_user", "POST", url, form=form))

    async def delete_user(self, sid_or_identity: str) -> None:
        """Delete a user (204). `NotFound` if there is none: the caller decides what that means."""
        url = self._endpoints.user(sid_or_identity)
        webhook = self._endpoints.webhook_header_on_delete
        await self._call(self._write("delete_user", "DELETE", url, webhook=webhook))

    async def iter_user_pages(self) -> AsyncIterator[list[RemoteUser]]:
        """Every user, one page at a time, following `next_page_url`; pages retried separately."""
        first = self._endpoints.users_first_page()
        async for page in self._pages(UserPage, "list_users", first):
            yield [user.to_domain() for user in page.users]

    async def list_roles(self) -> list[Role]:
        """Every role of the Service (all pages)."""
        roles: list[Role] = []
        first = self._endpoints.roles_first_page()
        async for page in self._pages(RolePage, "list_roles", first):
            roles.extend(role.to_domain() for role in page.roles)
        return roles

    # --- the account ----------------------------------------------------------------------

    async def fetch_default_service_sid(self) -> str | None:
        """The account's default Conversation Service, the one `/v1/Users` means, as Twilio
        names it now (`GET /v1/Configuration`, `default_chat_service_sid`); None if it names
        none. Conversations v1 only; whatever Service this client was made for."""
        operation = "fetch_configuration"
        reply = await self._call(Request(operation, "GET", self._endpoints.configuration()))
        return decode(ConfigurationWire, reply, operation=operation).default_chat_service_sid

    # --- mechanics ----------------------------------------------------------------------

    def _write(
        self,
        operation: str,
        method: str,
        url: URL,
        *,
        form: dict[str, str] | None = None,
        webhook: bool = True,
    ) -> Request:
        headers = {WEBHOOK_HEADER: self._webhook} if webhook else {}
        return Request(operation, method, url, form=form, write=True, headers=headers)

    async def _user(self, request: Request) -> RemoteUser:
        reply = await self._call(request)
        return decode(UserWire, reply, operation=request.operation).to_domain()

    async def _pages(
        self, model: type[PageModel], operation: str, first: URL
    ) -> AsyncIterator[PageModel]:
        url: URL | None = first
        seen: set[str] = set()
        while url is not None:
            seen.add(str(url))
            reply = await self._call(Request(operation, "GET", url))
            page = decode(model, reply, operation=operation)
            yield page
            url = _following(page.meta, seen=seen, operation=operation)

    async def _call(self, request: Request) -> Reply:
        """The request, retried while its failures are transient and retries remain."""
        attempt, ambiguous = 0, False
        while True:
            try:
                reply = await self._attempt(request, attempt=attempt, after_retry=ambiguous)
            except ConversationsError as error:
                if not error.transient or attempt >= self._retry.max_retries:
                    answers.noted(request, error)
                    raise
                ambiguous = ambiguous or error.ambiguous
                await self._retry.sleep(self._retry.delay(attempt, retry_after=_retry_after(error)))
            else:
                answers.noted(request, reply)
                return reply
            attempt += 1

    async def _attempt(self, request: Request, *, attempt: int, after_retry: bool) -> Reply:
        started = time.perf_counter()
        try:
            reply = await self._transport.send(request)
        except TransportError as error:
            self._observe(request, None, started, attempt=attempt, error=error)
            raise
        failure = None
        if reply.status >= 400:
            failure = error_from_response(
                reply.status,
                reply.text,
                retry_after=reply.retry_after,
                after_retry=after_retry,
                request_id=reply.request_id,
            )
        self._observe(request, reply.status, started, attempt=attempt, error=failure)
        if failure is not None:
            raise failure
        return reply

    def _observe(
        self,
        request: Request,
        status: int | None,
        started: float,
        *,
        attempt: int,
        error: ConversationsError | None,
    ) -> None:
        event = CallEvent(
            operation=request.operation,
            status=status,
            seconds=time.perf_counter() - started,
            attempt=attempt,
            error=type(error).__name__ if error is not None else None,
        )
        self.stats.record(event)
        if self._observer is not None:
            self._observer(event)


def decode(model: type[Model], reply: Reply, *, operation: str) -> Model:
    """The 2xx body as `model`, or `InvalidResponse` quoting (a little of) what came instead."""
    try:
        return model.model_validate_json(reply.text)
    except ValidationError as e:
        body = truncate(reply.text, limit=200)
        raise InvalidResponse(
            f"{operation}: HTTP {reply.status} with an unexpected body: {body!r}"
        ) from e


def _following(meta: PageMeta, *, seen: set[str], operation: str) -> URL | None:
    if not meta.next_page_url:
        return None
    if meta.next_page_url in seen:
        raise InvalidResponse(f"{operation}: next_page_url repeats an earlier page")
    return next_page(meta.next_page_url)


def _form(**fields: str | Unset | None) -> dict[str, str]:
    """Form fields that were given: None and UNSET are both left out."""
    return {name: value for name, value in fields.items() if isinstance(value, str)}


def _retry_after(error: ConversationsError) -> float | None:
    return error.retry_after if isinstance(error, ApiError) else None
