"""How long `user-sync` takes to start, beside `python -c pass` (the interpreter's own floor).

    .venv/bin/python bench/startup.py               # 15 runs of each command, medians
    .venv/bin/python bench/startup.py --runs 30

Each command is the installed console script (`.venv/bin/user-sync`), run from `/` so nothing of
the checkout is on the path, with no settings: `--help`, `status --help`, `sync --help` (each
answers before any setting is read) and, for what a wrong setting costs, `status` with an
invalid `USERSYNC_WRITE_RATE` (refused at start, exit 2). Target (issue 12): `--help` under
0.3 s. Printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
USER_SYNC = str(VENV_BIN / "user-sync")
TARGET = 0.3

COMMANDS: dict[str, tuple[list[str], dict[str, str]]] = {
    "python -c pass": ([sys.executable, "-c", "pass"], {}),
    "user-sync --help": ([USER_SYNC, "--help"], {}),
    "user-sync sync --help": ([USER_SYNC, "sync", "--help"], {}),
    "user-sync status --help": ([USER_SYNC, "status", "--help"], {}),
    "user-sync status (bad setting)": ([USER_SYNC, "status"], {"USERSYNC_WRITE_RATE": "-1"}),
}


def timed(command: list[str], extra: dict[str, str]) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("USERSYNC_", "TWILIO_"))}
    env |= {"USERSYNC_SECRETS_DIR": "/nonexistent", **extra}
    started = time.perf_counter()
    subprocess.run(command, cwd="/", env=env, capture_output=True, check=False, timeout=60)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    for command, extra in COMMANDS.values():  # warm the page cache and the bytecode
        timed(command, extra)
    floor = None
    for name, (command, extra) in COMMANDS.items():
        times = sorted(timed(command, extra) for _ in range(args.runs))
        median = statistics.median(times)
        floor = median if floor is None else floor
        verdict = (
            ""
            if name.startswith("python")
            else (
                f"  {'ok' if median < TARGET else 'OVER'} (target < {TARGET} s)"
                if name.endswith("--help")
                else ""
            )
        )
        print(
            f"{name:34s} median {median:6.3f} s  min {times[0]:6.3f}  max {times[-1]:6.3f}"
            f"  ({median - floor:+.3f} s over python){verdict}"
        )


if __name__ == "__main__":
    main()
