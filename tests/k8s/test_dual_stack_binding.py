"""A dual-stack LoadBalancer Service, from the controller through each node's agent and speaker
to two routers over IPv4 and IPv6 sessions, with the agents binding the addresses
(`sartd agent --bind-addresses`), on sart.testing.cluster_lab: two nodes, two spines (FRR with
zebra, BIRD), a client behind the FRR spine.

- The Service gets an IPv4 and an IPv6 address (one pool each). Each node's agent configures
  an IPv4 and an IPv6 session to each spine (the BGPPeers a ClusterBGP makes); the IPv6 route
  reaches both spines over the IPv6 sessions with each node's IPv6 address on that session
  as next hop (ECMP over the two nodes: FRR's kernel route, BIRD's table), and the IPv4 one
  over the IPv4 sessions likewise.
- The agents put both addresses on their node's `lo` (IFA_PROTO 115, IPv4 labelled lo:sart);
  the test never does: a host-network backend on each node (a listener on the wildcard
  address) answers the client over IPv4 and IPv6 through the LoadBalancer addresses, from
  both nodes.
- An agent restarted removes the stale addresses it finds marked as its own and keeps the
  Service's; an address that is not its own is left alone.
- The Service deleted: the addresses leave every node's lo, the routes leave the spines.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from kubernetes_asyncio.client import CoreV1Api
from netaddr import IPNetwork
from pyroute2 import AsyncIPRoute

from sart.k8s.models import GROUP, VERSION
from sart.k8s.reconcile.binding import ADDRESS_PROTOCOL, InterfaceAddress
from sart.k8s.runtime.binding import AddressBinding
from sart.testing.cluster_lab import (
    ClusterLab,
    LabControlPlane,
    NodeSpec,
    SpineSpec,
    TcpProbe,
    wait_for,
)
from sart.testing.controlplane import find_binaries
from sart.testing.lab_demo import SPEAKER_API

pytestmark = [pytest.mark.k8s, pytest.mark.e2e, pytest.mark.asyncio]

NODES = (NodeSpec(name="node-a"), NodeSpec(name="node-b"))
SPINES = (
    SpineSpec(name="spine0", address="9.9.9.9", address6="fd00:9::9", asn=65000, kind="frr"),
    SpineSpec(name="spine1", address="7.7.7.7", address6="fd00:7::7", asn=65000, kind="bird"),
)
ASN = 65000


def cluster(namespace: str = "default") -> list[dict[str, Any]]:
    api = f"{GROUP}/{VERSION}"
    peers = [
        {"peerConfig": {"asn": ASN, "addr": address}}
        for spine in SPINES
        for address in (spine.address, spine.address6)
    ]
    return [
        {
            "apiVersion": api,
            "kind": "ClusterBGP",
            "metadata": {"name": "dual"},
            "spec": {
                "asnSelector": {"from": "asn", "asn": ASN},
                "routerIdSelector": {"from": "internalAddress"},
                "speaker": {"path": SPEAKER_API, "multipath": True},
                "peers": peers,
            },
        },
        *(
            {
                "apiVersion": api,
                "kind": "AddressPool",
                "metadata": {"name": name},
                "spec": {
                    "cidr": cidr,
                    "type": "service",
                    "allocType": "bit",
                    "blockSize": size,
                    "autoAssign": False,
                },
            }
            for name, cidr, size in (("lb4", "10.0.1.0/24", 24), ("lb6", "fd00:100::/120", 120))
        ),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "web",
                "namespace": namespace,
                "annotations": {"sart.terassyi.net/addresspool": "lb4,lb6"},
            },
            "spec": {
                "type": "LoadBalancer",
                "externalTrafficPolicy": "Cluster",
                "ports": [{"name": "http", "port": 80, "targetPort": 80}],
            },
        },
    ]


@pytest.fixture(scope="module")
def plane() -> Iterator[LabControlPlane]:
    with LabControlPlane(find_binaries()) as running:
        yield running


@pytest_asyncio.fixture
async def lab(plane: LabControlPlane, tmp_path: Path) -> AsyncIterator[ClusterLab]:
    async with ClusterLab(
        plane, tmp_path, nodes=NODES, spines=SPINES, agent_args=("--bind-addresses",)
    ) as built:
        yield built


async def on_lo(lab: ClusterLab, node: str) -> list[InterfaceAddress]:
    binding = AddressBinding("lo", netns=lab.nodes[node].namespace.name)
    try:
        return await binding.present()
    finally:
        binding.close()


async def ours_on_lo(lab: ClusterLab, node: str) -> set[str]:
    return {str(a.address.ip) for a in await on_lo(lab, node) if a.protocol == ADDRESS_PROTOCOL}


async def add_address(lab: ClusterLab, node: str, cidr: str, *, ours: bool) -> None:
    """An address on the node's lo, marked as the agent marks its own or not."""
    network = IPNetwork(cidr)
    ipr = AsyncIPRoute(netns=lab.nodes[node].namespace.name)
    await ipr.setup_endpoint()
    try:
        options: dict[str, Any] = {"proto": ADDRESS_PROTOCOL} if ours else {}
        if ours and network.version == 4:
            options["label"] = "lo:sart"
        family = socket.AF_INET6 if network.version == 6 else socket.AF_INET
        await ipr.addr("add", index=1, address=str(network.ip), prefixlen=network.prefixlen,
                       family=family, **options)  # fmt: skip
    finally:
        ipr.close()


async def ingress(lab: ClusterLab) -> tuple[str, str]:
    core = CoreV1Api(lab.api)

    async def both() -> tuple[str, str] | None:
        got = await core.read_namespaced_service("web", "default")
        found = [i.ip for i in (got.status.load_balancer.ingress or [])]
        v4 = [a for a in found if ":" not in a]
        v6 = [a for a in found if ":" in a]
        return (v4[0], v6[0]) if v4 and v6 else None

    result: tuple[str, str] = await wait_for(both)
    return result


async def test_dual_stack_service_reaches_both_routers_and_its_addresses_are_bound(
    lab: ClusterLab, capsys: pytest.CaptureFixture[str]
) -> None:
    await lab.apply(cluster())
    v4, v6 = await ingress(lab)
    assert v4.startswith("10.0.1.") and v6.startswith("fd00:100::")

    # Both families on both spines, ECMP over both nodes, each over its own family's session.
    for name, spine in lab.spines.items():
        want4 = {node.links[name].b.ipv4 for node in lab.nodes.values()}
        want6 = {node.links[name].b.ipv6 for node in lab.nodes.values()}
        await wait_for(lambda s=spine, w=want4: s.nexthops(f"{v4}/32") == w, timeout=90)
        await wait_for(lambda s=spine, w=want6: s.nexthops(f"{v6}/128") == w, timeout=90)

    # The agents bound both addresses on lo, marked as theirs.
    for node in lab.nodes:
        await wait_for(lambda n=node: _equal(ours_on_lo(lab, n), {v4, v6}))
        labels = {str(a.address.ip): a.label for a in await on_lo(lab, node)}
        assert labels[v4] == "lo:sart"

    # A host-network backend on each node answers through the LoadBalancer addresses.
    lab.serve(80)
    assert lab.client is not None
    probes = [TcpProbe(lab.client, address) for address in (v4, v6)]
    for probe in probes:
        probe.start()
    try:
        await asyncio.sleep(2)
    finally:
        for probe in probes:
            probe.stop()
    for probe in probes:
        answered = {s.answer for s in probe.samples if s.ok}
        assert answered == set(lab.nodes), (probe.address, answered)
        assert all(s.ok for s in probe.samples), probe.address

    # A restarted agent removes stale addresses marked as its own, and only those.
    lab.stop_daemon("node-a", "agent")
    await add_address(lab, "node-a", "10.0.1.200/32", ours=True)
    await add_address(lab, "node-a", "fd00:100::c8/128", ours=True)
    await add_address(lab, "node-a", "10.0.1.201/32", ours=False)
    lab.start_daemon("node-a", "agent")
    await wait_for(lambda: _equal(ours_on_lo(lab, "node-a"), {v4, v6}), timeout=60)
    assert "10.0.1.201" in {str(a.address.ip) for a in await on_lo(lab, "node-a")}

    # The Service deleted: the addresses leave every node, the routes every spine.
    await CoreV1Api(lab.api).delete_namespaced_service("web", "default")
    for node in lab.nodes:
        await wait_for(lambda n=node: _equal(ours_on_lo(lab, n), set()))
    for spine in lab.spines.values():
        await wait_for(lambda s=spine: not s.nexthops(f"{v4}/32") and not s.nexthops(f"{v6}/128"))
    with capsys.disabled():
        print(f"\ndual stack, 2 nodes / FRR + BIRD spines: {v4} and {v6} routed and bound")


async def _equal(found: Any, want: set[str]) -> bool:
    return bool(await found == want)
