"""Where the other client's 429s come from: `bench/pacer.py --trace`.

Every `PERIOD` s a sampler reads the pacer (its rate, cuts, the time since the last cut and the
rate it plateaus at) and the emulator (the other client's writes and refusals, our 429s). Each
interval is put down to what the pacer was doing in it:

- **before a cut**: within `BEFORE_CUT` s before one (the congestion the cut answers; our 429
  reaches us a round trip after the Service refused it);
- **after a cut**: within 1 s after one (writes granted at the old rate still arriving);
- **climbing** to the plateau, **plateau** (within `FLAT` writes/s of it), **probing** above it;
- **no cut yet** (at the ceiling, before the first 429).

A bench instrument, not the product's: it reads the limiter's private state.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import aiohttp
from sync import control

PERIOD = 0.1
LOG: list[str] = []
"""The 429s of the traced runs, as `log_429s` notes them."""
BEFORE_CUT = 1.5
FLAT = 0.1


@dataclass(frozen=True)
class Sample:
    at: float
    rate: float
    cuts: int
    since_cut: float
    plateau: float
    other_attempted: int
    other_refused: int
    ours_refused: int
    margin: float


def _plateau(limiter: Any) -> float:
    adaptive = limiter._adaptive
    if adaptive is None or not limiter.cuts:
        return float(limiter.ceiling)
    return float(adaptive.plateau(cut_from=limiter._cut_from))


def log_429s(limiter: Any, log: list[str]) -> None:
    """Wrap the limiter's `answered` to note, at each 429, the writes answered in the last
    second and the rate the pacer then cuts from (bench only)."""
    answered = limiter.answered
    started = asyncio.get_running_loop().time()

    def noting(grant: Any, *, status: int) -> None:
        answered(grant, status=status)
        if status == 429:
            now = asyncio.get_running_loop().time()
            log.append(
                f"      429 at {now - started:5.2f} s (granted {now - grant.at:.3f} s ago):"
                f" {limiter._through.count(now)} answered in the last second,"
                f" cut_from {limiter._cut_from:.2f}, cuts {limiter.cuts}"
            )

    limiter.answered = noting


async def sample(base_url: str, limiter: Any, samples: list[Sample]) -> None:
    """Until cancelled: one `Sample` every `PERIOD` s."""
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as http:
        while True:
            load = await control(http, base_url, "GET", "load") or {}
            stats = await control(http, base_url, "GET", "stats")
            now = loop.time()
            samples.append(
                Sample(
                    at=now,
                    rate=limiter.rate,
                    cuts=limiter.cuts,
                    since_cut=now - limiter._last_cut,
                    plateau=_plateau(limiter),
                    other_attempted=load.get("attempted", 0),
                    other_refused=load.get("refused", 0),
                    ours_refused=stats.get("too_many_requests", 0),
                    margin=limiter.arrival_margin,
                )
            )
            await asyncio.sleep(PERIOD)


def _phase(before: Sample, cut_times: list[float]) -> str:
    if any(0 <= cut - before.at <= BEFORE_CUT for cut in cut_times):
        return "before a cut"
    if not before.cuts:
        return "no cut yet"
    if before.since_cut <= 1.0:
        return "after a cut"
    if before.rate < before.plateau - FLAT:
        return "climbing"
    if before.rate <= before.plateau + FLAT:
        return "plateau"
    return "probing"


def report(samples: list[Sample]) -> str:
    """Seconds, our pace, the other client's refusals and ours, by phase; and a timeline."""
    cut_times = [s.at - s.since_cut for a, s in itertools.pairwise(samples) if s.cuts > a.cuts]
    seconds: dict[str, float] = defaultdict(float)
    pace: dict[str, float] = defaultdict(float)
    other: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    ours: dict[str, int] = defaultdict(int)
    for a, b in itertools.pairwise(samples):
        phase = _phase(a, cut_times)
        seconds[phase] += b.at - a.at
        pace[phase] += a.rate * (b.at - a.at)
        other[phase][0] += b.other_attempted - a.other_attempted
        other[phase][1] += b.other_refused - a.other_refused
        ours[phase] += b.ours_refused - a.ours_refused
    lines = ["    trace by phase: seconds, mean pace, other refused/attempted, our 429s"]
    for phase in sorted(seconds, key=lambda p: -other[p][1]):
        attempted, refused = other[phase]
        lines.append(
            f"      {phase:<13} {seconds[phase]:5.1f} s  pace {pace[phase] / seconds[phase]:5.2f}/s"
            f"  other {refused:3d}/{attempted:4d} ({refused / max(1, attempted):.1%})"
            f"  ours {ours[phase]:3d}"
        )
    lines.append("    timeline (1 s): pace, plateau, margin, cuts, other refused, our 429s")
    lines.extend(_timeline(samples))
    lines.extend(LOG)
    LOG.clear()
    return "\n".join(lines)


def _timeline(samples: list[Sample]) -> list[str]:
    step = round(1 / PERIOD)
    lines = []
    for n in range(0, len(samples) - step, step):
        a, b = samples[n], samples[n + step]
        lines.append(
            f"      t={a.at - samples[0].at:5.1f} pace {a.rate:5.2f} plateau {a.plateau:5.2f}"
            f" margin {a.margin * 1000:3.0f} ms"
            f" cuts {b.cuts - a.cuts} other {b.other_refused - a.other_refused}"
            f" ours {b.ours_refused - a.ours_refused}"
        )
    return lines
