"""Reading pages ahead while the caller stores the ones it has.

A full run lists every remote user page by page (sequential: each page's token comes from the
previous one) and COPYs them into Postgres. Done in turn, every COPY delays the next page by
its own round trip. `read_ahead` runs the listing in a task of its own, a few pages ahead, and
hands the caller chunks of at least `rows` items, so the listing never waits for Postgres and
Postgres gets a few large COPYs instead of one per page. The listing's failure is raised in
the caller, as if it had iterated the source itself; closing the generator (use
`contextlib.aclosing`) cancels the listing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TypeVar

Item = TypeVar("Item")


class _End:
    """The source is exhausted."""


async def read_ahead(
    source: AsyncIterator[list[Item]], *, rows: int, depth: int
) -> AsyncGenerator[list[Item], None]:
    """The items of `source` in chunks of at least `rows` (the last may be smaller), read up to
    `depth` pages ahead of the caller."""
    queue: asyncio.Queue[list[Item] | _End | Exception] = asyncio.Queue(depth)
    task = asyncio.create_task(_pump(source, queue))
    try:
        chunk: list[Item] = []
        while not isinstance(page := await queue.get(), _End):
            if isinstance(page, Exception):
                raise page
            chunk += page
            if len(chunk) >= rows:
                yield chunk
                chunk = []
        if chunk:
            yield chunk
    finally:
        task.cancel()
        await asyncio.wait([task])  # never raises the task's cancellation as ours


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
