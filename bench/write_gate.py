"""What the write guard's wait costs in memory, against planning a whole run first.

The gate (`service/reconcile/gate.py`) keeps a guarded pass's users to create or update until
the pass has planned everyone, but never more than the budget and one batch. Planning a whole
run before applying it would keep every user to write instead. This prints the memory that
keeping N planned updates takes (tracemalloc, the Planned values with their cases), per user
and for N = 1,000 (the default budget), 100,000 and, extrapolated, 1,000,000.

    .venv/bin/python bench/write_gate.py [--users N]
"""

from __future__ import annotations

import argparse
import gc
import tracemalloc

from service.domain.batch import Planned, plan_batch
from service.domain.cases import Case
from service.domain.policy import Policy
from service.domain.roles import RoleDirectory
from service.domain.users import (
    LocalUser,
    RemoteUser,
    RoleSid,
    SyncState,
    SyncStatus,
    UserId,
    UserSid,
)

ROLE = RoleSid("RL" + "0" * 32)


def case(n: int) -> Case:
    """A linked user whose source attributes changed: one update."""
    sid = UserSid(f"US{n:032x}")
    user_id = UserId(f"emp-{n:07d}")
    identity = f"user{n}@example.com"
    return Case(
        local=LocalUser(
            id=user_id,
            identity=identity,
            friendly_name=f"User {n}",
            role=None,
            attributes={"n": n, "team": f"team-{n % 7}", "oops": True},
            active=True,
        ),
        state=SyncState(
            user_id=user_id,
            remote_sid=sid,
            identity=identity,
            fingerprint=None,
            status=SyncStatus.SYNCED,
            managed_keys=frozenset({"n", "team"}),
        ),
        remote=RemoteUser(
            sid=sid,
            identity=identity,
            friendly_name=f"User {n}",
            role_sid=ROLE,
            attributes=f'{{"n": {n}, "team": "team-{n % 7}"}}',
        ),
    )


def kept(count: int) -> int:
    """Bytes that keeping `count` planned updates takes."""
    gc.collect()
    tracemalloc.start()
    planned: list[Planned] = []
    for start in range(0, count, 1000):
        cases = [case(n) for n in range(start, min(count, start + 1000))]
        plan = plan_batch(cases, policy=Policy(), roles=RoleDirectory.unread(), dry_run=False)
        planned += plan.work
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(planned) == count, "every case plans one update"
    return current


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    users = parser.parse_args().users
    budget = kept(1000)
    many = kept(users)
    per_user = many / users
    print(f"kept planned updates: {per_user:,.0f} bytes per user")
    print(f"the gate at the default budget (1,000 + one batch of 1,000): {2 * budget / 1e6:.1f} MB")
    print(f"{users:,} users planned before applying: {many / 1e6:.1f} MB")
    print(f"1,000,000 users planned before applying (extrapolated): {per_user * 1e6 / 1e6:,.0f} MB")


if __name__ == "__main__":
    main()
