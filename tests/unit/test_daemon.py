"""A daemon's work never ends by itself: if it does, the failure is logged with its traceback
and the process exits 1; SIGTERM stops it cleanly."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import pytest

from sart.cli.daemon import run_daemon, run_until_stopped


async def crashes() -> None:
    await asyncio.sleep(0)
    raise RuntimeError("the watch task died")


async def returns() -> None:
    await asyncio.sleep(0)


async def forever() -> None:
    await asyncio.Event().wait()


def test_a_crash_is_logged_with_its_traceback_and_exits_1(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with pytest.raises(SystemExit) as exited:
        run_daemon(run_until_stopped(crashes()), "sartd agent")
    assert exited.value.code == 1
    record = next(r for r in caplog.records if r.message == "sartd agent failed")
    assert record.levelno == logging.CRITICAL
    assert record.exc_info is not None and "the watch task died" in str(record.exc_info[1])


def test_work_that_ends_by_itself_is_a_failure_too() -> None:
    with pytest.raises(SystemExit) as exited:
        run_daemon(run_until_stopped(returns()), "sart-controller")
    assert exited.value.code == 1


def test_sigterm_is_a_clean_stop() -> None:
    async def main() -> None:
        asyncio.get_running_loop().call_later(0.05, os.kill, os.getpid(), signal.SIGTERM)
        await run_until_stopped(forever())

    run_daemon(main(), "sart-controller")  # returns: exit 0
