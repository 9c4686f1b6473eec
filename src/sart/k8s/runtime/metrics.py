"""The controller's Prometheus metrics: the original sart's sart_controller_* set
(reconciliations, errors, reconcile duration, blocks per pool, advertisements per type) plus
pool usage, pending Services and leadership. The original's per-advertisement series
(sart_controller_bgp_advertisement_status and _backoff_count, labelled by object name) are
left out on purpose: a label value per object grows without bound."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ControllerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        # By kind, without the original's `instance` (the object's name): a label value per
        # Service grows without bound.
        self.reconciliations = Counter(
            "sart_controller_reconciliation",
            "Total count of reconciliations",
            ["resource"],
            registry=self.registry,
        )
        self.failures = Counter(
            "sart_controller_reconciliation_errors",
            "Reconciliation errors, by kind and error (an HTTP status or an exception type)",
            ["resource", "error"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "sart_controller_reconcile_duration_seconds",
            "The duration of reconcile to complete in seconds",
            buckets=(0.01, 0.1, 0.25, 0.5, 1.0, 5.0, 15.0, 60.0),
            registry=self.registry,
        )
        self.allocated = Gauge(
            "sart_controller_pool_allocated_addresses",
            "Addresses allocated from an AddressPool",
            ["pool"],
            registry=self.registry,
        )
        self.free = Gauge(
            "sart_controller_pool_free_addresses",
            "Addresses still free in an AddressPool",
            ["pool"],
            registry=self.registry,
        )
        self.max_blocks = Gauge(
            "sart_controller_max_blocks",
            "The number of maximum allocatable address blocks",
            ["pool", "type"],
            registry=self.registry,
        )
        self.allocated_blocks = Gauge(
            "sart_controller_allocated_blocks",
            "The number of allocated address blocks",
            ["pool", "type"],
            registry=self.registry,
        )
        self.advertisements = Gauge(
            "sart_controller_bgp_advertisements",
            "The number of BGP Advertisement",
            ["type"],
            registry=self.registry,
        )
        self.leader = Gauge(
            "sart_controller_leader",
            "1 while this controller holds the leader Lease, else 0",
            registry=self.registry,
        )
        self.pending = Gauge(
            "sart_controller_pending_services",
            "LoadBalancer Services waiting for an address",
            registry=self.registry,
        )
        self.webhook_expiry = Gauge(
            "sart_controller_webhook_certificate_expiration_timestamp_seconds",
            "When the webhook certificate this replica serves expires (Unix time)",
            registry=self.registry,
        )


class AgentMetrics:
    """The node agent's Prometheus metrics: the original sart's sart_agent_* set, and the CNI
    side's calls, addresses and blocks. Peer and NodeBGP series are labelled by name: one agent
    only ever has its own node's few."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.reconciliations = Counter(
            "sart_agent_reconciliation",
            "Total count of reconciliations",
            ["resource", "instance"],
            registry=self.registry,
        )
        self.failures = Counter(
            "sart_agent_reconciliation_errors",
            "Total count of reconciliation errors",
            ["resource", "instance"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "sart_agent_reconcile_duration_seconds",
            "The duration of reconcile to complete in seconds",
            buckets=(0.01, 0.1, 0.25, 0.5, 1.0, 5.0, 15.0, 60.0),
            registry=self.registry,
        )
        self.peer_status = Gauge(
            "sart_agent_bgp_peer_status",
            "BGP peer status: 1 for the session's state, 0 for the others",
            ["peer", "status"],
            registry=self.registry,
        )
        self.node_status = Gauge(
            "sart_agent_node_bgp_status",
            "Node BGP status: 1 for the NodeBGP's state, 0 for the other",
            ["name", "status"],
            registry=self.registry,
        )
        self.node_backoff = Counter(
            "sart_agent_node_bgp_backoff_count",
            "NodeBGP backoff count: times the speaker was found unavailable",
            ["name"],
            registry=self.registry,
        )

        self.cni_calls = Counter(
            "sart_agent_cni_call",
            "CNI calls served, by command",
            ["method"],
            registry=self.registry,
        )
        self.cni_errors = Counter(
            "sart_agent_cni_call_errors",
            "CNI calls answered with an error, by command and CNI error code",
            ["method", "code"],
            registry=self.registry,
        )
        self.cni_duration = Histogram(
            "sart_agent_cni_call_duration_seconds",
            "Time the agent took to serve a CNI call",
            ["method"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0),
            registry=self.registry,
        )
        self.pod_addresses = Gauge(
            "sart_agent_pod_addresses",
            "Pod addresses handed out on this node, by AddressPool",
            ["pool"],
            registry=self.registry,
        )
        self.address_blocks = Gauge(
            "sart_agent_address_blocks",
            "AddressBlocks this node holds, by AddressPool",
            ["pool"],
            registry=self.registry,
        )

    def set_state(self, gauge: Gauge, name: str, state: str, states: Iterable[str]) -> None:
        for each in states:
            gauge.labels(name, each).set(1 if each == state else 0)

    def forget_state(self, gauge: Gauge, name: str, states: Iterable[str]) -> None:
        """Remove the series set_state made for `name` (an object that is gone)."""
        for each in states:
            with contextlib.suppress(KeyError):  # no state was ever set for it
                gauge.remove(name, each)
