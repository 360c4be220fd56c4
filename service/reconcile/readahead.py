"""Reading pages ahead while the caller stores the ones it has.

A full run lists every remote user page by page (sequential: each page's token comes from the
previous one) and COPYs them into Postgres. Done in turn, every COPY delays the next page by
its own round trip. `ReadAhead` runs the listing in a task of its own, up to `depth` pages
ahead (then the listing waits: a full run can be a million users), and hands the caller chunks
of at least `rows` items, so the listing never waits for Postgres and Postgres gets a few large
COPYs instead of one per page. It starts when it is made: the CLI's full sync makes it before
the database layer is loaded (`service.headstart`) and the run consumes it later, whole, once
(`started` says when the listing began, for the run's `listed_since`). The listing's failure
is raised in the caller, as if it had iterated the source itself; `close` (or closing the
generator `chunks` returns, use `contextlib.aclosing`) cancels the listing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Generic, TypeVar

Item = TypeVar("Item")

READ_AHEAD = 64
"""List pages read ahead of the COPY into Postgres (64 pages of 50 or 100 users)."""


class _End:
    """The source is exhausted."""


class ReadAhead(Generic[Item]):
    """The pages of `source`, read from now on, up to `depth` ahead of whoever takes them."""

    def __init__(
        self, source: AsyncIterator[list[Item]], *, depth: int = READ_AHEAD, calls_before: int = 0
    ) -> None:
        self.started = time.monotonic()
        """When the listing began (`time.monotonic`): no page was asked for before."""
        self.calls_before = calls_before
        """The calls its client had made when the listing began: the run that takes it counts
        its API calls from there, the pages read before it opened included."""
        self._queue: asyncio.Queue[list[Item] | _End | Exception] = asyncio.Queue(depth)
        self._task = asyncio.create_task(_pump(source, self._queue), name="read-ahead")
        self._taken = False

    async def chunks(self, *, rows: int) -> AsyncGenerator[list[Item], None]:
        """The items in chunks of at least `rows` (the last may be smaller); only once: a
        listing is planned from whole, by one run. Closing the generator closes the listing."""
        if self._taken:
            raise RuntimeError("this listing was already taken")
        self._taken = True
        try:
            chunk: list[Item] = []
            while not isinstance(page := await self._queue.get(), _End):
                if isinstance(page, Exception):
                    raise page
                chunk += page
                if len(chunk) >= rows:
                    yield chunk
                    chunk = []
            if chunk:
                yield chunk
        finally:
            await self.close()

    async def close(self) -> None:
        """Cancel the listing (nothing if it has ended) and wait until it has stopped."""
        self._task.cancel()
        await asyncio.wait([self._task])  # never raises the task's cancellation as ours


async def _pump(
    source: AsyncIterator[list[Item]], queue: asyncio.Queue[list[Item] | _End | Exception]
) -> None:
    try:
        async for page in source:
            await queue.put(page)
    except Exception as e:  # handed to the caller, raised there
        await queue.put(e)
        return
    await queue.put(_End())
