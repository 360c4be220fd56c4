"""Where each operation lives: the three URL forms of the Users API, built exactly once.

    conversations-v1, no Service sid   /v1/Users                     /v1/Roles
    conversations-v1, a Service sid    /v1/Services/{sid}/Users      /v1/Services/{sid}/Roles
    chat-v2 (a Service sid required)   /v2/Services/{sid}/Users      /v2/Services/{sid}/Roles

and one account-level resource, Conversations v1 only: `/v1/Configuration`, which names the
account's default Conversation Service (the one `/v1/Users` means).

A user is addressed by sid or by identity; an identity may hold any character, so it is
percent-encoded with nothing left safe (`/`, `?`, `#`, `%`, `+`, spaces, non-ASCII) and the URL
is handed to aiohttp as already encoded, so nothing re-encodes or decodes it on the way out.
`next_page_url`s are absolute and opaque: they are used as given, never rebuilt.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from yarl import URL

from service.regions import ApiFlavor

__all__ = ["PAGE_SIZE_MAX", "ApiFlavor", "Endpoints", "next_page"]


PAGE_SIZE_MAX = {ApiFlavor.CONVERSATIONS_V1: 50, ApiFlavor.CHAT_V2: 100}
"""The spec's PageSize maximum per dialect: the fewest round trips for a full listing."""


@dataclass(frozen=True, slots=True)
class Endpoints:
    base_url: str
    api: ApiFlavor
    service_sid: str | None = None

    def __post_init__(self) -> None:
        url = URL(self.base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"base_url must be an absolute http(s) URL, not {self.base_url!r}")
        if self.api is ApiFlavor.CHAT_V2 and self.service_sid is None:
            raise ValueError("chat-v2 needs a service sid: it has no default Service")

    @property
    def page_size(self) -> int:
        return PAGE_SIZE_MAX[self.api]

    @property
    def webhook_header_on_delete(self) -> bool:
        """Conversations v1 takes X-Twilio-Webhook-Enabled on delete; Chat v2 does not."""
        return self.api is ApiFlavor.CONVERSATIONS_V1

    def users(self) -> URL:
        return self._url(self._scope() + "/Users")

    def user(self, sid_or_identity: str) -> URL:
        return self._url(f"{self._scope()}/Users/{quote(sid_or_identity, safe='')}")

    def users_first_page(self) -> URL:
        return self._url(f"{self._scope()}/Users?PageSize={self.page_size}")

    def roles_first_page(self) -> URL:
        return self._url(f"{self._scope()}/Roles?PageSize={self.page_size}")

    def configuration(self) -> URL:
        if self.api is ApiFlavor.CHAT_V2:
            raise ValueError("chat-v2 has no account Configuration: it names its Service itself")
        return self._url("/v1/Configuration")

    def _scope(self) -> str:
        if self.api is ApiFlavor.CHAT_V2:
            return f"/v2/Services/{quote(str(self.service_sid), safe='')}"
        if self.service_sid is None:
            return "/v1"
        return f"/v1/Services/{quote(self.service_sid, safe='')}"

    def _url(self, path: str) -> URL:
        return URL(self.base_url.rstrip("/") + path, encoded=True)


def next_page(url: str) -> URL:
    """A `meta.next_page_url` as a URL, verbatim: not decoded, not normalised."""
    return URL(url, encoded=True)
