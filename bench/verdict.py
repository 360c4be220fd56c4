"""The end-state checks shared by the campaigns and the soak: is the remote side exact?

`expected_users` reads internal_users; `compare` holds it against the emulator's table and
counts what the issue asks for: users checked, mismatches (an active user missing or different
remotely, or an inactive one still there), duplicates (an identity twice remotely, or an
internal user present remotely under an old identity as well as its new one) and wrongful
deletions (a remote user the service must never delete that is gone, or an active user whose
remote sid changed without a rename, i.e. deleted and created again).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from service.emulator import Emulator


@dataclass(frozen=True, slots=True)
class Local:
    id: str
    identity: str
    friendly_name: str | None
    role: str | None
    attributes: dict[str, Any]
    active: bool


@dataclass(slots=True)
class Tally:
    """Counters printed by every campaign."""

    runs: int = 0
    kills: int = 0
    faults: int = 0
    users_checked: int = 0
    mismatches: int = 0
    duplicates: int = 0
    wrongful_deletions: int = 0
    handovers: int = 0
    """A remote user claimed by an internal user other than the one that first claimed it."""
    guard_overruns: int = 0
    """Guarded deletions beyond the limit within the window (runs without allow_deletes)."""
    notes: list[str] = field(default_factory=list)

    def note(self, message: str) -> None:
        if len(self.notes) < 20:
            self.notes.append(message)

    def print(self, title: str) -> None:
        print(f"{title}:")
        for name in (
            "runs",
            "kills",
            "faults",
            "users_checked",
            "mismatches",
            "duplicates",
            "wrongful_deletions",
            "handovers",
            "guard_overruns",
        ):
            label = "faults injected" if name == "faults" else name.replace("_", " ")
            print(f"  {label}: {getattr(self, name)}")
        for message in self.notes:
            print(f"  note: {message}")
        print(f"  verdict: {'PASS' if self.ok else 'FAIL'}")

    @property
    def ok(self) -> bool:
        counted = (self.mismatches, self.duplicates, self.wrongful_deletions, self.handovers)
        return not any(counted) and self.guard_overruns == 0


async def expected_users(db: asyncpg.Connection) -> dict[str, Local]:
    rows = await db.fetch(
        "SELECT id, identity, friendly_name, role, attributes::text AS attributes, active "
        "FROM internal_users"
    )
    return {
        row["id"]: Local(
            id=row["id"],
            identity=row["identity"],
            friendly_name=row["friendly_name"],
            role=row["role"],
            attributes=json.loads(row["attributes"] or "{}"),
            active=row["active"],
        )
        for row in rows
    }


def remote_users(emulator: Emulator) -> list[dict[str, Any]]:
    return emulator.users()


def role_sids(emulator: Emulator) -> dict[str, str]:
    return {role["friendly_name"]: role["sid"] for role in emulator.roles()}


def compare(
    local: dict[str, Local],
    remote: list[dict[str, Any]],
    tally: Tally,
    *,
    roles: dict[str, str],
    former_identities: dict[str, set[str]] | None = None,
    protected: set[str] | None = None,
) -> None:
    """Adds this end state's figures to `tally` (see the module docstring)."""
    by_identity: dict[str, dict[str, Any]] = {}
    counts = Counter(user["identity"] for user in remote)
    for identity, n in counts.items():
        if n > 1:
            tally.duplicates += n - 1
            tally.note(f"identity {identity!r} exists {n} times remotely")
    for user in remote:
        by_identity[user["identity"]] = user
    for user in local.values():
        tally.users_checked += 1
        problem = _difference(user, by_identity.get(user.identity), roles=roles)
        if problem:
            tally.mismatches += 1
            tally.note(f"{user.id}: {problem}")
        for old in (former_identities or {}).get(user.id, set()) - {user.identity}:
            if old in by_identity and not _claimed(old, local):
                tally.duplicates += 1
                tally.note(f"{user.id}: old identity {old!r} still exists remotely")
    for identity in protected or set():
        if identity not in by_identity:
            tally.wrongful_deletions += 1
            tally.note(f"remote user {identity!r} unknown locally was deleted")


def _claimed(identity: str, local: dict[str, Local]) -> bool:
    return any(user.identity == identity for user in local.values())


def _difference(user: Local, remote: dict[str, Any] | None, *, roles: dict[str, str]) -> str:
    if not user.active:
        return "inactive but present remotely" if remote is not None else ""
    if remote is None:
        return "active but missing remotely"
    wrong = []
    if (user.friendly_name or "") != (remote.get("friendly_name") or ""):
        wrong.append(f"friendly_name {remote.get('friendly_name')!r} != {user.friendly_name!r}")
    if json.loads(remote.get("attributes") or "{}") != user.attributes:
        wrong.append(f"attributes {remote.get('attributes')} != {user.attributes}")
    if user.role is not None and roles.get(user.role, user.role) != remote.get("role_sid"):
        wrong.append(f"role_sid {remote.get('role_sid')} != {user.role}")
    return "; ".join(wrong)


def sids_of(remote: list[dict[str, Any]]) -> dict[str, str]:
    return {user["identity"]: user["sid"] for user in remote}


def count_replaced(
    before: dict[str, str], after: dict[str, str], keep: set[str], tally: Tally
) -> None:
    """Identities in `keep` (active, not renamed) must keep their sid: never deleted."""
    for identity in keep:
        sid = before.get(identity)
        if sid is not None and after.get(identity) != sid:
            tally.wrongful_deletions += 1
            tally.note(f"{identity!r}: remote sid {sid} became {after.get(identity)}")


# --- a process seen from outside ----------------------------------------------------------


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def open_sockets(pid: int) -> int:
    fds = Path(f"/proc/{pid}/fd")
    count = 0
    for fd in fds.iterdir():
        try:
            count += os.readlink(fd).startswith("socket:")
        except OSError:
            continue
    return count


async def stuck_runs(db: asyncpg.Connection) -> int:
    return int(await db.fetchval("SELECT count(*) FROM sync_run WHERE status = 'running'"))


async def unresolved(db: asyncpg.Connection) -> tuple[int, int]:
    """(sync_state rows failed or quarantined, user_event rows not done)."""
    states = await db.fetchval(
        "SELECT count(*) FROM sync_state WHERE status IN ('failed', 'quarantined')"
    )
    events = await db.fetchval("SELECT count(*) FROM user_event WHERE done_at IS NULL")
    return int(states), int(events)
