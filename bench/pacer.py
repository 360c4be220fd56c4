"""The one pacer against the Service's shared 30 writes/s: alone, beside another client, stalled.

    .venv/bin/python bench/pacer.py [--writes 900] [--latency 0.05 0.15] [--jitter 0.1]
                                    [--other 10] [--repeat 1] [--trace]
                                    [--adaptive-only] [--shared-only]

The emulator runs in its own process at Twilio's 30 writes/s per Service, with latency drawn
around each `--latency` (standard deviation `--jitter` times it). Each scenario creates
`--writes` users through a `ConversationsClient` built by the composition root
(`service.remote.conversations_client`) with the pacer `serve` uses
(`remote.write_limiter(settings, reserve_for_urgent=True)`; the CLI's differs only in keeping no
slots for events), 32 writers at once:

- **alone**, adaptive (the default: ceiling 30) and fixed at 29.5 and 25 (adaptive off):
  writes/s as a share of 30/s and the share of writes answered 429 (targets: >= 0.97 of 30/s,
  <= 0.1 % 429s);
- **beside another client** writing `--other`/s (the emulator's `PUT /__emulator/load`):
  our writes/s as a share of what is left (target >= 0.9) and the share of the other client's
  writes refused (target <= 1 %), adaptive and fixed at 30, at 30 - other and one under
  (the adaptive pacer's plateau: a spare write per second for the other client);
- **stalled**: the event loop blocked 30 ms every 200 ms (CPU work between awaits), fixed at
  29.5: the rate the schedule still holds.

Not a test: it prints figures and says whether each target was met. `--trace` also puts the
other client's 429s down to what the pacer was doing (`bench/pacer_trace.py`);
`--adaptive-only` and `--shared-only` leave rows out for a quicker run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import pacer_trace
import sync
from sync import EmulatorProcess, control, emulator_process

from service import remote
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
    trace: str | None = None

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


async def create_users(
    settings: Settings, *, count: int, stall: bool, trace: list[pacer_trace.Sample] | None = None
) -> tuple[float, Any]:
    """Seconds to create `count` users through serve's pacer; the limiter. With `trace`, the
    pacer and the emulator are sampled into it all along."""
    limiter = remote.write_limiter(settings, reserve_for_urgent=True)
    sampler = None
    if trace is not None:
        sampler = asyncio.create_task(pacer_trace.sample(settings.api_base_url, limiter, trace))
        pacer_trace.log_429s(limiter, pacer_trace.LOG)
    async with aiohttp.ClientSession() as session:
        client = remote.conversations_client(session, settings, limiter=limiter)
        names = iter(range(count))

        async def writer() -> None:
            for n in names:
                await client.create_user(f"bench-{n:06d}")

        staller = asyncio.create_task(_stall()) if stall else None
        started = time.perf_counter()
        await asyncio.gather(*(writer() for _ in range(WRITERS)))
        seconds = time.perf_counter() - started
        for task in (staller, sampler):
            if task is not None:
                task.cancel()
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
    trace: bool = False,
    **overrides: Any,
) -> Result:
    samples: list[pacer_trace.Sample] | None = [] if trace else None
    async with aiohttp.ClientSession() as http:
        await prepare(http, emulator, latency=latency, jitter=jitter, other=other)
        settings = settings_for(emulator.base_url, **overrides)
        seconds, limiter = await create_users(settings, count=count, stall=stall, trace=samples)
        stats = await control(http, emulator.base_url, "GET", "stats")
        load = await control(http, emulator.base_url, "PUT", "load", {"writes_per_second": None})
    report = pacer_trace.report(samples) if samples else None
    return Result(
        count, seconds, stats.get("too_many_requests", 0), limiter.rate, limiter.cuts, load, report
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
    return line if result.trace is None else f"{line}\n{result.trace}"


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
    for label, overrides in ALONE[:1] if args.adaptive_only else ALONE:
        result = await repeated(args.repeat, emulator, **common, **overrides)
        print(describe(label, result, left=TWILIO_LIMIT))
        if not overrides:
            met = result.per_second >= 0.97 * TWILIO_LIMIT and result.rejected_share <= 0.001
            print(f"    target >= 0.97 of 30/s, <= 0.1% 429s: {verdict(met)}")


async def shared(emulator: EmulatorProcess, args: argparse.Namespace, **common: Any) -> None:
    left = TWILIO_LIMIT - args.other
    print(f" beside another client writing {args.other:g}/s ({left:g}/s left):")
    fixed = {"write_rate_adaptive": False}
    rows: tuple[tuple[str, dict[str, Any]], ...] = (
        ("adaptive, ceiling 30", {}),
        ("fixed 30", fixed),
        (f"fixed {left:g}", {**fixed, "write_rate": left}),
        (f"fixed {left - 1:g}", {**fixed, "write_rate": left - 1}),  # the plateau's pace
    )
    for label, overrides in rows[:1] if args.adaptive_only else rows:
        trace = args.trace and not overrides
        result = await repeated(
            args.repeat, emulator, **common, other=args.other, trace=trace, **overrides
        )
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
            if not args.shared_only:
                await alone(emulator, args, **common)
            await shared(emulator, args, **common)
            if args.adaptive_only:
                continue
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
    parser.add_argument(
        "--trace",
        action="store_true",
        help="beside the other client, adaptive: its 429s by what the pacer was doing",
    )
    parser.add_argument(
        "--adaptive-only", action="store_true", help="only the adaptive rows, no stalled loop"
    )
    parser.add_argument("--shared-only", action="store_true", help="only beside the other client")
    asyncio.run(main(parser.parse_args()))
