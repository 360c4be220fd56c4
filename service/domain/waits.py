"""Users waiting for each other's identities: which one lets go first.

A user waits while another user holds its new identity. Usually the holder is on its way out
(renamed away, removed, deactivated) and the wait ends when it is done. But renames can form a
cycle, the plainest being two users swapping identities: each holds what the other wants and
neither rename can create its new user first. One user of each cycle then lets go of its old
remote user first (break before make), the lowest user id, so the choice is the same on every
run and replica; the others follow, and that user gets its new identity last.
"""

from __future__ import annotations

from collections.abc import Mapping


def cycle_breakers(waits: Mapping[str, str]) -> dict[str, int]:
    """The user that lets go in each cycle of `waits` (user → the user it waits for), with the
    number of users of its cycle: letting go is the first write of them all (each then gets a
    new remote user), so the write guard counts them all there (`reconcile.gate`)."""
    breakers: dict[str, int] = {}
    done: set[str] = set()
    for start in sorted(waits):
        path: list[str] = []
        user: str | None = start
        while user is not None and user not in done and user not in path:
            path.append(user)
            user = waits.get(user)
        if user is not None and user in path:
            cycle = path[path.index(user) :]
            breakers[min(cycle)] = len(cycle)
        done.update(path)
    return breakers
