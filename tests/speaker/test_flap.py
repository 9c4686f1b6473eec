"""A real `sartd bgp` process whose session is flapped 100 times by faults on the wire (and
the API): every flap comes back with all its routes, and nothing piles up in sartd (open
descriptors, RSS) or in the peer (tasks). benchmarks/bgp_flap.py runs the same loop 1,000
times and measures."""

from __future__ import annotations

import pytest

from sart.testing.flap import DEFAULT_METHODS, FlapRig

pytestmark = pytest.mark.asyncio


async def test_a_session_flapped_100_times_always_comes_back_and_leaks_nothing() -> None:
    async with FlapRig(routes_in=500, routes_out=50) as rig:
        report = await rig.run(100, warmup=20, timeout=20.0)
    assert report.all_came_back, report.failure
    assert report.flaps == 100
    assert report.methods == dict.fromkeys(DEFAULT_METHODS, 20)
    assert report.sessions >= 100  # sartd counted a new session for every flap
    start, end = report.start, report.end
    assert end.fds <= start.fds, "sartd keeps descriptors of closed connections"
    assert end.tasks <= start.tasks, "the peer keeps tasks of closed sessions"
    assert report.rss_growth < 10.0
    assert report.percentile(50) < 2.0  # reconnects at connect_retry_time, no long backoff
