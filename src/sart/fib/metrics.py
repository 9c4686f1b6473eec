"""`sartd fib`'s Prometheus metrics (sart_fib_*): what it did to the kernel, and whether it
follows a speaker."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class FibMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.routes = Gauge(
            "sart_fib_routes",
            "Routes of ours the kernel holds (installed, and stale ones kept for a restart)",
            registry=self.registry,
        )
        self.changes = Counter(
            "sart_fib_route_changes",
            "Route changes the kernel accepted (action: replace or delete)",
            ["action"],
            registry=self.registry,
        )
        self.errors = Counter(
            "sart_fib_route_errors",
            "Route changes the kernel refused (action: replace or delete)",
            ["action"],
            registry=self.registry,
        )
        self.events = Counter(
            "sart_fib_events",
            "Best path changes received from the speaker",
            registry=self.registry,
        )
        self.synchronisations = Counter(
            "sart_fib_synchronisations",
            "Whole-table reconciles of the kernel with the speaker's Loc-RIB",
            registry=self.registry,
        )
        self.connected = Gauge(
            "sart_fib_speaker_connected",
            "1 while the speaker's API is followed, else 0",
            registry=self.registry,
        )
