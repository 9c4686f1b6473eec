"""The daemons' one HTTP listener (`--metrics-address`): Prometheus metrics at /metrics, and
/healthz and /readyz for the kubelet's probes.

A daemon builds a `Health`, registers named checks on it (each a function returning None when
all is well, else the reason it is not) and serves it with `HttpEndpoint`:

- /healthz: the liveness checks. Every daemon has `event_loop`: a callback on the daemon's
  event loop beats every second, and a loop that has not beaten for `stall` seconds (blocked,
  or wedged in a tight loop) fails it. The daemons' other loops are tasks of one TaskGroup:
  when one dies the process exits, so they need no check of their own.
- /readyz: the liveness checks and the readiness checks (listening, listed, synchronised...).
- Both answer 200 or 503 with a JSON body naming every check ("ok" or the reason), plus the
  daemon's facts (the controller's `leader`).

The server is the standard library's http.server in a thread, as prometheus_client's own
start_http_server is, not aiohttp: prometheus_client loads http.server already, so this module
adds nothing to `sartd bgp`'s start-up, where aiohttp.web would add about 100 modules and 0.2 s
(and `sartd bgp` loads no aiohttp otherwise). Answering from its own thread is also what lets
/healthz report a stalled event loop rather than time out on it. Checks therefore run on that
thread: they read plain attributes and never iterate collections the loop may be changing.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import attrs
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

Check = Callable[[], str | None]  # None: fine; else why not
STALL = 10.0  # seconds without a beat before the event loop counts as stalled
BEAT = 1.0


def daemon_registry() -> CollectorRegistry:
    """A registry for a daemon's metrics holding prometheus-client's process, GC and platform
    collectors already (process_*, python_gc_*, python_info): the series every Python exporter
    has, which the library puts only in its global REGISTRY, and the daemons keep their own."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    GCCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


@attrs.frozen
class Report:
    """What /healthz or /readyz answers."""

    ok: bool
    checks: dict[str, str]  # name -> "ok" or the reason it failed
    facts: dict[str, Any]

    @property
    def status(self) -> int:
        return 200 if self.ok else 503

    def to_json(self, passing: str, failing: str) -> bytes:
        body = {"status": passing if self.ok else failing, "checks": self.checks, **self.facts}
        return json.dumps(body).encode() + b"\n"


class Health:
    """A daemon's named liveness and readiness checks, and facts shown beside them."""

    def __init__(self, *, stall: float = STALL, clock: Callable[[], float] = time.monotonic):
        self.stall = stall
        self.clock = clock
        self._live: dict[str, Check] = {"event_loop": self._loop_check}
        self._ready: dict[str, Check] = {}
        self._facts: dict[str, Callable[[], Any]] = {}
        self._beat: float | None = None
        self._timer: asyncio.TimerHandle | None = None

    def live(self, name: str, check: Check) -> None:
        self._live[name] = check

    def ready(self, name: str, check: Check) -> None:
        self._ready[name] = check

    def fact(self, name: str, read: Callable[[], Any]) -> None:
        self._facts[name] = read

    # --- the event loop's heartbeat ---------------------------------------------------------

    def beat(self) -> None:
        self._beat = self.clock()

    def start_heartbeat(self, loop: asyncio.AbstractEventLoop, interval: float = BEAT) -> None:
        """Beat on `loop` every `interval` seconds until `stop_heartbeat`."""

        def tick() -> None:
            self.beat()
            self._timer = loop.call_later(interval, tick)

        tick()

    def stop_heartbeat(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _loop_check(self) -> str | None:
        if self._beat is None:
            return "the event loop has not started"
        late = self.clock() - self._beat
        return f"the event loop has not run for {late:.1f} s" if late > self.stall else None

    # --- the reports ------------------------------------------------------------------------

    def liveness(self) -> Report:
        return self._report(self._live)

    def readiness(self) -> Report:
        return self._report({**self._live, **self._ready})

    def _report(self, checks: dict[str, Check]) -> Report:
        results = {name: _run(check) for name, check in checks.items()}
        facts = {name: read() for name, read in self._facts.items()}
        ok = all(result is None for result in results.values())
        return Report(ok, {name: r or "ok" for name, r in results.items()}, facts)


def _run(check: Check) -> str | None:
    try:
        return check()
    except Exception as error:  # a broken check must fail its probe, not the server
        return f"the check failed: {error!r}"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        health = self.server.health
        if path == "/metrics" and self.server.registry is not None:
            self._send(200, CONTENT_TYPE_LATEST, generate_latest(self.server.registry))
        elif path in ("/healthz", "/livez"):
            report = health.liveness()
            self._send(report.status, "application/json", report.to_json("ok", "failing"))
        elif path == "/readyz":
            report = health.readiness()
            self._send(report.status, "application/json", report.to_json("ready", "not ready"))
        else:
            self._send(404, "text/plain", b"not found: /metrics, /healthz or /readyz\n")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Probes every few seconds are not worth a log line."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], health: Health, registry: CollectorRegistry | None
    ) -> None:
        self.address_family = socket.getaddrinfo(*address, type=socket.SOCK_STREAM)[0][0]
        self.health = health
        self.registry = registry
        super().__init__(address, _Handler)


class HttpEndpoint:
    """/metrics, /healthz and /readyz on one address, served from a thread."""

    def __init__(self, server: _Server) -> None:
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="sart-http", daemon=True)
        self._thread.start()

    @classmethod
    def start(
        cls, address: tuple[str, int], health: Health, registry: CollectorRegistry | None = None
    ) -> HttpEndpoint:
        """Listen on `address` (raises OSError when it cannot) and serve from a thread."""
        return cls(_Server(address, health, registry))

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
