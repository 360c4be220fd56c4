"""Peer C: the same diff as peer A (sequential.py), its writes from 16 threads at once.

    python bench/peers/concurrent_writes.py --service-sid IS... --database-url postgresql://... \
        [--base-url http://127.0.0.1:PORT] [--account-sid AC...] [--auth-token ...]

Each thread takes the next write and, when it is answered 429, sleeps 1 s and tries again:
the "make it faster" script users write once the sequential one is too slow. Same output as
peer A. Imports only the standard library, `twilio`, `asyncpg` and peer A's functions. Not
named `concurrent.py`: beside peer A that would shadow the standard library's `concurrent`
package (asyncio imports `concurrent.futures`) for every script in this directory.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from sequential import arguments, run

THREADS = 16


def sixteen_at_once(calls: list[Callable[[], None]]) -> None:
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        for future in [pool.submit(call) for call in calls]:
            future.result()


if __name__ == "__main__":
    run(arguments("Peer C: the same diff, 16 concurrent writers."), sixteen_at_once)
