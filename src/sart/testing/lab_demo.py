"""The local lab demo (`scripts/demo`): bare-metal Kubernetes made routable, on one machine.

A real control plane (etcd, kube-apiserver, kube-controller-manager built from Go modules), two
"nodes" as network namespaces each running `sartd bgp` and `sartd agent`, a top-of-rack FRR
router in a third namespace peering with both, and `sart-controller`. The lab is configured as
a user would configure a cluster: Nodes labelled with their AS number, a BGPPeerTemplate for
the router and a ClusterBGP (the original sart's own format); the controller makes each node's
NodeBGP and BGPPeer from them. The demo then creates an AddressPool and a LoadBalancer Service,
shows the address in the Service's status, the route FRR learned from both nodes (ECMP) and
the kernel route, and deletes the Service and shows the route gone. Then pods: an AddressPool
of type pod, one pod on each node (a network namespace given its interface by the real
`sart-cni`, as a kubelet would call it), each node's block announced to the router, the other
node's block installed in each node's kernel by `sartd fib`, and the two pods pinging each
other across the router. Everything is removed at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from pathlib import Path
from typing import Any

from kubernetes_asyncio.client import CoreV1Api, CustomObjectsApi

from sart.k8s.models import GROUP, VERSION
from sart.testing.controlplane import ControlPlane, create_namespace, create_node, find_binaries
from sart.testing.crds import apply_crds
from sart.testing.netns import Namespace, listening_socket
from sart.testing.peers import BgpConfig, Frr, Lab, neighbor
from sart.testing.proxy import TcpProxy, proxied_kubeconfig

ROUTER_AS = 65000
NODES = {"node-a": 65001, "node-b": 65002}  # an AS per node: each takes the other's blocks


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


async def until(check: Callable[[], Awaitable[Any]], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := await check()):
        if time.monotonic() > deadline:
            raise TimeoutError("the lab did not get there in time")
        await asyncio.sleep(0.1)
    return result


POD_POOL = "10.1.0.0/24"
SPEAKER_API = "127.0.0.1:5000"  # the original sart's default, as in a real cluster
APISERVER_PORT = 6443  # where a node's agent finds the apiserver on its own loopback


DAEMONS = ("bgp", "agent", "fib")


def start_node(
    namespace: Namespace,
    address: str,
    asn: int,
    kubeconfig: Path,
    name: str,
    cni_socket: Path,
    *,
    only: Collection[str] = DAEMONS,
    logs: Path | None = None,
    agent_args: Sequence[str] = (),
    bgp_args: Sequence[str] = (),
) -> list[subprocess.Popen[bytes]]:
    """`sartd bgp`, `sartd agent` (with its CNI side) and `sartd fib` inside the node's network
    namespace, as the DaemonSet runs them on a host-network node: the speaker's API on the
    node's 127.0.0.1:5000, the apiserver on the node's 127.0.0.1:6443 (a proxy out to the
    lab's control plane), sart-cni's socket in the lab's directory. `only` starts some of
    them (in that order; a restart of one); with `logs` (a directory) each one's output is
    appended to `<name>-<daemon>.log` there instead of being dropped or inherited;
    `agent_args` and `bgp_args` are added to the agent's and the speaker's command lines."""
    python = sys.executable
    if set(only) == set(DAEMONS):
        namespace.enable_forwarding()  # pods leave the node
    argv = {
        "bgp": [python, "-m", "sart.cli.sartd", "bgp", "--as", str(asn), "--router-id", address,
                "--api-address", SPEAKER_API, "--metrics-address", "", *bgp_args],
        "agent": [python, "-m", "sart.cli.sartd", "agent", "--kubeconfig", str(kubeconfig),
                  "--node", name, "--cni-socket", str(cni_socket), "--level", "warning",
                  *agent_args],
        "fib": [python, "-m", "sart.cli.sartd", "fib", "--endpoint", SPEAKER_API, "--level",
                "warning"],
    }  # fmt: skip
    quiet: dict[str, tuple[Any, Any]] = {
        "bgp": (subprocess.DEVNULL, subprocess.DEVNULL),
        "agent": (subprocess.DEVNULL, None),
        "fib": (subprocess.DEVNULL, None),
    }
    started = []
    for daemon in DAEMONS:
        if daemon not in only:
            continue
        if logs is None:
            stdout, stderr = quiet[daemon]
            started.append(namespace.popen(argv[daemon], stdout=stdout, stderr=stderr))
            continue
        with (logs / f"{name}-{daemon}.log").open("ab") as log:
            started.append(namespace.popen(argv[daemon], stdout=log, stderr=subprocess.STDOUT))
    return started


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
    router_ns.enable_forwarding()  # the pods' packets cross it
    peers, links = [], []
    for name, asn in NODES.items():
        node_ns = lab.namespace(name)
        link = lab.link(router_ns, node_ns)
        links.append((name, node_ns, link))
        peers.append(neighbor(link.b.ipv4, asn))
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
            labels = {"bgp": "lab", "sart.terassyi.net/asn": str(NODES[name])}
            await create_node(api, name, addresses=[link.b.ipv4], labels=labels)
            listener = listening_socket(node_ns, "127.0.0.1", APISERVER_PORT)
            proxy = proxies.enter_context(TcpProxy.from_url(plane.server, sock=listener))
            kubeconfig = proxied_kubeconfig(plane.kubeconfig, proxy, workdir / name)
            processes += start_node(
                node_ns, link.b.ipv4, NODES[name], kubeconfig, name, workdir / f"{name}.sock"
            )
        say("configured through a ClusterBGP: nodes labelled bgp=lab and"
            " sart.terassyi.net/asn=<the node's AS>, a BGPPeerTemplate for the router")  # fmt: skip
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
        await _pods(api, lab, router, links, workdir)


async def _pods(
    api: Any, lab: Lab, router: Frr, links: list[tuple[str, Namespace, Any]], workdir: Path
) -> None:
    """One pod per node through sart-cni, and a ping from one to the other."""
    custom = CustomObjectsApi(api)
    pool = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "AddressPool",
            "metadata": {"name": "default-pod-pool"},
            "spec": {"cidr": POD_POOL, "type": "pod", "blockSize": 29,
                     "autoAssign": True}}  # fmt: skip
    await custom.create_cluster_custom_object(GROUP, VERSION, "addresspools", pool)
    say(f"AddressPool default-pod-pool ({POD_POOL}, type pod, blocks of /29)")
    pods = []
    for name, _, _ in links:
        pod = f"pod-{name}"
        container = {"name": "app", "image": "app:0"}
        body: Any = {"metadata": {"name": pod},
                     "spec": {"nodeName": name, "containers": [container]}}  # fmt: skip
        await CoreV1Api(api).create_namespaced_pod("demo", body)
        sandbox = lab.namespace(pod)
        started = time.monotonic()
        result = await cni_add(workdir / f"{name}.sock", f"{pod}-sandbox", sandbox, ("demo", pod))
        address = result["ips"][0]["address"].split("/")[0]
        pods.append((name, sandbox, address))
        took = (time.monotonic() - started) * 1000
        say(f"sart-cni ADD gave demo/{pod} on {name} {address} in {took:.0f} ms"
            " (its node asked for a block first)")  # fmt: skip
    blocks = await custom.list_cluster_custom_object(GROUP, VERSION, "addressblocks")
    rows = [f"  {b['metadata']['name']:<40} {b['spec']['cidr']:<14} {b['spec']['nodeRef']}"
            for b in blocks["items"]]  # fmt: skip
    say("the AddressBlocks the controller carved for the nodes (kubectl get addressblocks):\n"
        + "\n".join(rows))  # fmt: skip
    for block in blocks["items"]:
        await asyncio.to_thread(router.wait_route, block["spec"]["cidr"], timeout=60)
    for (name, node_ns, _), (other, _, address) in zip(links, reversed(pods), strict=True):
        route = await until(functools.partial(_kernel_route, node_ns, address))
        say(f"{name}'s kernel route to {other}'s pod block, installed by sartd fib:\n  {route}")
    (name_a, sandbox_a, _), (name_b, _, address_b) = pods
    ping = await until(lambda: _ping(sandbox_a, address_b))
    say(f"the pod on {name_a} pings the pod on {name_b} ({address_b}) across the router:\n"
        + ping)  # fmt: skip


async def _kernel_route(namespace: Namespace, address: str) -> str | None:
    shown = namespace.run(["ip", "route", "show", "match", address, "proto", "bgp"]).stdout
    return shown.strip() or None


async def _ping(sandbox: Namespace, address: str) -> str | None:
    done = sandbox.run(["ping", "-c", "3", "-i", "0.2", "-W", "1", address], check=False)
    return done.stdout.strip().splitlines()[-2] if done.returncode == 0 else None


async def cni_add(
    socket: Path, container: str, sandbox: Namespace, pod: tuple[str, str]
) -> dict[str, Any]:
    """The real sart-cni's ADD, as a container runtime calls it."""
    config = {"cniVersion": "1.0.0", "name": "sart", "type": "sart-cni", "socket": str(socket)}
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": container, "CNI_IFNAME": "eth0",
           "CNI_NETNS": f"/run/netns/{sandbox.name}", "CNI_PATH": "/opt/cni/bin",
           "CNI_ARGS": f"K8S_POD_NAMESPACE={pod[0]};K8S_POD_NAME={pod[1]}"}  # fmt: skip
    plugin = await asyncio.create_subprocess_exec(
        Path(sys.executable).parent / "sart-cni", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    out, _ = await plugin.communicate(json.dumps(config).encode())
    result: dict[str, Any] = json.loads(out)
    if plugin.returncode != 0:
        raise RuntimeError(f"sart-cni ADD failed: {result}")
    return result


def main() -> None:
    say("starting the control plane (etcd, kube-apiserver, kube-controller-manager)")
    with ControlPlane(find_binaries()) as plane, tempfile.TemporaryDirectory() as workdir:
        print(f"ready; kubeconfig {plane.kubeconfig}")
        asyncio.run(demo(plane, Path(workdir)))
    say("done: everything the demo made is gone")


if __name__ == "__main__":
    main()
