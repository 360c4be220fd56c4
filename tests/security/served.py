"""The admin API served from a thread with its own event loop, for synchronous HTTP clients.

schemathesis calls the API with `requests`, which blocks; so the app (and an emulator for the
runs it starts) live on a second event loop in a thread, on 127.0.0.1 port 0, until the module
is done with them.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests
from aiohttp import web

from service.app import create_app
from service.emulator import EmulatorConfig, running_emulator
from tests.e2e.conftest import make_settings
from tests.e2e.serving import FAST


async def _serve(database_url: str, ready: queue.Queue[str], stop: threading.Event) -> None:
    async with running_emulator(EmulatorConfig()) as emulator:
        emulator.emulator.set_write_limit(None)
        settings = make_settings(database_url, emulator, **{**FAST, "sync_user_timeout": 0.5})
        runner = web.AppRunner(create_app(settings), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            host, port = runner.addresses[0][:2]
            ready.put(f"http://{host}:{port}")
            while not stop.is_set():
                await asyncio.sleep(0.05)
        finally:
            await runner.cleanup()


@contextmanager
def served_in_thread(database_url: str, **ignored: Any) -> Iterator[str]:
    """The base URL of a leading replica, served until the block ends."""
    ready: queue.Queue[str] = queue.Queue()
    stop = threading.Event()
    thread = threading.Thread(
        target=lambda: asyncio.run(_serve(database_url, ready, stop)), daemon=True
    )
    thread.start()
    try:
        base_url = ready.get(timeout=20)
        _wait_until_leading(base_url)
        yield base_url
    finally:
        stop.set()
        thread.join(timeout=20)


def _wait_until_leading(base_url: str, *, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if requests.get(base_url + "/readyz", timeout=5).json().get("role") == "leader":
            return
        time.sleep(0.1)
    raise AssertionError(f"{base_url} did not become the leader within {within} s")
