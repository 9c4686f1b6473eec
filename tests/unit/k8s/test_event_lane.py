"""EventLane: Events wait for the state writes, within a bound (no apiserver: a recorder
that keeps what it is given)."""

from __future__ import annotations

import asyncio
from typing import Any

from sart.k8s.runtime import events
from sart.k8s.runtime.events import EventLane
from waiting import until

SERVICE = {"apiVersion": "v1", "kind": "Service", "namespace": "default", "name": "web"}


class KeptEvents:
    def __init__(self) -> None:
        self.recorded: list[str] = []

    async def record(self, involved: Any, type_: str, reason: str, message: str) -> None:
        self.recorded.append(message)


async def _held() -> None:
    """Long enough for the lane to have written an Event it was free to write (a few of its
    polls): what must not be written is still not."""
    await asyncio.sleep(5 * events.POLL)


def test_events_wait_while_state_is_being_written_then_go_in_order() -> None:
    async def scenario() -> None:
        busy = True
        kept = KeptEvents()
        lane = EventLane(kept, lambda: busy, hold=60)  # type: ignore[arg-type]
        task = asyncio.create_task(lane.run())
        lane.post(SERVICE, "Normal", "IPAllocated", "first")
        lane.post(SERVICE, "Normal", "IPAllocated", "second")
        await _held()
        assert kept.recorded == [] and lane.waiting == 2
        busy = False
        await until(lambda: lane.waiting == 0, timeout=10)
        assert kept.recorded == ["first", "second"]
        task.cancel()

    asyncio.run(scenario())


def test_an_event_waits_no_longer_than_its_hold() -> None:
    async def scenario() -> None:
        kept = KeptEvents()
        lane = EventLane(kept, lambda: True, hold=0.1)  # type: ignore[arg-type]
        task = asyncio.create_task(lane.run())
        lane.post(SERVICE, "Normal", "IPAllocated", "late but written")
        await until(lambda: kept.recorded, timeout=10)
        assert kept.recorded == ["late but written"]
        task.cancel()

    asyncio.run(scenario())


def test_past_the_queue_bound_the_oldest_are_dropped(monkeypatch: Any) -> None:
    monkeypatch.setattr(events, "QUEUED", 3)

    async def scenario() -> None:
        kept = KeptEvents()
        lane = EventLane(kept, lambda: False)  # type: ignore[arg-type]
        for n in range(5):
            lane.post(SERVICE, "Normal", "IPAllocated", str(n))
        assert lane.dropped == 2 and lane.waiting == 3
        task = asyncio.create_task(lane.run())
        await until(lambda: lane.waiting == 0, timeout=10)
        assert kept.recorded == ["2", "3", "4"]
        task.cancel()

    asyncio.run(scenario())
