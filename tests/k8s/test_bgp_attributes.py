"""BGP attributes and aggregation from Kubernetes to real routers: an AddressPool's
bgpAttributes with a Service's annotations over them reach eBGP routers (communities, large
communities, MED) and iBGP routers (LOCAL_PREF too: it is sent to iBGP peers only, RFC 4271
5.1.5), one of each for FRR, BIRD and GoBGP; an aggregating pool's Services reach every eBGP
router as their covering prefix, not as /32s, and deleting them withdraws it.

Real parts only: the Go-built apiserver, `sartd bgp` in the node's network namespace, the
controller and the node agent, FRR, BIRD and GoBGP from Debian."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
from kubernetes_asyncio.client import CoreV1Api, CustomObjectsApi

from sart.k8s.models import GROUP, VERSION
from sart.k8s.runtime.agent import NodeAgent
from sart.k8s.runtime.controller import LoadBalancerController
from sart.testing.controlplane import create_node, unique_name
from sart.testing.crds import apply_crds
from sart.testing.netns import Link
from sart.testing.peers import BgpConfig, Bird, Frr, GoBgp, Lab, Peer, RouteAttributes, neighbor
from waiting import until

pytestmark = [pytest.mark.k8s, pytest.mark.e2e, pytest.mark.asyncio]
ROUTER_AS, NODE_AS = 65000, 65001
ROUTERS: dict[str, type[Peer]] = {"frr": Frr, "bird": Bird, "gobgp": GoBgp}


async def eventually(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    return await until(check, timeout, 0.1)


def _object(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": kind,
        "metadata": {"name": name},
        "spec": spec,
    }


@attrs.frozen
class Router:
    """A router of the lab and the link from it (`a`) to the node (`b`)."""

    peer: Peer
    link: Link
    ibgp: bool


async def test_attributes_and_aggregates_reach_the_routers(
    k8s: Any, namespace: str, tmp_path: Path
) -> None:
    await apply_crds(k8s)
    custom, core = CustomObjectsApi(k8s), CoreV1Api(k8s)
    node = unique_name("node")
    socket_path = tmp_path / "bgp.sock"
    speaker = {"path": f"unix:{socket_path}"}
    tagged, grouped = unique_name("tagged"), unique_name("grouped")
    made: list[tuple[str, str]] = []
    with Lab("attrs") as lab:
        node_ns = lab.namespace("node")
        routers: list[Router] = []
        for kind, daemon in ROUTERS.items():
            for ibgp in (False, True):
                ns = lab.namespace(kind)
                link = lab.link(ns, node_ns)
                config = BgpConfig(
                    router_id=link.a.ipv4,
                    local_as=NODE_AS if ibgp else ROUTER_AS,
                    neighbors=(neighbor(link.b.ipv4, NODE_AS),),
                )
                routers.append(Router(lab.start(daemon(ns, config)), link, ibgp))
        ebgp = [r for r in routers if not r.ibgp]
        node_address = routers[0].link.b.ipv4
        sartd = node_ns.popen(
            [sys.executable, "-m", "sart.cli.sartd", "bgp", "--as", str(NODE_AS),
             "--router-id", node_address, "--api-address", f"unix:{socket_path}",
             "--metrics-address", ""],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        await create_node(k8s, node, addresses=[node_address])
        objects = [
            ("nodebgps", _object("NodeBGP", node, {"asn": NODE_AS, "routerId": node_address,
                                                   "speaker": speaker})),
            *(("bgppeers", _object("BGPPeer", f"{node}-{r.peer.kind}-{'i' if r.ibgp else 'e'}bgp", {
                "asn": NODE_AS if r.ibgp else ROUTER_AS, "addr": r.link.a.ipv4,
                "nodeBGPRef": node, "speaker": speaker})) for r in routers),
            ("addresspools", _object("AddressPool", tagged, {
                "cidr": "10.181.0.0/24", "type": "service",
                "bgpAttributes": {"communities": ["65001:100"], "largeCommunities": ["65001:1:1"],
                                  "localPref": 250, "med": 20}})),
            ("addresspools", _object("AddressPool", grouped, {
                "cidr": "10.182.0.0/24", "type": "service", "aggregationLength": 28})),
        ]  # fmt: skip
        for plural, body in objects:
            await custom.create_cluster_custom_object(GROUP, VERSION, plural, body)
            made.append((plural, body["metadata"]["name"]))
        tasks = [
            asyncio.create_task(LoadBalancerController(k8s).run()),
            asyncio.create_task(NodeAgent(k8s, node, f"unix:{socket_path}").run()),
        ]
        try:
            for r in routers:
                await asyncio.to_thread(r.peer.wait_established, r.link.b.ipv4, timeout=30)

            def service(name: str, annotations: dict[str, str]) -> dict[str, Any]:
                return {
                    "metadata": {"name": name, "annotations": annotations},
                    "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
                }

            await core.create_namespaced_service(
                namespace,
                service("web", {"sart.terassyi.net/addresspool": tagged,
                                "sart.terassyi.net/bgp-communities": "65001:200",
                                "sart.terassyi.net/bgp-med": "30"}),
            )  # fmt: skip
            for name in ("a", "b"):
                annotations = {"sart.terassyi.net/addresspool": grouped}
                await core.create_namespaced_service(namespace, service(name, annotations))

            # The pool's attributes with the Service's over them: communities joined, its MED;
            # LOCAL_PREF only inside the AS (BIRD gives an eBGP route 100 of its own).
            for r in routers:
                seen = await eventually(lambda r=r: r.peer.attributes("10.181.0.1/32"))
                assert (seen.communities, seen.large_communities, seen.med) == (
                    ("65001:100", "65001:200"),
                    ("65001:1:1",),
                    30,
                ), (r.peer, seen)
                assert (seen.local_pref == 250) is r.ibgp, (r.peer, seen)

            # The aggregating pool: one /28 for both Services, no /32.
            for r in ebgp:
                hops = await asyncio.to_thread(r.peer.wait_route, "10.182.0.0/28", timeout=30)
                assert hops == [r.link.b.ipv4], r.peer
                routes = await asyncio.to_thread(r.peer.routes)
                assert [p for p in routes if p.startswith("10.182.")] == ["10.182.0.0/28"], r.peer

            # A change of the annotation reaches the routers (the path is added again).
            await core.patch_namespaced_service(
                "web", namespace, {"metadata": {"annotations": {"sart.terassyi.net/bgp-med": "5"}}}
            )
            for r in ebgp:
                await eventually(
                    lambda r=r: (r.peer.attributes("10.181.0.1/32") or RouteAttributes()).med == 5
                )

            for name in ("a", "b", "web"):
                await core.delete_namespaced_service(name, namespace)
            for r in ebgp:
                await asyncio.to_thread(r.peer.wait_no_route, "10.182.0.0/28", timeout=30)
                await asyncio.to_thread(r.peer.wait_no_route, "10.181.0.1/32", timeout=30)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            sartd.terminate()
            sartd.wait(15)
            for plural, name in reversed(made):
                await custom.delete_cluster_custom_object(GROUP, VERSION, plural, name)
            await core.delete_node(node)
