"""The Users of one Service, indexed for the three ways the API reaches them.

By sid and by identity (fetch/update/delete accept either), and in creation order for paging.
Paging is keyed by each user's creation sequence number, not by an offset: a page token says
"after seq N" (or "before seq N"), so users created or deleted between two page requests never
make the next page skip or repeat anyone. The order is a sorted list of sequence numbers
searched with `bisect`, so a page costs O(log n + page size) however deep it is.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterator

from service.emulator.records import User
from service.emulator.sids import sid_pattern

_USER_SID = sid_pattern("US")


class UserTable:
    def __init__(self) -> None:
        self._by_sid: dict[str, User] = {}
        self._sid_by_identity: dict[str, str] = {}
        self._by_seq: dict[int, User] = {}
        self._order: list[int] = []
        """Sequence numbers, ascending; users are appended with ever-growing `seq`."""

    def __len__(self) -> int:
        return len(self._order)

    def __iter__(self) -> Iterator[User]:
        return (self._by_seq[seq] for seq in self._order)

    def add(self, user: User) -> None:
        if self._order and user.seq <= self._order[-1]:
            raise ValueError("users must be added in increasing sequence order")
        self._by_sid[user.sid] = user
        self._sid_by_identity[user.identity] = user.sid
        self._by_seq[user.seq] = user
        self._order.append(user.seq)

    def remove(self, user: User) -> None:
        del self._by_sid[user.sid]
        del self._sid_by_identity[user.identity]
        del self._by_seq[user.seq]
        del self._order[bisect_left(self._order, user.seq)]

    def find(self, sid_or_identity: str) -> User | None:
        """The path segment of fetch/update/delete: a `US…` sid first, else an identity."""
        if _USER_SID.match(sid_or_identity):
            user = self._by_sid.get(sid_or_identity)
            if user is not None:
                return user
        sid = self._sid_by_identity.get(sid_or_identity)
        return None if sid is None else self._by_sid[sid]

    def has_identity(self, identity: str) -> bool:
        return identity in self._sid_by_identity

    def after(self, seq: int, limit: int) -> list[User]:
        """Up to `limit` users created after `seq`, oldest first."""
        start = bisect_right(self._order, seq)
        return [self._by_seq[s] for s in self._order[start : start + limit]]

    def before(self, seq: int, limit: int) -> list[User]:
        """Up to `limit` users created just before `seq`, oldest first."""
        end = bisect_left(self._order, seq)
        return [self._by_seq[s] for s in self._order[max(0, end - limit) : end]]

    def any_after(self, seq: int) -> bool:
        return bisect_right(self._order, seq) < len(self._order)

    def any_before(self, seq: int) -> bool:
        return bisect_left(self._order, seq) > 0
