"""The one pacer against the Service's shared 30 writes/s: alone, beside another client, stalled.

    .venv/bin/python bench/pacer.py [--writes 900] [--latency 0.05 0.15] [--jitter 0.1]
                                    [--other 10] [--repeat 1]

The emulator runs in its own process at Twilio's 30 writes/s per Service, with latency drawn
around each `--latency` (standard deviation `--jitter` times it). Each scenario creates
`--writes` users through a `ConversationsClient` built by the composition root
(`service.app.conversations_client`) with the pacer `serve` uses
(`app.write_limiter(settings, reserve_for_urgent=True)`; the CLI's differs only in keeping no
slots for events), 32 writers at once:

- **alone**, adaptive (the default: ceiling 30) and fixed at 29.5 and 25 (adaptive off):
  writes/s as a share of 30/s and the share of writes answered 429 (targets: >= 0.97 of 30/s,
  <= 0.1 % 429s);
- **beside another client** writing `--other`/s (the emulator's `PUT /__emulator/load`):
  our writes/s as a share of what is left (target >= 0.9) and the share of the other client's
  writes refused (target <= 1 %), adaptive and fixed at 30 and at 30 - other;
- **stalled**: the event loop blocked 30 ms every 200 ms (CPU work between awaits), fixed at
  29.5: the rate the schedule still holds.

Not a test: it prints figures and says whether each target was met.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import sync
from sync import EmulatorProcess, control, emulator_process

from service import app
from service.config import Settings

TWILIO_LIMIT = 30.0
WRITERS = 32


@dataclass(frozen=True)
class Result:
    writes: int
    seconds: float
    rejected: int
    rate_at_end: float
    cuts: int
    other: dict[str, Any] | None = None

    @property
    def per_second(self) -> float:
        return self.writes / self.seconds

    @property
    def rejected_share(self) -> float:
        return self.rejected / (self.writes + self.rejected)

    @property
    def other_refused_share(self) -> float:
        if not self.other or not self.other["attempted"]:
            return 0.0
        return float(self.other["refused"]) / float(self.other["attempted"])


def settings_for(base_url: str, **overrides: Any) -> Settings:
    """The emulator's credentials; no database is opened."""
    url = "postgresql://unused@127.0.0.1/unused"
    return sync.settings_for(url, base_url, max_in_flight=WRITERS, max_retries=20, **overrides)


async def prepare(
    http: aiohttp.ClientSession,
    emulator: EmulatorProcess,
    *,
    latency: float,
    jitter: float,
    other: float | None,
) -> None:
    await control(http, emulator.base_url, "POST", "reset")
    fault = {"kind": "latency", "seconds": latency, "jitter": jitter * latency}
    await control(http, emulator.base_url, "POST", "faults", fault)
    if other:
        await control(http, emulator.base_url, "PUT", "load", {"writes_per_second": other})
        await asyncio.sleep(1.0)  # the other client is writing before we start


async def create_users(settings: Settings, *, count: int, stall: bool) -> tuple[float, Any]:
    """Seconds to create `count` users through serve's pacer; the limiter."""
    limiter = app.write_limiter(settings, reserve_for_urgent=True)
    async with aiohttp.ClientSession() as session:
        client = app.conversations_client(session, settings, limiter=limiter)
        names = iter(range(count))

        async def writer() -> None:
            for n in names:
                await client.create_user(f"bench-{n:06d}")

        staller = asyncio.create_task(_stall()) if stall else None
        started = time.perf_counter()
        await asyncio.gather(*(writer() for _ in range(WRITERS)))
        seconds = time.perf_counter() - started
        if staller is not None:
            staller.cancel()
    return seconds, limiter


async def _stall() -> None:
    while True:
        busy_until = time.perf_counter() + 0.03
        while time.perf_counter() < busy_until:
            pass
        await asyncio.sleep(0.2)


async def scenario(
    emulator: EmulatorProcess,
    *,
    count: int,
    latency: float,
    jitter: float,
    other: float | None = None,
    stall: bool = False,
    **overrides: Any,
) -> Result:
    async with aiohttp.ClientSession() as http:
        await prepare(http, emulator, latency=latency, jitter=jitter, other=other)
        settings = settings_for(emulator.base_url, **overrides)
        seconds, limiter = await create_users(settings, count=count, stall=stall)
        stats = await control(http, emulator.base_url, "GET", "stats")
        load = await control(http, emulator.base_url, "PUT", "load", {"writes_per_second": None})
    return Result(
        count, seconds, stats.get("too_many_requests", 0), limiter.rate, limiter.cuts, load
    )


def describe(label: str, result: Result, *, left: float) -> str:
    line = (
        f"  {label:<28} {result.per_second:6.2f} writes/s = {result.per_second / left:.3f} of"
        f" {left:g}/s; 429s {result.rejected} ({result.rejected_share:.2%});"
        f" {result.seconds:.1f} s;"
        f" pace at end {result.rate_at_end:.1f}/s after {result.cuts} cuts"
    )
    if result.other:
        line += (
            f"; other client {result.other['attempted']} writes,"
            f" {result.other['refused']} refused ({result.other_refused_share:.2%})"
        )
    return line


async def repeated(times: int, emulator: EmulatorProcess, **kwargs: Any) -> Result:
    """The median by writes/s of `times` runs (the run itself, so its figures agree)."""
    results = [await scenario(emulator, **kwargs) for _ in range(times)]
    rates = [r.per_second for r in results]
    return results[rates.index(statistics.median_low(rates))]


ALONE = (
    ("adaptive, ceiling 30", {}),
    ("fixed 29.5", {"write_rate": 29.5, "write_rate_adaptive": False}),
    ("fixed 25", {"write_rate": 25, "write_rate_adaptive": False}),
)


async def alone(emulator: EmulatorProcess, args: argparse.Namespace, **common: Any) -> None:
    print(" alone:")
    for label, overrides in ALONE:
        result = await repeated(args.repeat, emulator, **common, **overrides)
        print(describe(label, result, left=TWILIO_LIMIT))
        if not overrides:
            met = result.per_second >= 0.97 * TWILIO_LIMIT and result.rejected_share <= 0.001
            print(f"    target >= 0.97 of 30/s, <= 0.1% 429s: {verdict(met)}")


async def shared(emulator: EmulatorProcess, args: argparse.Namespace, **common: Any) -> None:
    left = TWILIO_LIMIT - args.other
    print(f" beside another client writing {args.other:g}/s ({left:g}/s left):")
    fixed = {"write_rate_adaptive": False}
    for label, overrides in (
        ("adaptive, ceiling 30", {}),
        ("fixed 30", fixed),
        (f"fixed {left:g}", {**fixed, "write_rate": left}),
    ):
        result = await repeated(args.repeat, emulator, **common, other=args.other, **overrides)
        print(describe(label, result, left=left))
        if not overrides:
            met = result.per_second >= 0.9 * left and result.other_refused_share <= 0.01
            print(f"    target >= 0.9 of {left:g}/s, other's 429s <= 1%: {verdict(met)}")


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


async def main(args: argparse.Namespace) -> None:
    async with emulator_process(write_limit=TWILIO_LIMIT) as emulator:
        for latency in args.latency:
            common = {"count": args.writes, "latency": latency, "jitter": args.jitter}
            print(
                f"latency {latency * 1000:.0f} ms ± {args.jitter * latency * 1000:.1f} ms (sd),"
                f" {args.writes} creates, {WRITERS} writers, emulator at 30 writes/s"
            )
            await alone(emulator, args, **common)
            await shared(emulator, args, **common)
            print(" stalled loop (30 ms every 200 ms):")
            stalled = {"stall": True, "write_rate": 29.5, "write_rate_adaptive": False}
            result = await repeated(args.repeat, emulator, **common, **stalled)
            print(describe("fixed 29.5", result, left=29.5))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=900)
    parser.add_argument("--latency", type=float, nargs="+", default=[0.05, 0.15])
    parser.add_argument(
        "--jitter",
        type=float,
        default=0.1,
        help="standard deviation of the latency, as a share of it",
    )
    parser.add_argument("--other", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=1)
    asyncio.run(main(parser.parse_args()))
