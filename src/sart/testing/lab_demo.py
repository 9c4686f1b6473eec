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
import contextlib
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
from sart.testing.netns import Namespace, listening_socket
from sart.testing.peers import BgpConfig, Frr, Lab, neighbor
from sart.testing.proxy import TcpProxy, proxied_kubeconfig

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


SPEAKER_API = "127.0.0.1:5000"  # the original sart's default, as in a real cluster
APISERVER_PORT = 6443  # where a node's agent finds the apiserver on its own loopback


def start_node(
    namespace: Namespace, address: str, kubeconfig: Path, name: str
) -> list[subprocess.Popen[bytes]]:
    """`sartd bgp` and `sartd agent` inside the node's network namespace, as the DaemonSet
    runs them on a host-network node: the speaker's API on the node's 127.0.0.1:5000, the
    apiserver on the node's 127.0.0.1:6443 (a proxy out to the lab's control plane)."""
    python = sys.executable
    bgp = namespace.popen(
        [python, "-m", "sart.cli.sartd", "bgp", "--as", str(NODE_AS), "--router-id", address,
         "--api-address", SPEAKER_API, "--metrics-address", ""],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    agent = namespace.popen(
        [python, "-m", "sart.cli.sartd", "agent", "--kubeconfig", str(kubeconfig), "--node", name,
         "--level", "warning"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return [bgp, agent]


async def demo(plane: ControlPlane, workdir: Path) -> None:
    processes: list[subprocess.Popen[bytes]] = []
    try:
        with Lab("demo") as lab, contextlib.ExitStack() as proxies:
            await _demo(plane, workdir, lab, proxies, processes)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(15)


async def _demo(
    plane: ControlPlane,
    workdir: Path,
    lab: Lab,
    proxies: contextlib.ExitStack,
    processes: list[subprocess.Popen[bytes]],
) -> None:
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
                     "speaker": {"path": SPEAKER_API, "multipath": True},
                     "peers": peers_config}})  # fmt: skip
        for name, node_ns, link in links:
            labels = {"bgp": "lab", "sart.terassyi.net/asn": str(NODE_AS)}
            await create_node(api, name, addresses=[link.b.ipv4], labels=labels)
            listener = listening_socket(node_ns, "127.0.0.1", APISERVER_PORT)
            proxy = proxies.enter_context(TcpProxy.from_url(plane.server, sock=listener))
            kubeconfig = proxied_kubeconfig(plane.kubeconfig, proxy, workdir / name)
            processes += start_node(node_ns, link.b.ipv4, kubeconfig, name)
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

        async def peers_established() -> list[str] | None:
            made = await custom.list_cluster_custom_object(GROUP, VERSION, "bgppeers")
            rows = []
            for peer in made["items"]:
                history = (peer.get("status") or {}).get("conditions") or [{}]
                state = history[-1].get("status", "")
                rows.append(
                    f"  {peer['metadata']['name']:<32} {peer['spec']['asn']:<6} "
                    f"{peer['spec']['addr']:<12} {peer['spec']['nodeBGPRef']:<8} {state}"
                )
                if state != "Established":
                    return None
            return rows or None

        rows = await until(peers_established)
        say("both nodes' speakers are up with the router; the BGPPeers the controller made,"
            " with the state their agents report (kubectl get bgppeers):\n"
            + f"  {'NAME':<32} {'ASN':<6} {'ADDRESS':<12} {'NODEBGP':<8} STATUS\n"
            + "\n".join(rows))  # fmt: skip
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
        name, node_ns, _ = links[0]
        fetch = (
            "import urllib.request; print(urllib.request.urlopen("
            "'http://127.0.0.1:9471/metrics').read().decode())"
        )
        exposed = node_ns.run([sys.executable, "-c", fetch]).stdout
        states = [
            line
            for line in exposed.splitlines()
            if line.startswith("sart_agent_bgp_peer_status") and line.endswith(" 1.0")
        ]
        say(f"{name}'s agent metrics (its node's 127.0.0.1:9471):\n  " + "\n  ".join(states))

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


def main() -> None:
    say("starting the control plane (etcd, kube-apiserver, kube-controller-manager)")
    with ControlPlane(find_binaries()) as plane, tempfile.TemporaryDirectory() as workdir:
        print(f"ready; kubeconfig {plane.kubeconfig}")
        asyncio.run(demo(plane, Path(workdir)))
    say("done: everything the demo made is gone")


if __name__ == "__main__":
    main()
