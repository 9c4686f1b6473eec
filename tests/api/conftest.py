"""Fixtures for the API tests: a real Speaker for the services to drive."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from loopback import speaker_config
from sart.bgp.speaker import Speaker


@pytest_asyncio.fixture
async def speaker(request: pytest.FixtureRequest) -> AsyncIterator[Speaker]:
    """A running Speaker, AS 65001, at the test module's loopback address `A`."""
    made = Speaker(speaker_config(request.module.A, 65001))
    await made.start()
    yield made
    await made.stop()
