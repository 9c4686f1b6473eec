"""The whole product on one node: a LoadBalancer Service gets an address from the controller,
the node agent hands it to `sartd bgp` in the node's network namespace, and a real FRR router
in the next namespace installs the route; deleting the Service withdraws it.

Real parts only: the Go-built apiserver, `sartd bgp` (a process in the node namespace, its API
on a unix socket the agent reaches from here), FRR from Debian."""

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
from sart.testing.peers import BgpConfig, Frr, Lab, neighbor, wait_kernel_nexthops
from waiting import until

pytestmark = [pytest.mark.k8s, pytest.mark.e2e, pytest.mark.asyncio]
ROUTER_AS, NODE_AS = 65000, 65001


async def eventually(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    return await until(check, timeout, 0.1)


async def test_service_address_reaches_the_router(k8s: Any, namespace: str, tmp_path: Path) -> None:
    await apply_crds(k8s)
    custom, core = CustomObjectsApi(k8s), CoreV1Api(k8s)
    node = unique_name("node")
    socket_path = tmp_path / "bgp.sock"
    with Lab("e2e") as lab:
        router_ns, node_ns = lab.namespace("router"), lab.namespace("node")
        link = lab.link(router_ns, node_ns)
        router = lab.start(
            Frr(
                router_ns,
                BgpConfig(
                    router_id=link.a.ipv4,
                    local_as=ROUTER_AS,
                    neighbors=(neighbor(link.b.ipv4, NODE_AS),),
                ),
            )
        )
        sartd = node_ns.popen(
            [sys.executable, "-m", "sart.cli.sartd", "bgp", "--as", str(NODE_AS),
             "--router-id", link.b.ipv4, "--api-address", f"unix:{socket_path}",
             "--metrics-address", ""],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        await create_node(k8s, node, addresses=[link.b.ipv4])
        nodebgp = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "NodeBGP",
            "metadata": {"name": node},
            "spec": {"asn": NODE_AS, "routerId": link.b.ipv4,
                     "speaker": {"path": f"unix:{socket_path}"}},
        }  # fmt: skip
        await custom.create_cluster_custom_object(GROUP, VERSION, "nodebgps", nodebgp)
        peer = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "BGPPeer",
            "metadata": {"name": f"{node}-router"},
            "spec": {"asn": ROUTER_AS, "addr": link.a.ipv4, "nodeBGPRef": node,
                     "speaker": {"path": f"unix:{socket_path}"}},
        }  # fmt: skip
        await custom.create_cluster_custom_object(GROUP, VERSION, "bgppeers", peer)
        pool = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "AddressPool",
            "metadata": {"name": unique_name("e2e-pool")},
            "spec": {"cidr": "10.180.0.0/24", "type": "service", "autoAssign": True},
        }
        await custom.create_cluster_custom_object(GROUP, VERSION, "addresspools", pool)
        tasks = [
            asyncio.create_task(LoadBalancerController(k8s).run()),
            asyncio.create_task(NodeAgent(k8s, node, f"unix:{socket_path}").run()),
        ]
        try:
            await asyncio.to_thread(
                router.wait_established, link.b.ipv4, timeout=30
            )  # via the agent
            service = {
                "metadata": {"name": "web"},
                "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
            }
            await core.create_namespaced_service(namespace, service)

            async def address() -> str | None:
                got = await core.read_namespaced_service("web", namespace)
                ingress = got.status.load_balancer.ingress if got.status.load_balancer else None
                return ingress[0].ip if ingress else None

            ip = await eventually(address)
            assert ip == "10.180.0.1"
            hops = await asyncio.to_thread(router.wait_route, f"{ip}/32", timeout=30)
            assert hops == [link.b.ipv4]  # announced from the node, learned by the router
            # zebra installs what bgpd learned a moment later
            kernel = await asyncio.to_thread(wait_kernel_nexthops, router_ns, f"{ip}/32")
            assert kernel == [link.b.ipv4]
            await core.delete_namespaced_service("web", namespace)
            await asyncio.to_thread(router.wait_no_route, f"{ip}/32", timeout=30)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            sartd.terminate()
            sartd.wait(15)
            await custom.delete_cluster_custom_object(
                GROUP, VERSION, "addresspools", pool["metadata"]["name"]
            )
            await custom.delete_cluster_custom_object(GROUP, VERSION, "bgppeers", f"{node}-router")
            await custom.delete_cluster_custom_object(GROUP, VERSION, "nodebgps", node)
            await core.delete_node(node)
