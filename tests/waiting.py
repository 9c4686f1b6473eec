"""Waiting in async tests for something that happens elsewhere (a peer, the apiserver, a
controller): poll a check until it holds, with a bound."""

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
