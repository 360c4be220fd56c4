"""`Shutdown` in-process: a real signal to this process, handled on the running loop."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import threading

import pytest

from service.shutdown import Shutdown


def drop_a_failed_future() -> None:
    """What a connection cancelled mid-handshake leaves behind: an error nobody retrieves."""
    future = asyncio.get_running_loop().create_future()
    future.set_exception(ConnectionError("unexpected connection_lost() call"))
    del future
    gc.collect()


async def test_an_error_left_behind_while_stopping_is_not_printed(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
):
    async def command() -> int:
        try:
            await asyncio.sleep(30)
        finally:
            drop_a_failed_future()
        return 0

    async def signal_soon() -> None:
        await asyncio.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    kill = asyncio.create_task(signal_soon())
    shutdown = Shutdown(deadline=10)
    try:
        code = await shutdown.run(command())
    finally:
        shutdown.disarm()  # else it ends this test process 10 s later (os._exit(143))
    await kill

    assert code == 143
    err = capsys.readouterr().err
    assert "never retrieved" not in err + caplog.text  # asyncio's own handler logs it
    assert err.strip().splitlines()[-1] == "user-sync: stopped by SIGTERM"


async def test_an_error_nobody_awaited_before_any_signal_is_logged_as_an_error(
    capsys: pytest.CaptureFixture[str],
):
    async def command() -> int:
        drop_a_failed_future()
        await asyncio.sleep(0)
        return 0

    code = await Shutdown(deadline=10).run(command())

    assert code == 0
    err = capsys.readouterr()
    logged = err.out + err.err
    assert "error nobody awaited" in logged
    assert "unexpected connection_lost() call" in logged


async def test_disarm_cancels_the_deadline_a_signal_armed():
    async def command() -> int:
        await asyncio.sleep(30)
        return 0

    async def signal_soon() -> None:
        await asyncio.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    def deadlines() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if isinstance(t, threading.Timer)]

    kill = asyncio.create_task(signal_soon())
    shutdown = Shutdown(deadline=30)
    code = await shutdown.run(command())
    await kill
    armed = deadlines()
    shutdown.disarm()
    for timer in armed:
        timer.join(timeout=2)

    assert code == 143
    assert len(armed) == 1  # the signal armed it, and the command's end left it armed
    assert deadlines() == []
