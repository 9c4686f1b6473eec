"""BGP attributes and aggregation from Kubernetes to real routers: an AddressPool's
bgpAttributes with a Service's annotations over them reach an eBGP FRR router (communities,
large communities, MED) and an iBGP FRR router (LOCAL_PREF too: it is sent to iBGP peers only,
RFC 4271 5.1.5); an aggregating pool's Services reach the router as their covering prefix, not
as /32s, and deleting them withdraws it.

Real parts only: the Go-built apiserver, `sartd bgp` in the node's network namespace, the
controller and the node agent, FRR from Debian."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio.client import CoreV1Api, CustomObjectsApi

from sart.k8s.models import GROUP, VERSION
from sart.k8s.runtime.agent import NodeAgent
from sart.k8s.runtime.controller import LoadBalancerController
from sart.testing.controlplane import create_node, unique_name
from sart.testing.crds import apply_crds
from sart.testing.peers import BgpConfig, Frr, Lab, neighbor
from waiting import until

pytestmark = [pytest.mark.k8s, pytest.mark.e2e, pytest.mark.asyncio]
ROUTER_AS, NODE_AS = 65000, 65001


async def eventually(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    return await until(check, timeout, 0.1)


def _object(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": kind,
        "metadata": {"name": name},
        "spec": spec,
    }


def _path(router: Frr, prefix: str) -> dict[str, Any] | None:
    """The router's best path to `prefix` as `show bgp ... json` shows it, None if none."""
    data = router.vtysh_json(f"show bgp ipv4 unicast {prefix} json")
    if data.get("prefix") != prefix:
        return None
    paths: list[dict[str, Any]] = data.get("paths", [])
    return next((p for p in paths if p.get("bestpath", {}).get("overall")), None)


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
        ebgp_ns, ibgp_ns, node_ns = (
            lab.namespace("ebgp"),
            lab.namespace("ibgp"),
            lab.namespace("node"),
        )
        outer, inner = lab.link(ebgp_ns, node_ns), lab.link(ibgp_ns, node_ns)
        ebgp = lab.start(
            Frr(
                ebgp_ns,
                BgpConfig(
                    router_id=outer.a.ipv4,
                    local_as=ROUTER_AS,
                    neighbors=(neighbor(outer.b.ipv4, NODE_AS),),
                ),
            )
        )
        ibgp = lab.start(
            Frr(
                ibgp_ns,
                BgpConfig(
                    router_id=inner.a.ipv4,
                    local_as=NODE_AS,
                    neighbors=(neighbor(inner.b.ipv4, NODE_AS),),
                ),
            )
        )
        sartd = node_ns.popen(
            [sys.executable, "-m", "sart.cli.sartd", "bgp", "--as", str(NODE_AS),
             "--router-id", outer.b.ipv4, "--api-address", f"unix:{socket_path}",
             "--metrics-address", ""],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        await create_node(k8s, node, addresses=[outer.b.ipv4])
        objects = [
            ("nodebgps", _object("NodeBGP", node, {"asn": NODE_AS, "routerId": outer.b.ipv4,
                                                   "speaker": speaker})),
            ("bgppeers", _object("BGPPeer", f"{node}-ebgp", {
                "asn": ROUTER_AS, "addr": outer.a.ipv4, "nodeBGPRef": node, "speaker": speaker})),
            ("bgppeers", _object("BGPPeer", f"{node}-ibgp", {
                "asn": NODE_AS, "addr": inner.a.ipv4, "nodeBGPRef": node, "speaker": speaker})),
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
            await asyncio.to_thread(ebgp.wait_established, outer.b.ipv4, timeout=30)
            await asyncio.to_thread(ibgp.wait_established, inner.b.ipv4, timeout=30)

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

            # The pool's attributes with the Service's over them: communities joined, its MED.
            best = await eventually(lambda: _path(ebgp, "10.181.0.1/32"))
            assert best["community"]["string"] == "65001:100 65001:200"
            assert best["largeCommunity"]["string"] == "65001:1:1"
            assert best["metric"] == 30
            assert best.get("locPrf") != 250  # LOCAL_PREF never leaves the AS (eBGP)
            inside = await eventually(lambda: _path(ibgp, "10.181.0.1/32"))
            assert inside["locPrf"] == 250 and inside["metric"] == 30
            assert inside["community"]["string"] == "65001:100 65001:200"

            # The aggregating pool: one /28 for both Services, no /32.
            hops = await asyncio.to_thread(ebgp.wait_route, "10.182.0.0/28", timeout=30)
            assert hops == [outer.b.ipv4]
            routes = await asyncio.to_thread(ebgp.routes)
            assert not [p for p in routes if p.startswith("10.182.") and p != "10.182.0.0/28"]

            # A change of the annotation reaches the router (the path is added again).
            await core.patch_namespaced_service(
                "web", namespace, {"metadata": {"annotations": {"sart.terassyi.net/bgp-med": "5"}}}
            )
            await eventually(lambda: (_path(ebgp, "10.181.0.1/32") or {}).get("metric") == 5)

            for name in ("a", "b", "web"):
                await core.delete_namespaced_service(name, namespace)
            await asyncio.to_thread(ebgp.wait_no_route, "10.182.0.0/28", timeout=30)
            await asyncio.to_thread(ebgp.wait_no_route, "10.181.0.1/32", timeout=30)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            sartd.terminate()
            sartd.wait(15)
            for plural, name in reversed(made):
                await custom.delete_cluster_custom_object(GROUP, VERSION, plural, name)
            await core.delete_node(node)
