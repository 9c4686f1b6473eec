"""The local lab demo (`scripts/demo`): bare-metal Kubernetes made routable, on one machine.

A real control plane (etcd, kube-apiserver, kube-controller-manager built from Go modules), two
"nodes" as network namespaces each running `sartd bgp` and `sartd agent`, a top-of-rack FRR
router in a third namespace peering with both, and `sart-controller`. The lab is configured as
a user would configure a cluster: Nodes labelled with their AS number, a BGPPeerTemplate for
the router and a ClusterBGP (the original sart's own format); the controller makes each node's
NodeBGP and BGPPeer from them. The demo then creates an AddressPool and a LoadBalancer Service,
shows the address in the Service's status, the route FRR learned from both nodes (ECMP) and
the kernel route, and finally deletes the Service and shows the route gone. Everything is
removed at the end.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from kubernetes_asyncio.client import CoreV1Api, CustomObjectsApi

from sart.k8s.models import GROUP, VERSION
from sart.testing.controlplane import ControlPlane, create_namespace, create_node, find_binaries
from sart.testing.crds import apply_crds
from sart.testing.netns import Namespace
from sart.testing.peers import BgpConfig, Frr, Lab, neighbor

ROUTER_AS, NODE_AS = 65000, 65001
NODES = ("node-a", "node-b")


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


async def until(check: Callable[[], Awaitable[Any]], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := await check()):
        if time.monotonic() > deadline:
            raise TimeoutError("the lab did not get there in time")
        await asyncio.sleep(0.1)
    return result


def start_node(
    namespace: Namespace, address: str, socket: Path, kubeconfig: Path, name: str
) -> list[subprocess.Popen[bytes]]:
    python = sys.executable
    bgp = namespace.popen(
        [python, "-m", "sart.cli.sartd", "bgp", "--as", str(NODE_AS), "--router-id", address,
         "--api-address", f"unix:{socket}", "--metrics-address", ""],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    # The agent talks to the apiserver (on this host's loopback) and to the speaker (its unix
    # socket), so it runs outside the node's namespace, as a host-network pod would.
    agent = subprocess.Popen(
        [python, "-m", "sart.cli.sartd", "agent", "--kubeconfig", str(kubeconfig), "--node", name,
         "--endpoint", f"unix:{socket}", "--level", "warning"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return [bgp, agent]


async def demo(plane: ControlPlane, workdir: Path) -> None:
    processes: list[subprocess.Popen[bytes]] = []
    with Lab("demo") as lab:
        router_ns = lab.namespace("tor")
        peers, links = [], []
        for name in NODES:
            node_ns = lab.namespace(name)
            link = lab.link(router_ns, node_ns)
            links.append((name, node_ns, link))
            peers.append(neighbor(link.b.ipv4, NODE_AS))
        router = lab.start(
            Frr(
                router_ns,
                BgpConfig(router_id=links[0][2].a.ipv4, local_as=ROUTER_AS, neighbors=tuple(peers),
                          max_paths=4),
            )
        )  # fmt: skip
        say(f"FRR (AS {ROUTER_AS}) in {router_ns.name}, peering with "
            + ", ".join(f"{name} {link.b.ipv4}" for name, _, link in links))  # fmt: skip
        async with await plane.api_client() as api:
            await apply_crds(api)
            core, custom = CoreV1Api(api), CustomObjectsApi(api)
            # The router is the same address on every node's link (.1 of each /30 is the
            # router's side), so one template serves all nodes: each node peers with the
            # router's address on its own link, given per node by nodeBGPSelector.
            await custom.create_cluster_custom_object(GROUP, VERSION, "bgppeertemplates", {
                "apiVersion": f"{GROUP}/{VERSION}", "kind": "BGPPeerTemplate",
                "metadata": {"name": "tor"},
                "spec": {"asn": ROUTER_AS, "holdTime": 9, "groups": ["tor"]}})  # fmt: skip
            peers_config = [
                {"peerTemplateRef": "tor", "peerConfig": {"addr": link.a.ipv4},
                 "nodeBGPSelector": {"kubernetes.io/hostname": name}}
                for name, _, link in links
            ]  # fmt: skip
            await custom.create_cluster_custom_object(GROUP, VERSION, "clusterbgps", {
                "apiVersion": f"{GROUP}/{VERSION}", "kind": "ClusterBGP",
                "metadata": {"name": "lab"},
                "spec": {"nodeSelector": {"bgp": "lab"}, "asnSelector": {"from": "label"},
                         "routerIdSelector": {"from": "internalAddress"},
                         "speaker": {"path": "127.0.0.1:5000", "multipath": True},
                         "peers": peers_config}})  # fmt: skip
            for name, node_ns, link in links:
                socket = workdir / f"{name}.sock"
                labels = {"bgp": "lab", "sart.terassyi.net/asn": str(NODE_AS)}
                await create_node(api, name, addresses=[link.b.ipv4], labels=labels)
                processes += start_node(node_ns, link.b.ipv4, socket, plane.kubeconfig, name)
            say("configured through a ClusterBGP: nodes labelled bgp=lab and"
                f" sart.terassyi.net/asn={NODE_AS}, a BGPPeerTemplate for the router")  # fmt: skip
            processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "sart.cli.controller",
                        "--kubeconfig",
                        str(plane.kubeconfig),
                        "--no-leader-elect",
                        "--metrics-address",
                        "",
                        "--level",
                        "warning",
                    ],
                )
            )
            for _, _, link in links:
                await asyncio.to_thread(router.wait_established, link.b.ipv4, timeout=60)
            made = await custom.list_cluster_custom_object(GROUP, VERSION, "bgppeers")
            say("both nodes' speakers are up with the router; the BGPPeers the controller made:\n"
                + "\n".join(f"  {p['metadata']['name']}" for p in made["items"]))  # fmt: skip
            pool = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "AddressPool",
                    "metadata": {"name": "default-lb-pool"},
                    "spec": {"cidr": "203.0.113.0/24", "type": "service",
                             "autoAssign": True}}  # fmt: skip
            await custom.create_cluster_custom_object(GROUP, VERSION, "addresspools", pool)
            await create_namespace(api, "demo")
            service: Any = {"metadata": {"name": "web"},
                       "spec": {"type": "LoadBalancer", "ports": [{"port": 80}],
                                "selector": {"app": "web"}}}  # fmt: skip
            started = time.monotonic()
            await core.create_namespaced_service("demo", service)

            async def address() -> str | None:
                got = await core.read_namespaced_service("web", "demo")
                ingress = got.status.load_balancer.ingress if got.status.load_balancer else None
                return ingress[0].ip if ingress else None

            ip = await until(address)
            say(f"Service demo/web (type LoadBalancer) got {ip} in "
                f"{(time.monotonic() - started) * 1000:.0f} ms")  # fmt: skip
            hops = {link.b.ipv4 for _, _, link in links}
            await asyncio.to_thread(router.wait_route, f"{ip}/32", nexthops=hops, timeout=60)
            say(f"FRR learned {ip}/32 from both nodes "
                f"{(time.monotonic() - started):.1f} s after the Service was created")  # fmt: skip
            print(router.vtysh(f"show bgp ipv4 unicast {ip}/32"))
            kernel = router_ns.run(["ip", "route", "show", f"{ip}/32"]).stdout
            say(f"the router's kernel route (ECMP across the nodes):\n{kernel}")
            await core.delete_namespaced_service("web", "demo")
            await asyncio.to_thread(router.wait_no_route, f"{ip}/32", timeout=60)
            say(f"Service deleted: {ip}/32 withdrawn from the router, the address is free again")
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(15)


def main() -> None:
    say("starting the control plane (etcd, kube-apiserver, kube-controller-manager)")
    with ControlPlane(find_binaries()) as plane, tempfile.TemporaryDirectory() as workdir:
        print(f"ready; kubeconfig {plane.kubeconfig}")
        asyncio.run(demo(plane, Path(workdir)))
    say("done: everything the demo made is gone")


if __name__ == "__main__":
    main()
