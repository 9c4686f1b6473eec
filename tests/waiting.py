"""Waiting for something that happens elsewhere (a peer, the apiserver, a controller): poll a
check until it holds, with a bound; `until` in async tests, `eventually` in the others."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any


async def until(check: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    """The first truthy result of `check()` (a value, or an awaitable of one); AssertionError
    when `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(interval)


def eventually(
    check: Callable[[], object], timeout: float = 30.0, what: str = "", interval: float = 0.1
) -> float:
    """Call `check()` every `interval` seconds until it is truthy and return the monotonic
    time it was; AssertionError naming `what` when `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not in {timeout} s: {what or check}")
        time.sleep(interval)
    return time.monotonic()
