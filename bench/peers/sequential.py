"""Peer A: the sequential sync script users write today with the official `twilio` package.

    python bench/peers/sequential.py --service-sid IS... --database-url postgresql://... \
        [--base-url http://127.0.0.1:PORT] [--account-sid AC...] [--auth-token ...]

(or TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, PEER_SERVICE_SID, PEER_BASE_URL, PEER_DATABASE_URL).

Reads the active rows of `internal_users` (identity, friendly_name, attributes), lists every
Conversations User of the Service, diffs by identity and writes one call at a time: create the
missing, update those whose friendly name or attributes differ, delete remote users no active
row names. A write answered 429 sleeps 1 s and is tried again (what such scripts do). Prints
one JSON line: creates, updates, deletes, 429s seen, seconds.

It imports neither the project nor anything but the standard library, `twilio` and `asyncpg`:
it is what the project is compared against (bench/compare.py), not part of it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

PAGE_SIZE = 50
RETRY_PAUSE = 1.0


@dataclass(frozen=True)
class Wanted:
    identity: str
    friendly_name: str | None
    attributes: dict[str, Any]


@dataclass(frozen=True)
class Plan:
    creates: list[Wanted]
    updates: list[tuple[str, Wanted]]  # (remote sid, wanted)
    deletes: list[str]  # remote sids


@dataclass
class Tally:
    """What the script did; shared by writer threads, hence the lock."""

    creates: int = 0
    updates: int = 0
    deletes: int = 0
    too_many_requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, n: int = 1) -> None:
        with self.lock:
            setattr(self, kind, getattr(self, kind) + n)


def arguments(description: str) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--service-sid", default=env("PEER_SERVICE_SID"))
    parser.add_argument("--account-sid", default=env("TWILIO_ACCOUNT_SID"))
    parser.add_argument("--auth-token", default=env("TWILIO_AUTH_TOKEN"))
    parser.add_argument("--base-url", default=env("PEER_BASE_URL"), help="default: Twilio")
    parser.add_argument("--database-url", default=env("PEER_DATABASE_URL"))
    args = parser.parse_args()
    for name in ("service_sid", "account_sid", "auth_token", "database_url"):
        if not getattr(args, name):
            parser.error(f"--{name.replace('_', '-')} is required")
    return args


def read_table(database_url: str) -> dict[str, Wanted]:
    async def fetch() -> list[Any]:
        connection = await asyncpg.connect(database_url)
        try:
            return await connection.fetch(
                "SELECT identity, friendly_name, attributes::text AS attributes "
                "FROM internal_users WHERE active"
            )
        finally:
            await connection.close()

    rows = asyncio.run(fetch())
    return {
        r["identity"]: Wanted(r["identity"], r["friendly_name"], json.loads(r["attributes"]))
        for r in rows
    }


def client_for(args: argparse.Namespace) -> Client:
    client = Client(args.account_sid, args.auth_token, account_sid=args.account_sid)
    if args.base_url:
        client.conversations.base_url = args.base_url
    return client


def users_of(client: Client, service_sid: str) -> Any:
    return client.conversations.v1.services(service_sid).users


def plan(wanted: dict[str, Wanted], remote: list[Any]) -> Plan:
    seen: set[str] = set()
    updates: list[tuple[str, Wanted]] = []
    deletes: list[str] = []
    for user in remote:
        want = wanted.get(user.identity)
        if want is None:
            deletes.append(user.sid)
            continue
        seen.add(user.identity)
        attributes = json.loads(user.attributes or "{}")
        if user.friendly_name != want.friendly_name or attributes != want.attributes:
            updates.append((user.sid, want))
    creates = [w for identity, w in wanted.items() if identity not in seen]
    return Plan(creates, updates, deletes)


def with_retry(call: Callable[[], object], tally: Tally) -> None:
    """Call until it is not answered 429, sleeping `RETRY_PAUSE` between tries."""
    while True:
        try:
            call()
            return
        except TwilioRestException as error:
            if error.status != 429:
                raise
            tally.add("too_many_requests")
            time.sleep(RETRY_PAUSE)


def write_calls(users: Any, planned: Plan, tally: Tally) -> list[Callable[[], None]]:
    """One closure per write, each counting itself when it succeeds."""

    def create(w: Wanted) -> Callable[[], None]:
        def call() -> None:
            with_retry(
                lambda: users.create(
                    identity=w.identity,
                    friendly_name=w.friendly_name,
                    attributes=json.dumps(w.attributes),
                ),
                tally,
            )
            tally.add("creates")

        return call

    def update(sid: str, w: Wanted) -> Callable[[], None]:
        def call() -> None:
            with_retry(
                lambda: users(sid).update(
                    friendly_name=w.friendly_name, attributes=json.dumps(w.attributes)
                ),
                tally,
            )
            tally.add("updates")

        return call

    def delete(sid: str) -> Callable[[], None]:
        def call() -> None:
            with_retry(lambda: users(sid).delete(), tally)
            tally.add("deletes")

        return call

    return (
        [create(w) for w in planned.creates]
        + [update(sid, w) for sid, w in planned.updates]
        + [delete(sid) for sid in planned.deletes]
    )


def run(args: argparse.Namespace, apply: Callable[[list[Callable[[], None]]], None]) -> None:
    """Read, list, diff, apply the writes with `apply`; print what was done as JSON."""
    started = time.perf_counter()
    client = client_for(args)
    users = users_of(client, args.service_sid)
    wanted = read_table(args.database_url)
    remote = list(users.stream(page_size=PAGE_SIZE))
    tally = Tally()
    apply(write_calls(users, plan(wanted, remote), tally))
    print(
        json.dumps(
            {
                "creates": tally.creates,
                "updates": tally.updates,
                "deletes": tally.deletes,
                "too_many_requests": tally.too_many_requests,
                "seconds": round(time.perf_counter() - started, 3),
            }
        )
    )


def one_at_a_time(calls: list[Callable[[], None]]) -> None:
    for call in calls:
        call()


if __name__ == "__main__":
    run(arguments("Peer A: sequential list, diff and write."), one_at_a_time)
