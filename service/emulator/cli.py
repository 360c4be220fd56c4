"""`user-sync emulator`: run the emulator in the foreground until SIGINT or SIGTERM.

Prints what a developer needs to point the service (or the `twilio` library) at it: the URL, the
credentials, the default service and its roles, and the environment variables to export.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import signal
import sys
from collections.abc import Sequence
from typing import TextIO

from service.emulator.config import (
    DEFAULT_ACCOUNT_SID,
    DEFAULT_AUTH_TOKEN,
    DEFAULT_SERVICE_SID,
    EmulatorConfig,
)
from service.emulator.server import RunningEmulator, running_emulator

DEFAULT_PORT = 4010
MAX_PORT = 65535


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = config_from_args(parse_args(argv))
    except ValueError as error:
        print(f"user-sync emulator: {error}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(config, out=sys.stdout))
    except OSError as error:
        print(f"user-sync emulator: cannot serve: {error}", file=sys.stderr)
        return 1
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="user-sync emulator",
        description="A local emulator of the Twilio Conversations/Chat Users API.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--port", type=_port, default=DEFAULT_PORT, help=f"0 to {MAX_PORT}; 0: any free port"
    )
    parser.add_argument("--account-sid", default=DEFAULT_ACCOUNT_SID)
    parser.add_argument("--auth-token", default=DEFAULT_AUTH_TOKEN)
    parser.add_argument("--service-sid", default=DEFAULT_SERVICE_SID)
    parser.add_argument(
        "--api-key",
        action="append",
        default=[],
        metavar="SK..:SECRET",
        help="an API key sid and its secret (repeatable)",
    )
    parser.add_argument(
        "--write-limit",
        type=_write_limit,
        default=30.0,
        metavar="N",
        help="user writes per second per Service before 429 (0: off; default 30)",
    )
    parser.add_argument("--seed", type=int, default=None, help="make generated sids repeatable")
    return parser.parse_args(argv)


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {value!r}") from None
    if not 0 <= port <= MAX_PORT:
        raise argparse.ArgumentTypeError(f"must be from 0 to {MAX_PORT}, not {port}")
    return port


def _write_limit(value: str) -> float:
    try:
        limit = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, not {value!r}") from None
    if not math.isfinite(limit) or limit < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number, 0 or more, not {value!r}")
    return limit


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    api_keys: dict[str, str] = {}
    for pair in args.api_key:
        sid, separator, secret = pair.partition(":")
        if not separator or not sid or not secret:
            raise ValueError(f"--api-key wants SID:SECRET, got {pair!r}")
        api_keys[sid] = secret
    return EmulatorConfig(
        host=args.host,
        port=args.port,
        account_sid=args.account_sid,
        auth_token=args.auth_token,
        default_service_sid=args.service_sid,
        api_keys=api_keys,
        write_limit_per_second=args.write_limit or None,
        seed=args.seed,
    )


async def serve(config: EmulatorConfig, *, out: TextIO) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with running_emulator(config) as running:
            out.write(banner(running))
            out.flush()
            await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def banner(running: RunningEmulator) -> str:
    config = running.config
    limit = config.write_limit_per_second
    roles = running.emulator.roles()
    lines = [
        f"Twilio Users API emulator listening on {running.base_url}",
        f"  account sid          {config.account_sid}",
        f"  auth token           {config.auth_token}",
        *(f"  api key              {sid}" for sid in config.api_keys),
        f"  default service sid  {config.default_service_sid}",
        *(f"  role {r['friendly_name']:<15} {r['sid']} ({r['type']})" for r in roles),
        f"  write limit          {f'{limit:g}/s per service' if limit else 'off'}",
        f"  control API          {running.base_url}/__emulator/",
        "Point the service at it with:",
        f"  export USERSYNC_API_BASE_URL={running.base_url}",
        f"  export TWILIO_ACCOUNT_SID={config.account_sid}",
        f"  export TWILIO_AUTH_TOKEN={config.auth_token}",
        f"  export USERSYNC_SERVICE_SID={config.default_service_sid}  # or leave it unset",
        "Press Ctrl+C to stop.",
    ]
    return "\n".join(lines) + "\n"
