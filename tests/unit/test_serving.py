"""The daemons' HTTP endpoint: /healthz and /readyz from named checks, /metrics from the
registry, a stalled event loop seen from the server's own thread."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter

from sart.cli.serving import Health, HttpEndpoint


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def served(clock: Clock) -> Iterator[tuple[Health, str]]:
    health = Health(clock=clock)
    registry = CollectorRegistry()
    Counter("sart_test_things", "Things.", registry=registry).inc(3)
    endpoint = HttpEndpoint.start(("127.0.0.1", 0), health, registry)
    yield health, f"http://127.0.0.1:{endpoint.port}"
    endpoint.close()


def get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            status, body = reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read().decode()
    return status, json.loads(body) if body.startswith("{") else body


def test_probes_follow_the_checks(served: tuple[Health, str], clock: Clock) -> None:
    health, url = served
    assert get(f"{url}/healthz") == (
        503,
        {"status": "failing", "checks": {"event_loop": "the event loop has not started"}},
    )
    health.beat()
    waiting = ["listing"]
    health.ready("watches", lambda: f"not listed: {waiting[0]}" if waiting else None)
    health.fact("leader", lambda: False)
    assert get(f"{url}/healthz")[0] == 200
    status, body = get(f"{url}/readyz")
    assert status == 503 and body["checks"]["watches"] == "not listed: listing"
    waiting.clear()
    assert get(f"{url}/readyz") == (
        200,
        {"status": "ready", "checks": {"event_loop": "ok", "watches": "ok"}, "leader": False},
    )
    clock.now += 10.5  # no beat for longer than the stall limit
    status, body = get(f"{url}/readyz")
    assert status == 503 and body["checks"]["event_loop"] == "the event loop has not run for 10.5 s"
    assert get(f"{url}/healthz")[0] == 503


def test_metrics_and_a_broken_check(served: tuple[Health, str]) -> None:
    health, url = served
    health.beat()
    health.live("broken", lambda: str(1 / 0))
    status, body = get(f"{url}/healthz")
    assert status == 503 and body["checks"]["broken"].startswith("the check failed: Zero")
    status, text = get(f"{url}/metrics")
    assert status == 200 and "sart_test_things_total 3.0" in text
    assert get(f"{url}/other")[0] == 404
