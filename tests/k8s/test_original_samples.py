"""The original sart's sample manifests (manifests/sample), applied unchanged to a routed lab of
three nodes and two spines (sart.testing.cluster_lab): the BGPPeers come up Established, each
LoadBalancer address is on both spines with ECMP over the nodes its policy says (Cluster: every
node; Local: the nodes with a ready endpoint), and a client behind the spines keeps reaching
the Cluster Service's address (a TCP probe every 50 ms, a host-network backend on each node)
while one node's `sartd agent`, its `sartd bgp` and `sart-controller` restart. The agent and
controller restarts must not withdraw anything; the speaker's restart is measured (the gap in
the probes, how long the node's next hop is off each spine) and reported, not asserted beyond a
bound: the restarting speaker has no graceful restart yet."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml
from kubernetes_asyncio.client import CustomObjectsApi

from sart.k8s.models import GROUP, VERSION
from sart.testing.cluster_lab import (
    ORIGINAL_NODES,
    ORIGINAL_SAMPLES,
    ORIGINAL_SPINES,
    PLACEMENT,
    ClusterLab,
    LabControlPlane,
    RouteWatch,
    TcpProbe,
    longest_gap,
    run_deployments,
    service_address,
    spine1_peers,
    wait_for,
)
from sart.testing.controlplane import find_binaries

pytestmark = [pytest.mark.k8s, pytest.mark.e2e, pytest.mark.asyncio]

RESTARTED = "sart-worker"
SETTLE = 3.0  # seconds watched after a restarted daemon is back


@pytest.fixture(scope="module")
def plane() -> Iterator[LabControlPlane]:
    with LabControlPlane(find_binaries()) as running:
        yield running


@pytest_asyncio.fixture
async def lab(plane: LabControlPlane, tmp_path: Path) -> AsyncIterator[ClusterLab]:
    async with ClusterLab(plane, tmp_path, nodes=ORIGINAL_NODES, spines=ORIGINAL_SPINES) as built:
        yield built


async def established(lab: ClusterLab) -> list[str] | None:
    made = await CustomObjectsApi(lab.api).list_cluster_custom_object(GROUP, VERSION, "bgppeers")
    rows = []
    for peer in made["items"]:
        history = (peer.get("status") or {}).get("conditions") or [{}]
        state = history[-1].get("status", "")
        if state != "Established":
            return None
        rows.append(f"{peer['metadata']['name']} {peer['spec']['nodeBGPRef']} {state}")
    return rows if len(rows) == 6 else None


def hops(lab: ClusterLab, spine: str, nodes: tuple[str, ...]) -> set[str]:
    return {lab.nodes[n].links[spine].b.ipv4 for n in nodes}


async def test_the_original_samples_route_through_two_spines_across_restarts(
    lab: ClusterLab, capsys: pytest.CaptureFixture[str]
) -> None:
    await lab.apply(yaml.safe_load_all(ORIGINAL_SAMPLES))
    await lab.apply(spine1_peers(lab.nodes))
    await run_deployments(lab, PLACEMENT)
    rows = await wait_for(lambda: established(lab), timeout=90)
    # 2 workers x (template + spine1) + the control plane x (bgp_peer.yaml + spine1)
    assert sorted(rows) == sorted(rows) and len(rows) == 6
    cluster_ip = await service_address(lab, "app-svc-cluster")
    local_ip = await service_address(lab, "app-svc-local")
    assert cluster_ip.startswith("10.0.1.") and local_ip.startswith("10.0.1.")
    every = tuple(lab.nodes)
    local = PLACEMENT["app-local"]
    for name, spine in lab.spines.items():
        for address, nodes in ((cluster_ip, every), (local_ip, local)):
            want = hops(lab, name, nodes)
            await wait_for(lambda s=spine, a=address, w=want: s.nexthops(f"{a}/32") == w)

    lab.answer(cluster_ip)
    assert lab.client is not None
    probe = TcpProbe(lab.client, cluster_ip)
    watch = RouteWatch(lab.spines.values(), f"{cluster_ip}/32")
    probe.start()
    watch.start()
    report: dict[str, dict[str, Any]] = {}
    try:
        await asyncio.sleep(2)
        answered = {s.answer for s in probe.samples if s.ok}
        assert answered == set(every), answered  # ECMP over the three nodes, per flow
        for what, restart in (
            ("agent", lambda: lab.restart_agent(RESTARTED)),
            ("speaker", lambda: lab.restart_speaker(RESTARTED)),
            ("controller", lab.restart_controller),
        ):
            began = time.monotonic()
            await asyncio.to_thread(restart)
            # back: the node's next hop on both spines again, and the peers Established
            for name, spine in lab.spines.items():
                hop = lab.nodes[RESTARTED].links[name].b.ipv4
                await wait_for(lambda s=spine, h=hop: h in s.nexthops(f"{cluster_ip}/32"))
            await wait_for(lambda: established(lab), timeout=60)
            await asyncio.sleep(SETTLE)
            ended = time.monotonic()
            gap, failed = longest_gap(probe.window(began, ended))
            off = {
                name: watch.absent(name, lab.nodes[RESTARTED].links[name].b.ipv4, began, ended)
                for name in lab.spines
            }
            report[what] = {"gap": gap, "failed": failed, "off": off, "took": ended - began}
    finally:
        probe.stop()
        watch.stop()
    with capsys.disabled():
        print(f"\noriginal samples, 3 nodes / 2 spines: {cluster_ip} (Cluster), {local_ip} (Local)")
        for what, row in report.items():
            offs = ", ".join(f"{s} {t * 1000:.0f} ms" for s, t in row["off"].items())
            print(
                f"  restart of {RESTARTED}'s {what}: probe gap {row['gap'] * 1000:.0f} ms"
                f" ({row['failed']} of every 50 ms failed), its next hop off: {offs}"
            )
    for what in ("agent", "controller"):
        assert report[what]["failed"] == 0, report
        assert all(t == 0.0 for t in report[what]["off"].values()), report
    assert report["speaker"]["gap"] < 5.0, report
