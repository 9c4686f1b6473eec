"""The daemons' metrics as Prometheus scrapes them (the text exposition): the process, GC and
platform series beside sart's own, label values that name only what is bounded, and the series
of a deleted pool, peer or neighbor gone with it."""

from __future__ import annotations

import re
import urllib.request

import pytest
from kubernetes_asyncio.client import ApiClient
from netaddr import IPAddress
from prometheus_client import CollectorRegistry, generate_latest

from sart.bgp.config import NeighborConfig, SpeakerConfig
from sart.bgp.fsm import State
from sart.bgp.metrics import SpeakerCollector
from sart.bgp.speaker import Speaker
from sart.cli.serving import Health, HttpEndpoint, daemon_registry
from sart.fib.metrics import FibMetrics
from sart.k8s.models import BGPPeerConditionStatus
from sart.k8s.runtime.cni import CniService
from sart.k8s.runtime.metrics import AgentMetrics, ControllerMetrics

RUNTIME_SERIES = (
    "process_resident_memory_bytes",
    "process_cpu_seconds_total",
    "process_open_fds",
    "python_gc_objects_collected_total",
    "python_gc_collections_total",
    "python_info",
)


def label_names(registry: CollectorRegistry) -> dict[str, set[str]]:
    """Each sart_* metric family's label names."""
    return {
        family.name: {name for sample in family.samples for name in sample.labels}
        for family in registry.collect()
        if family.name.startswith("sart_")
    }


def test_every_daemon_registry_has_the_process_gc_and_platform_series() -> None:
    registry = daemon_registry()
    metrics = ControllerMetrics(registry)
    metrics.leader.set(1)
    endpoint = HttpEndpoint.start(("127.0.0.1", 0), Health(), registry)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{endpoint.port}/metrics") as reply:
            text = reply.read().decode()
    finally:
        endpoint.close()
    for series in RUNTIME_SERIES:
        assert re.search(rf"^{series}(\{{.*\}})? ", text, re.MULTILINE), series
    assert "sart_controller_leader 1.0" in text


def test_no_label_names_an_object_the_controller_serves() -> None:
    """Per pool (what operators configure) and per kind, never per Service: the controller's
    counters count Service reconciliations by kind and error alone."""
    metrics = ControllerMetrics()
    metrics.reconciliations.labels("Service").inc()
    metrics.failures.labels("Service", "409").inc()
    metrics.allocated.labels("default").set(1)
    allowed = {"resource", "error", "pool", "type", "le"}  # le: histogram buckets
    for name, labels in label_names(metrics.registry).items():
        assert labels <= allowed, name
    agent, fib = AgentMetrics(), FibMetrics()
    agent.cni_calls.labels("ADD").inc()
    fib.changes.labels("replace").inc()
    # The agent's series name its own node, its peers (as FRR's and GoBGP's exporters do) and
    # its pools: a handful per node.
    allowed |= {"instance", "peer", "status", "name", "method", "code", "action"}
    for registry in (agent.registry, fib.registry):
        for name, labels in label_names(registry).items():
            assert labels <= allowed, name


def test_a_deleted_peers_status_series_go() -> None:
    metrics = AgentMetrics()
    states = [each.value for each in BGPPeerConditionStatus]
    metrics.set_state(metrics.peer_status, "tor-a", "Established", states)
    metrics.set_state(metrics.peer_status, "tor-b", "Idle", states)
    metrics.forget_state(metrics.peer_status, "tor-a", states)
    metrics.forget_state(metrics.peer_status, "never-seen", states)
    text = generate_latest(metrics.registry).decode()
    assert 'peer="tor-a"' not in text
    assert 'sart_agent_bgp_peer_status{peer="tor-b",status="Idle"} 1.0' in text


@pytest.mark.asyncio
async def test_a_deleted_pod_pools_series_go() -> None:
    async with ApiClient() as api:
        cni = CniService(api, "n1")
        pool = {
            "apiVersion": "sart.terassyi.net/v1alpha2",
            "kind": "AddressPool",
            "metadata": {"name": "pods"},
            "spec": {"cidr": "10.244.0.0/16", "type": "pod", "blockSize": 24},
        }
        cni._on_pool("ADDED", pool)
        text = generate_latest(cni.metrics.registry).decode()
        assert 'sart_agent_pod_addresses{pool="pods"} 0.0' in text
        assert 'sart_agent_address_blocks{pool="pods"} 0.0' in text
        cni._on_pool("DELETED", pool)
        assert 'pool="pods"' not in generate_latest(cni.metrics.registry).decode()
        cni.executor.shutdown()  # type: ignore[attr-defined]


@pytest.mark.asyncio
async def test_a_removed_neighbors_series_go() -> None:
    speaker = Speaker(SpeakerConfig(asn=65010, router_id=IPAddress("10.0.0.10")))
    registry = CollectorRegistry()
    registry.register(SpeakerCollector(speaker))
    kept, removed = IPAddress("10.0.0.1"), IPAddress("10.0.0.2")
    for address in (kept, removed):
        speaker.add_neighbor(NeighborConfig(address=address, asn=65001, passive=True))
        speaker.transitions[(address, State.ESTABLISHED)] = 3
    await speaker.remove_neighbor(removed)
    text = generate_latest(registry).decode()
    assert 'sart_bgp_fsm_transitions_total{peer="10.0.0.1",state="Established"} 3.0' in text
    assert 'peer="10.0.0.2"' not in text
    await speaker.remove_neighbor(kept)
