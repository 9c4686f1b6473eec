"""Cluster BGP on a routed lab (sart.testing.cluster_lab): three nodes, two spines, configured by
the original sart's sample manifests, as tests/k8s/test_original_samples.py builds it.

(a) Service created -> its address routed by spine0 (FRR, the kernel route zebra installed):
    first path and all three nodes (ECMP, externalTrafficPolicy Cluster), p50/p99 over N
    Services created one at a time.
(b) Node drained -> its next hop gone from spine0 for the Local Service. For Local, what the
    original sart announces follows the ready endpoints (a node's speaker announces while a
    ready pod of the Service runs there), so a drain is: the node cordoned and its pod
    evicted (deleted; there is no kubelet, so at once). A node's labels, and so its NodeBGP,
    stay; the Cluster Service stays announced from it (kube-proxy still forwards there).
(d) Idle: nothing changes for a while; the agents' CPU seconds and every request the sart
    components make to the apiserver, read from the apiserver's audit log (exact: one entry
    per request, with its User-Agent). The controller's is `sart-controller/...`; the agents
    use kubernetes_asyncio's default `OpenAPI-Generator/...` (nothing else in the lab does:
    the lab's own client says `sart-lab`). Target: nothing but the leader Lease.

    .venv/bin/python benchmarks/cluster_bgp.py [--services 50] [--drains 5] [--idle 60]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import attrs
import yaml
from kubernetes_asyncio.client import CoreV1Api

from sart.testing.cluster_lab import (
    ORIGINAL_NODES,
    ORIGINAL_SAMPLES,
    ORIGINAL_SPINES,
    PLACEMENT,
    ClusterLab,
    LabControlPlane,
    run_deployments,
    service_address,
    spine1_peers,
    wait_for,
)
from sart.testing.controlplane import find_binaries

DRAINED = "sart-worker"
SPINE = "spine0"
AGENTS_UA = "OpenAPI-Generator"


@attrs.frozen(kw_only=True)
class Report:
    first_route: list[float]  # seconds from create to the first path on spine0
    all_routes: list[float]  # ... to every node's path
    drained: list[float]  # seconds from the eviction to the node's next hop gone
    idle: float  # seconds watched
    agent_cpu: dict[str, float]  # CPU seconds per node's agent over the idle window
    requests: dict[tuple[str, str, str], int]  # (component, verb, resource) -> count
    new_connections: dict[str, int]  # per node: connections its agent opened while idle


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _ready(lab: ClusterLab) -> tuple[str, str]:
    await lab.apply(yaml.safe_load_all(ORIGINAL_SAMPLES))
    await lab.apply(spine1_peers(lab.nodes))
    await run_deployments(lab, PLACEMENT)
    cluster_ip = await service_address(lab, "app-svc-cluster")
    local_ip = await service_address(lab, "app-svc-local")
    spine = lab.spines[SPINE]
    want = {lab.nodes[n].links[SPINE].b.ipv4 for n in PLACEMENT["app-local"]}
    await wait_for(lambda: spine.nexthops(f"{local_ip}/32") == want, timeout=90)
    await wait_for(lambda: len(spine.nexthops(f"{cluster_ip}/32")) == len(lab.nodes))
    return cluster_ip, local_ip


async def _services(lab: ClusterLab, count: int) -> tuple[list[float], list[float]]:
    core = CoreV1Api(lab.api)
    spine = lab.spines[SPINE]
    first, full = [], []
    for number in range(count):
        body: Any = {"metadata": {"name": f"bench-{number}"},
                     "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Cluster",
                              "selector": {"app": "app-cluster"},
                              "ports": [{"port": 80, "targetPort": 80}]}}  # fmt: skip
        began = time.monotonic()
        await core.create_namespaced_service("test", body)
        address = await service_address(lab, f"bench-{number}")
        prefix = f"{address}/32"
        await wait_for(lambda p=prefix: spine.nexthops(p), interval=0.005)
        first.append(time.monotonic() - began)
        await wait_for(lambda p=prefix: len(spine.nexthops(p)) == len(lab.nodes), interval=0.005)
        full.append(time.monotonic() - began)
    return first, full


async def _drains(lab: ClusterLab, local_ip: str, count: int) -> list[float]:
    core = CoreV1Api(lab.api)
    spine = lab.spines[SPINE]
    hop = lab.nodes[DRAINED].links[SPINE].b.ipv4
    prefix = f"{local_ip}/32"
    took = []
    for _ in range(count):
        pods = await core.list_namespaced_pod("test", label_selector="app=app-local")
        on_node = [p for p in pods.items if p.spec.node_name == DRAINED]
        await core.patch_node(DRAINED, {"spec": {"unschedulable": True}})
        began = time.monotonic()
        for pod in on_node:
            await core.delete_namespaced_pod(pod.metadata.name, "test", grace_period_seconds=0)
        await wait_for(lambda: hop not in spine.nexthops(prefix), interval=0.005)
        took.append(time.monotonic() - began)
        # back: uncordoned, the ReplicaSet's new pod runs there again, announced again
        await core.patch_node(DRAINED, {"spec": {"unschedulable": False}})

        async def pending() -> Any:
            pods = await core.list_namespaced_pod("test", label_selector="app=app-local")
            return next((p for p in pods.items if not p.spec.node_name), None)

        pod = await wait_for(pending)
        await lab.schedule("test", pod.metadata.name, DRAINED, f"10.244.9.{len(took)}")
        await wait_for(lambda: hop in spine.nexthops(prefix), timeout=60)
    return took


async def _idle(
    lab: ClusterLab, plane: LabControlPlane, seconds: float
) -> tuple[dict[str, float], dict[tuple[str, str, str], int], dict[str, int]]:
    await asyncio.sleep(5)  # let the last changes settle
    start = plane.audit_size()
    cpu = {n: lab.cpu_seconds(n, "agent") for n in lab.nodes}
    connections = {
        n: node.proxy.statistics().connections
        for n, node in lab.nodes.items()
        if node.proxy is not None
    }
    began = time.time()
    await asyncio.sleep(seconds)
    ended = time.time()
    cpu = {n: lab.cpu_seconds(n, "agent") - before for n, before in cpu.items()}
    opened = {
        n: node.proxy.statistics().connections - connections[n]
        for n, node in lab.nodes.items()
        if node.proxy is not None
    }
    counted: Counter[tuple[str, str, str]] = Counter()
    for request in plane.audit_requests(start):
        if not began <= request.received <= ended:
            continue
        if request.component in ("sart-controller", AGENTS_UA):
            who = "agents" if request.component == AGENTS_UA else request.component
            counted[(who, request.verb, request.resource)] += 1
    return cpu, dict(counted), opened


async def measure(services: int, drains: int, idle: float) -> Report:
    with LabControlPlane(find_binaries()) as plane, tempfile.TemporaryDirectory() as workdir:
        async with ClusterLab(
            plane, Path(workdir), nodes=ORIGINAL_NODES, spines=ORIGINAL_SPINES
        ) as lab:
            _, local_ip = await _ready(lab)
            first, full = await _services(lab, services)
            drained = await _drains(lab, local_ip, drains)
            cpu, requests, opened = await _idle(lab, plane, idle)
    return Report(
        first_route=first, all_routes=full, drained=drained, idle=idle, agent_cpu=cpu,
        requests=requests, new_connections=opened,
    )  # fmt: skip


def run(services: int = 50, drains: int = 5, idle: float = 60.0) -> Report:
    return asyncio.run(measure(services, drains, idle))


def print_report(report: Report) -> bool:
    """Print the numbers; True when the idle target holds (no request but the Lease's)."""
    ms = lambda values, q: percentile(values, q) * 1000  # noqa: E731
    n = len(report.first_route)
    print(f"(a) Service created -> route on {SPINE} (kernel), {n} Services one at a time:")
    print(f"    first path  p50 {ms(report.first_route, 0.5):.0f} ms"
          f"  p99 {ms(report.first_route, 0.99):.0f} ms")  # fmt: skip
    print(f"    all 3 nodes p50 {ms(report.all_routes, 0.5):.0f} ms"
          f"  p99 {ms(report.all_routes, 0.99):.0f} ms")  # fmt: skip
    drained = ", ".join(f"{t * 1000:.0f}" for t in report.drained)
    mean = statistics.mean(report.drained) * 1000
    print(f"(b) {DRAINED} drained (cordoned, its Local pod evicted) -> its next hop off "
          f"{SPINE}: {drained} ms (mean {mean:.0f} ms)")  # fmt: skip
    cpu = ", ".join(f"{n} {s:.2f} s" for n, s in report.agent_cpu.items())
    print(f"(c) idle {report.idle:.0f} s: agent CPU {cpu}")
    others = {k: v for k, v in report.requests.items() if k[2] != "leases"}
    lease = sum(v for k, v in report.requests.items() if k[2] == "leases")
    print(
        f"    apiserver requests (audit log): leader Lease {lease}, others {sum(others.values())}"
    )
    for (who, verb, resource), count in sorted(others.items()):
        print(f"      {who} {verb} {resource}: {count}")
    print(f"    new apiserver connections per agent: {report.new_connections}")
    holds = not others and not any(report.new_connections.values())
    print(f"    target (nothing but the leader Lease): {'holds' if holds else 'MISSED'}")
    return holds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=50)
    parser.add_argument("--drains", type=int, default=5)
    parser.add_argument("--idle", type=float, default=60.0)
    args = parser.parse_args(argv)
    print_report(run(args.services, args.drains, args.idle))
    return 0


if __name__ == "__main__":
    sys.exit(main())
