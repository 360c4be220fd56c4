"""A command that ignores being cancelled, run under the CLI's `Shutdown` by test_signals.py.

It stands for a command whose stop hangs: only the deadline or a second signal may end it.
Usage: `python stubborn_command.py DEADLINE_SECONDS`; prints `started` once the handlers are
in, and `cancel ignored` each time its task is cancelled.
"""

from __future__ import annotations

import asyncio
import sys

from service.shutdown import Shutdown


async def stubborn() -> int:
    print("started", flush=True)
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            print("cancel ignored", flush=True)


async def main(deadline: float) -> int:
    return await Shutdown(deadline=deadline).run(stubborn())


if __name__ == "__main__":
    sys.exit(asyncio.run(main(float(sys.argv[1]))))
