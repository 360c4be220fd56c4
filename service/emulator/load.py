"""Another client of the Service writing at a set rate, as the customer's own app does.

Twilio's 30 writes per second per Service are shared by every client that writes to it. A
`Load` spends that budget the way another client would: one write every 1/N s (on a fixed
grid, so a busy loop does not slow it), each admitted or refused by the Service's write
limit exactly like a real write, and counts how many were refused (the 429s that client would
see). It changes no user: only the budget is shared, which is all a pacer can observe.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class LoadCounts:
    writes_per_second: float
    service_sid: str
    attempted: int = 0
    refused: int = 0

    def as_json(self) -> dict[str, object]:
        return {
            "writes_per_second": self.writes_per_second,
            "service_sid": self.service_sid,
            "attempted": self.attempted,
            "refused": self.refused,
        }


class Load:
    """Writes at `writes_per_second` to `service_sid` through `admit` until stopped."""

    def __init__(
        self, writes_per_second: float, *, service_sid: str, admit: Callable[[str], bool]
    ) -> None:
        if not 0 < writes_per_second < math.inf:
            raise ValueError(f"writes_per_second must be positive, not {writes_per_second}")
        self.counts = LoadCounts(writes_per_second, service_sid)
        self._admit = admit
        self._task = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        loop = asyncio.get_running_loop()
        interval = 1 / self.counts.writes_per_second
        at = loop.time()
        while True:
            self.counts.attempted += 1
            if not self._admit(self.counts.service_sid):
                self.counts.refused += 1
            at = max(at + interval, loop.time() - interval)
            await asyncio.sleep(at - loop.time())

    def stop(self) -> LoadCounts:
        """No more writes (the task is cancelled and writes nothing after this)."""
        self._task.cancel()
        return self.counts
