"""List pages the way Twilio serves them: `PageSize`, a client-state `Page`, an opaque `PageToken`.

The token names a position in the collection's creation order ("after the item with sequence
number N", or "before" it for the previous page), never an offset, so a client following
`meta.next_page_url` sees every item that existed for the whole walk exactly once even while
items are created and deleted between its requests. A `PageSize` above the maximum is clamped
to it (the spec declares the maximum, and the official libraries send larger sizes when asked
for a `limit`); a size below 1 or a token this emulator did not make is a 400.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import urlencode

from service.emulator.errors import invalid_parameter

DEFAULT_PAGE_SIZE = 50
_CURSOR_PREFIX = "PT"

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


@dataclass(frozen=True, slots=True)
class Cursor:
    forward: bool
    """True: the items after `seq`; False: the items just before it."""
    seq: int

    def token(self) -> str:
        raw = f"{'a' if self.forward else 'b'}{self.seq}".encode()
        return _CURSOR_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str) -> Cursor:
    try:
        if not token.startswith(_CURSOR_PREFIX):
            raise ValueError(token)
        body = token[len(_CURSOR_PREFIX) :]
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
        if raw[:1] not in ("a", "b"):
            raise ValueError(raw)
        return Cursor(forward=raw[0] == "a", seq=int(raw[1:]))
    except ValueError:
        raise invalid_parameter(f"Invalid PageToken: {token}") from None


@dataclass(frozen=True, slots=True)
class PageRequest:
    size: int
    number: int
    cursor: Cursor | None


def _non_negative_int(query: Mapping[str, str], name: str, default: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise invalid_parameter(f"Invalid {name}: {raw}") from None
    if value < 0:
        raise invalid_parameter(f"Invalid {name}: {raw}")
    return value


def page_request(query: Mapping[str, str], *, max_size: int) -> PageRequest:
    size = _non_negative_int(query, "PageSize", DEFAULT_PAGE_SIZE)
    if size < 1:
        raise invalid_parameter("PageSize must be at least 1")
    token = query.get("PageToken")
    cursor = decode_token(token) if token else None
    return PageRequest(min(size, max_size), _non_negative_int(query, "Page", 0), cursor)


class Ordered(Protocol[T_co]):
    """A collection in a stable order, reachable by sequence number."""

    def after(self, seq: int, limit: int) -> Sequence[T_co]: ...
    def before(self, seq: int, limit: int) -> Sequence[T_co]: ...
    def any_after(self, seq: int) -> bool: ...
    def any_before(self, seq: int) -> bool: ...


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: Sequence[T]
    next: Cursor | None
    previous: Cursor | None


def select_page(source: Ordered[T], request: PageRequest, *, key: Callable[[T], int]) -> Page[T]:
    cursor = request.cursor or Cursor(forward=True, seq=0)
    if cursor.forward:
        items = source.after(cursor.seq, request.size)
    else:
        items = source.before(cursor.seq, request.size)
    last = key(items[-1]) if items else (cursor.seq if cursor.forward else cursor.seq - 1)
    first = key(items[0]) if items else last + 1
    following = Cursor(forward=True, seq=last) if source.any_after(last) else None
    preceding = None
    if request.number > 0 and source.any_before(first):
        preceding = Cursor(forward=False, seq=first)
    return Page(items, following, preceding)


def page_meta(page: Page[Any], request: PageRequest, *, url: str, key: str) -> dict[str, Any]:
    """Twilio's `meta` object; `url` is the absolute collection URL without a query."""

    def link(number: int, cursor: Cursor | None) -> str:
        query: dict[str, str | int] = {"PageSize": request.size, "Page": number}
        if cursor is not None:
            query["PageToken"] = cursor.token()
        return f"{url}?{urlencode(query)}"

    return {
        "page": request.number,
        "page_size": request.size,
        "first_page_url": link(0, None),
        "previous_page_url": link(request.number - 1, page.previous) if page.previous else None,
        "url": link(request.number, request.cursor),
        "next_page_url": link(request.number + 1, page.next) if page.next else None,
        "key": key,
    }
