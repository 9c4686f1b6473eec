"""sart on two real nodes with BGP, as a user installs it: the end-to-end scenario of
tests/k8s/test_real_node.py and of ``scripts/demo --full``.

``RealCluster`` builds a real control plane (``ControlPlane(bind_address="0.0.0.0",
endpoint_routing=True)`` with the controllers a kubelet needs: the apiserver calls webhooks at
a ready endpoint of their Service, as a control plane outside the cluster network does), two
``sart.testing.node.Node``s (containerd, kubelet and kube-proxy each; node-a also runs the
cluster's kube-scheduler) with the sart image and a busybox image imported, and an FRR router
("tor", AS 65000) in a network namespace of its own with one link to each node: 10.255.<n>.1
the router's end, .2 the node's. The nodes keep their veth to the host (the apiserver, their
default route); the router announces its links, so the nodes learn each other's link addresses
(kube-proxy masquerades LoadBalancer traffic it sends to the other node's pod with its address
on that link, and the answer must find its way back), and installs up to two equal paths (ECMP;
multipath hashed per flow, as a fabric does).

``run_scenario`` then does what a user does and checks what they would see, stage by stage
(``RealCluster.stage``: a failure says which stage it reached, with the pods, sart's objects,
events and every log's tail):

1. ``kubectl kustomize`` of manifests/ with components/cni, ``kubectl apply --server-side``,
   the router as a BGPPeerTemplate and a ClusterBGP (each node's AS from its label, the
   router's address on each node's link per node: nodeBGPSelector on the kubelet's hostname
   label, as ``scripts/demo``'s lab), the Nodes labelled;
2. the sartd DaemonSet's pods Ready on both nodes (its init container installed sart-cni and
   the conflist in each node's /opt/cni/bin and /etc/cni/net.d), both Nodes Ready,
   sart-controller available; then the pod pools and service pools applied, again while the
   webhook cannot be called yet (its failurePolicy is Fail, docs/install.md), and a pool
   overlapping one of them refused by sart's webhook, called by the apiserver at a controller
   pod on its node, with its reason in kubectl's error (the pod logs the refusal);
3. both BGPPeers Established, in their status and in FRR's ``show bgp summary``;
4. a busybox pod pinned to each node, its address from its node's block of the pod pool
   (containerd calls sart-cni); FRR installs each block via its node; ``sartd fib`` on each
   node installs the other node's block via the router;
5. the pod on node-a reaches the pod on node-b over HTTP (``kubectl exec``, busybox ``nc``):
   pod-to-pod across nodes goes through the router on the routes sart put in both kernels
   (sart installs no direct routes between nodes; docs/fib.md);
   then the original's CNI e2e: of two more pods on node-a, the one with the lower address
   deleted and created anew gets it again (the lowest free address); a pod naming the pod pool
   ``pods-b`` (``sart.terassyi.net/addresspool``) gets an address of node-a's ``pods-b``
   block, routed on the router via node-a, and answers the node-b pod; so does a pod on node-b
   in a namespace annotated with ``pods-b``; every pod block's BGPAdvertisement ``Advertised``
   to its node's BGPPeer alone;
6. a LoadBalancer Service's address, installed by FRR with both nodes as next hops, and HTTP
   from the router's namespace to it answered, entering through kube-proxy on both nodes (the
   packet counters of each node's iptables rule for the address grow);
7. a second Service, externalTrafficPolicy Local, selecting node-b's pod only: the router has
   its address via node-b alone, and every answer comes from that pod (as the original's e2e);
8. the original's e2e on what it adds: the Local Service made Cluster (the router's paths grow
   to both nodes) and Local again (node-a's withdrawn), each answered;
9. Services naming their pool (``sart.terassyi.net/addresspool``, a second pool ``lb-b``),
   their address (``sart.terassyi.net/loadBalancerIPs``; ``spec.loadBalancerIP`` with a pool)
   and two pools (an address from each): each gets what it asked, routed via both nodes and
   answered; then one Service's pool annotation edited: its old address withdrawn at the
   router and released (its BGPAdvertisement deleted), the new one announced and answered
   (from stage 7 on, each address on the router also has its BGPAdvertisement ``Advertised``
   by exactly the nodes it is routed through, as the original checks);
10. no container restarted (a crash, a failed probe), and the controller's Lease is held under
    a node's name (the replicas tell themselves apart);
11. node-b's ``sartd bgp`` killed (SIGKILL), then its ``sartd agent``, then both
    sart-controller pods deleted, while the router GETs the Local Service (via node-b alone)
    every 0.1 s: each comes back (FRR's session anew, the container ready, two new controller
    pods), the route never leaves the router (the router and the speaker restart gracefully)
    and the answers go on (how many failed, the longest gap, noted); only those two
    containers restarted, and the new controller moves the Service back to its first pool;
    last (the original's CNI e2e), a new pod on node-b gets an address no pod has and reaches
    node-a's pod.

``RealCluster.summary`` gives the stages' times, each node's resident memory and CPU time by
component, the router's, and how busy the machine's cores were.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self, TypeVar

import netaddr
import yaml

from sart.k8s.models import ADDRESS_POOL_ANNOTATION, LOAD_BALANCER_IPS_ANNOTATION
from sart.testing.cluster_lab import TcpProbe, longest_gap
from sart.testing.controlplane import CONTROLLERS, ControlPlane
from sart.testing.netns import LabError, Link, Namespace
from sart.testing.node import (
    BUSYBOX_IMAGE,
    Node,
    NodeError,
    busybox_image,
    find_node_binaries,
    image_cache,
    missing_prerequisites,
)
from sart.testing.peers import BgpConfig, Frr, Lab, neighbor, wait_for

__all__ = ["NODES", "RealCluster", "ScenarioError", "run_scenario"]

ROOT: Final = Path(__file__).resolve().parents[3]
MANIFESTS: Final = ROOT / "manifests"
POD_POOL: Final = "10.1.0.0/24"
OTHER_POD_POOL: Final = "10.1.1.0/24"  # pods-b: only for pods that name it
LB_POOL: Final = "10.2.0.0/28"
SERVICE_POOLS: Final = {"lb": LB_POOL, "lb-b": "10.2.1.0/28"}  # lb assigns by default
ROUTER_AS: Final = 65000
NODES: Final = {"node-a": ("172.31.250.0/30", 65001), "node-b": ("172.31.250.4/30", 65002)}
"""name -> (its veth /30 to the host, its AS); node-a runs the cluster's kube-scheduler."""
NODE_CONTROLLERS: Final = (
    *CONTROLLERS,
    "deployment-controller",
    "replicaset-controller",
    "daemonset-controller",
    "node-lifecycle-controller",  # takes the not-ready taint off the new Nodes
)
WEB_PODS: Final = {"web-a": "node-a", "web-b": "node-b"}
LB_FETCHES: Final = 24  # connections from the router to the LoadBalancer address
T = TypeVar("T")


class ScenarioError(AssertionError):
    """The cluster did not get where the scenario expected (says where it stopped)."""


def _script(name: str, *args: str) -> str:
    done = subprocess.run(
        [str(ROOT / "scripts" / name), *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise ScenarioError(f"scripts/{name} {' '.join(args)}: {done.stderr[-3000:]}")
    return done.stdout.strip()


def _cpu_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine so far, from /proc/stat."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return sum(fields) - idle, sum(fields)


def _memory_used_mib() -> float:
    lines = Path("/proc/meminfo").read_text().splitlines()
    info = dict(line.split(":", 1) for line in lines if ":" in line)
    total, available = (int(info[k].split()[0]) for k in ("MemTotal", "MemAvailable"))
    return (total - available) / 1024


class RealCluster:
    """The control plane, the two nodes, the router, kubectl, and the timings of each stage.
    A context manager: everything is stopped and removed on exit, whatever happened.
    ``report`` is called with each stage's line as it is reached (the demo prints it)."""

    def __init__(self, *, report: Callable[[str], None] = lambda line: None) -> None:
        self.report = report
        self.stages: list[tuple[str, float]] = []
        self.notes: list[str] = []
        self.nodes: dict[str, Node] = {}
        self.links: dict[str, Link] = {}  # by node: a is the router's end, b the node's
        self.began = time.monotonic()
        self._cpu_began = _cpu_jiffies()
        self._network = Lab("rn")
        self._router: Frr | None = None
        self._plane: ControlPlane | None = None
        self._kubectl: Path | None = None
        self._tmp: Path | None = None

    def __enter__(self) -> Self:
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def plane(self) -> ControlPlane:
        if self._plane is None:
            raise ScenarioError("the cluster is not built")
        return self._plane

    @property
    def router(self) -> Frr:
        if self._router is None:
            raise ScenarioError("the router is not started")
        return self._router

    @property
    def tor(self) -> Namespace:
        return self.router.namespace

    @property
    def tmp(self) -> Path:
        if self._tmp is None:
            raise ScenarioError("the cluster is not built")
        return self._tmp

    def _build(self) -> None:
        bin_dir = find_node_binaries()
        image = Path(_script("build-image"))
        archives = sorted(image.glob("sart-*.tar"))
        if not archives:
            raise ScenarioError(f"scripts/build-image left no tarball in {image}")
        kubectl = Path(_script("kubectl", "path") or _script("kubectl", "build"))
        if not kubectl.is_file():
            _script("kubectl", "build")
            kubectl = Path(_script("kubectl", "path"))
        self._kubectl = kubectl
        self._tmp = Path(tempfile.mkdtemp(prefix="sart-real-cluster-"))
        self.stage("builds (cached)")
        # The apiserver calls sart's webhook at a controller pod's address, as a control plane
        # outside the cluster network does (no kube-proxy on this host for a ClusterIP).
        self._plane = ControlPlane(
            controllers=NODE_CONTROLLERS, bind_address="0.0.0.0", endpoint_routing=True
        )
        self._plane.start()
        self.stage("control plane")
        self._cpu_began = _cpu_jiffies()
        images = [archives[0], busybox_image(image_cache(bin_dir))]
        for name, (link, _) in NODES.items():
            node = Node(
                self._plane,
                name,
                link=link,
                images=images,
                kube_proxy=True,
                scheduler=name == "node-a",  # one scheduler for the cluster
                bin_dir=bin_dir,
            )
            self.nodes[name] = node
            node.start()
            phases = ", ".join(f"{k} {v:.1f}" for k, v in node.times.items())
            self.stage(f"{name} started ({phases})")
        tor = self._network.namespace("tor")
        tor.enable_forwarding()
        tor.sysctl("net.ipv4.fib_multipath_hash_policy", "1")  # per flow, as a fabric does
        for name, node in self.nodes.items():
            self.links[name] = self._network.link(tor, node.namespace)
        config = BgpConfig(
            router_id=self.links["node-a"].a.ipv4,
            local_as=ROUTER_AS,
            # graceful restart, as a fabric has it: a restarting speaker's routes stay
            neighbors=tuple(
                neighbor(self.links[n].b.ipv4, asn, graceful_restart=True)
                for n, (_, asn) in NODES.items()
            ),
            routes=tuple(f"{link.a.ipv4}/24" for link in self.links.values()),
            max_paths=len(self.nodes),
        )
        self._router = self._network.start(Frr(tor, config, name="tor"))
        self.stage("router")

    def close(self) -> None:
        """The router's namespace, the nodes, the control plane, the directory."""
        with contextlib.suppress(Exception):  # a failed start leaves it half made
            self._network.close()
        for node in self.nodes.values():
            node.stop()
        if self._plane is not None:
            self._plane.stop()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def restarts(self) -> list[str]:
        """Every container that restarted: pod/container, how often, how it last ended."""
        found = []
        for pod in self.get("pods", "-A")["items"]:
            for container in (pod.get("status") or {}).get("containerStatuses") or []:
                if container.get("restartCount"):
                    ended = (container.get("lastState") or {}).get("terminated") or {}
                    found.append(
                        f"{pod['metadata']['name']}/{container['name']}"
                        f" {container['restartCount']} (last: {ended.get('reason')},"
                        f" exit code {ended.get('exitCode')})"
                    )
        return found

    # Stages and checks -------------------------------------------------------------------------

    def stage(self, name: str) -> None:
        took = time.monotonic() - self.began
        self.stages.append((name, took))
        self.report(f"{name}: {took:.1f} s")
        self.began = time.monotonic()

    @property
    def reached(self) -> str:
        """Where the scenario is, for a failure: the last stage passed."""
        return f"after stage {self.stages[-1][0]!r}" if self.stages else "before any stage"

    def check(self, condition: object, what: str) -> None:
        if not condition:
            raise ScenarioError(f"{self.reached}: {what}\n{self.state()}")

    def wait(self, probe: Callable[[], T | None], what: str, timeout: float = 180.0) -> T:
        """``probe``'s first true answer; on timeout a LabError saying the stage reached,
        with the cluster's state."""
        return wait_for(
            probe, timeout=timeout, what=f"{what} ({self.reached})", interval=0.5,
            describe=self.state,
        )  # fmt: skip

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        done = self.kubectl_run(*args, stdin=stdin)
        if done.returncode != 0:
            raise ScenarioError(f"{self.reached}: kubectl {' '.join(args)}: {done.stderr}")
        return done.stdout

    def kubectl_run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        if self._kubectl is None:
            raise ScenarioError("the cluster is not built")
        return subprocess.run(
            [str(self._kubectl), f"--kubeconfig={self.plane.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", "-o", "json", *args))

    def state(self) -> str:
        """Pods, sart's objects, events and the nodes' and router's logs' tails."""
        shown = [
            self.kubectl_run("get", *what)
            for what in (
                ("pods", "-A", "-o", "wide"),
                ("bgppeers,nodebgps,addressblocks", "-o", "wide"),
                ("events", "-A", "--sort-by=.lastTimestamp"),
            )
        ]
        tails = []
        for node in self.nodes.values():
            with contextlib.suppress(NodeError):  # not running (a failed start)
                for log in sorted(node.logs.glob("*.log")):
                    lines = log.read_text(errors="replace").splitlines()[-15:]
                    tails.append(f"--- {node.name} {log.name}\n" + "\n".join(lines))
        if self._router is not None:
            tails.append(f"--- {self._router}\n{self._router.log_tail(15)}")
        return "\n".join([*(f"{done.stdout[-4000:]}{done.stderr}" for done in shown), *tails])

    def summary(self) -> list[str]:
        """The stages' times, each node's resident memory and CPU time, the router's, and how
        busy the machine's two cores were (they may be shared with other work)."""
        lines = [", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.stages)]
        for node in self.nodes.values():
            with contextlib.suppress(NodeError):  # not running (a failed start)
                memory, cpu = node.resident_memory(), node.cpu_seconds()
                lines.append(
                    f"{node.name} RSS: "
                    + ", ".join(f"{name} {mib:.0f} MiB" for name, mib in memory.items())
                    + f", total {sum(memory.values()):.0f} MiB; CPU: "
                    + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in cpu.items())
                    + f", total {sum(cpu.values()):.1f} s"
                )
        busy, total = (n - t for n, t in zip(_cpu_jiffies(), self._cpu_began, strict=True))
        router = f"FRR bgpd {self.router.rss() / 2**20:.0f} MiB; " if self._router else ""
        lines.append(
            f"{router}machine memory in use {_memory_used_mib():.0f} MiB; the two cores"
            f" {100 * busy / max(total, 1):.0f} % busy on average since the nodes started"
        )
        if self._plane is not None:
            lines.append(f"container restarts: {', '.join(self.restarts()) or 'none'}")
        return [*lines, *self.notes]


# The scenario ----------------------------------------------------------------------------------

POOLS: Final = f"""
apiVersion: sart.terassyi.net/v1alpha2
kind: AddressPool
metadata: {{name: pods}}
spec: {{cidr: {POD_POOL}, type: pod, allocType: bit, blockSize: 29, autoAssign: true}}
---
apiVersion: sart.terassyi.net/v1alpha2
kind: AddressPool
metadata: {{name: pods-b}}
spec: {{cidr: {OTHER_POD_POOL}, type: pod, allocType: bit, blockSize: 29}}
---
apiVersion: sart.terassyi.net/v1alpha2
kind: AddressPool
metadata: {{name: lb}}
spec: {{cidr: {LB_POOL}, type: service, allocType: bit, blockSize: 28, autoAssign: true}}
---
apiVersion: sart.terassyi.net/v1alpha2
kind: AddressPool
metadata: {{name: lb-b}}
spec: {{cidr: {SERVICE_POOLS["lb-b"]}, type: service, allocType: bit, blockSize: 28}}
"""
WEB: Final = """
apiVersion: v1
kind: Pod
metadata: {name: NAME, namespace: default, labels: {app: web, node: NODE}}
spec:
  nodeName: NODE
  terminationGracePeriodSeconds: 1
  containers:
    - name: web
      image: BUSYBOX_IMAGE
      imagePullPolicy: Never
      # answers with its own name (the pod's hostname)
      command: [sh, -c, "mkdir /tmp/www && hostname > /tmp/www/index.html
                         && exec httpd -f -p 8080 -h /tmp/www"]
      ports: [{containerPort: 8080}]
""".replace("BUSYBOX_IMAGE", BUSYBOX_IMAGE)
SERVICES: Final = {  # name -> (externalTrafficPolicy, selector)
    "web": ("Cluster", {"app": "web"}),
    "web-local": ("Local", {"app": "web", "node": "node-b"}),  # announced from node-b only
}
SPARE_PODS: Final = ("spare-1", "spare-2")  # on node-a, outside the Services
OTHER_POOL_POD: Final = "pods-b-a"  # on node-a, asking for pool pods-b
POOL_NAMESPACE: Final = "pods-b"  # its annotation names pool pods-b for its pods
NAMESPACE_POOL_POD: Final = "pods-b-b"  # on node-b, in that namespace
REQUESTS: Final = {  # the original's address requests:
    # name -> (annotations, spec.loadBalancerIP, the pools its addresses must come from)
    "web-pool": ({ADDRESS_POOL_ANNOTATION: "lb-b"}, "", ("lb-b",)),
    "web-named": ({LOAD_BALANCER_IPS_ANNOTATION: "10.2.0.9"}, "", ("lb",)),
    "web-legacy": ({ADDRESS_POOL_ANNOTATION: "lb-b"}, "10.2.1.9", ("lb-b",)),
    "web-pools": ({ADDRESS_POOL_ANNOTATION: "lb,lb-b"}, "", ("lb", "lb-b")),  # one from each
}
HTTP_GET: Final = b"GET / HTTP/1.0\r\n\r\n"
FETCH: Final = """
import sys, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
for _ in range(int(sys.argv[2])):
    print(opener.open(sys.argv[1], timeout=3).read().decode().strip(), flush=True)
"""
"""HTTP GETs, each on a new connection, with Python: Debian's static busybox wget crashes on
this machine kind (its httpd and nc are fine)."""


def web_pod(
    name: str, node: str, app: str = "web", pool: str = "", namespace: str = "default"
) -> str:
    """A busybox web pod pinned to the node; ``pool`` names its pod pool (the annotation)."""
    manifest = yaml.safe_load(WEB.replace("NAME", name).replace("NODE", node))
    manifest["metadata"]["labels"]["app"] = app
    manifest["metadata"]["namespace"] = namespace
    if pool:
        manifest["metadata"]["annotations"] = {ADDRESS_POOL_ANNOTATION: pool}
    return yaml.safe_dump(manifest)


def service(
    name: str,
    policy: str,
    selector: dict[str, str],
    annotations: dict[str, str] | None = None,
    load_balancer_ip: str = "",
) -> str:
    """A LoadBalancer Service in front of the web pods' port 8080, as port 80."""
    spec: dict[str, Any] = {
        "type": "LoadBalancer",
        "externalTrafficPolicy": policy,
        "selector": selector,
        "ports": [{"port": 80, "targetPort": 8080}],
    }
    if load_balancer_ip:
        spec["loadBalancerIP"] = load_balancer_ip
    metadata = {"name": name, "namespace": "default", "annotations": annotations or {}}
    return yaml.safe_dump(
        {"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": spec}
    )


def rendered(cluster: RealCluster) -> str:
    """`kubectl kustomize` of manifests/ with the CNI component, as it is (the nodes'
    /opt/cni/bin and /etc/cni/net.d are their own directories in their mount namespaces)."""
    tmp = cluster.tmp / "kustomize"
    tmp.mkdir()
    (tmp / "sart").symlink_to(MANIFESTS)
    (tmp / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": ["sart"],
                "components": ["sart/components/cni"],
            }
        )
    )
    return cluster.kubectl("kustomize", str(tmp))


def bgp_config(cluster: RealCluster) -> str:
    """The router as a BGPPeerTemplate, and a ClusterBGP for the nodes labelled bgp=lab."""
    template = {
        "apiVersion": "sart.terassyi.net/v1alpha2",
        "kind": "BGPPeerTemplate",
        "metadata": {"name": "tor"},
        "spec": {"asn": ROUTER_AS, "holdTime": 9, "groups": ["tor"]},
    }
    peers = [
        {
            "peerTemplateRef": "tor",
            "peerConfig": {"addr": link.a.ipv4},
            "nodeBGPSelector": {"kubernetes.io/hostname": name},
        }
        for name, link in cluster.links.items()
    ]
    clusterbgp = {
        "apiVersion": "sart.terassyi.net/v1alpha2",
        "kind": "ClusterBGP",
        "metadata": {"name": "lab"},
        "spec": {
            "nodeSelector": {"bgp": "lab"},
            "asnSelector": {"from": "label"},
            "routerIdSelector": {"from": "internalAddress"},
            "speaker": {"path": "unix:/run/sart/bgp.sock", "multipath": True},
            "peers": peers,
        },
    }
    return yaml.safe_dump_all([template, clusterbgp])


def lb_rule_packets(cluster: RealCluster, node: Node, lb: str) -> int | None:
    """Connections that entered the node's kube-proxy rules for the LoadBalancer address (the
    nat table sees a connection's first packet only); None while kube-proxy has no rule."""
    saved = node.exec("iptables-save", "-c", "-t", "nat")
    cluster.check(saved.returncode == 0, f"iptables-save on {node.name}: {saved.stderr}")
    counts = [
        int(m[1])
        for line in saved.stdout.splitlines()
        if f"-d {lb}/32" in line and (m := re.match(r"\[(\d+):\d+\]", line))
    ]
    return sum(counts) if counts else None


def _rule_packets(cluster: RealCluster, lb: str) -> dict[str, int] | None:
    """``lb_rule_packets`` of every node, once each has a rule for the address."""
    found = {name: lb_rule_packets(cluster, node, lb) for name, node in cluster.nodes.items()}
    return {n: c for n, c in found.items() if c is not None} if None not in found.values() else None


def _last_status(peer: dict[str, Any]) -> str:
    history = (peer.get("status") or {}).get("conditions") or [{}]
    return str(history[-1].get("status", ""))


def run_scenario(cluster: RealCluster) -> None:
    """The stages of the module's doc, in order; raises ScenarioError where one fails."""
    _install(cluster)
    _sessions(cluster)
    ips = _pods(cluster)
    _pod_to_pod(cluster, ips)
    _pod_addresses(cluster, ips)
    _load_balancer(cluster)
    _local_policy(cluster)
    _policy_change(cluster)
    _address_requests(cluster)
    _pool_change(cluster, "web-pool", "lb-b", "lb")
    _no_restarts(cluster)
    _restarts(cluster)
    _pool_change(cluster, "web-pool", "lb", "lb-b")  # the restarted controller at work
    _pod_after_restart(cluster, ips)


def _install(cluster: RealCluster) -> None:
    cluster.kubectl("apply", "--server-side", "-f", "-", stdin=rendered(cluster))
    cluster.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    # Not the webhook's kinds: applied at once. The pools wait for the webhook (_webhook).
    cluster.kubectl("apply", "-f", "-", stdin=bgp_config(cluster))
    for name, (_, asn) in NODES.items():
        cluster.kubectl("label", "node", name, "bgp=lab", f"sart.terassyi.net/asn={asn}")
    cluster.stage("manifests applied, nodes labelled")

    def daemonset_ready() -> bool:
        status = cluster.get("-n", "sart-system", "daemonset", "sartd").get("status", {})
        return bool(status.get("numberReady") == len(cluster.nodes))

    cluster.wait(daemonset_ready, "the sartd DaemonSet's pods Ready on both nodes")
    cluster.stage("sartd pods ready")
    for node in cluster.nodes.values():
        conflist = json.loads((node.cni_conf_dir / "10-sart.conflist").read_text())
        plugins = [p["type"] for p in conflist["plugins"]]
        cluster.check(plugins == ["sart-cni"], f"{node.name}'s conflist: {plugins}")
        installed = os.access(node.cni_bin_dir / "sart-cni", os.X_OK)
        cluster.check(installed, f"no executable sart-cni in {node.name}'s /opt/cni/bin")
        cluster.wait(node.ready, f"{node.name} Ready (the runtime's network: sart's conflist)")
    cluster.stage("nodes ready")

    def controller_available() -> bool:
        deployment = cluster.get("-n", "sart-system", "deployment", "sart-controller")
        return bool(deployment.get("status", {}).get("availableReplicas", 0) >= 1)

    cluster.wait(controller_available, "a sart-controller pod available")
    cluster.stage("sart-controller ready")
    _webhook(cluster)


def _webhook(cluster: RealCluster) -> None:
    """The pools applied as docs/install.md says: once sart-controller is available, again
    while the webhook cannot be called yet (its failurePolicy is Fail). Then a pool overlapping
    one of them is refused with the webhook's reason, which went from the apiserver to a
    controller pod's address on its node (the pod logs it) and back in kubectl's error."""
    attempts: list[str] = []

    def admitted() -> bool:
        applied = cluster.kubectl_run("apply", "-f", "-", stdin=POOLS)
        attempts.append(applied.stderr.strip())
        return applied.returncode == 0

    cluster.wait(admitted, "the AddressPools admitted", timeout=60)
    before = f", the first refused: {attempts[0][:200]}" if len(attempts) > 1 else ""
    cluster.notes.append(f"AddressPools admitted at apply {len(attempts)}{before}")
    cluster.stage("AddressPools admitted by the webhook")
    overlapping = {
        "apiVersion": "sart.terassyi.net/v1alpha2",
        "kind": "AddressPool",
        "metadata": {"name": "lb-overlapping"},
        "spec": {"cidr": "10.2.0.8/29", "type": "service", "allocType": "bit"},
    }
    refused = cluster.kubectl_run("apply", "-f", "-", stdin=yaml.safe_dump(overlapping))
    reason = f"cidr 10.2.0.8/29 overlaps AddressPool lb ({LB_POOL})"
    denied = 'admission webhook "validate.sart.terassyi.net" denied the request'
    cluster.check(
        refused.returncode != 0 and denied in refused.stderr and reason in refused.stderr,
        f"an overlapping AddressPool: {refused.returncode}, {refused.stderr}",
    )
    pools = {p["metadata"]["name"] for p in cluster.get("addresspools")["items"]}
    expected = {d["metadata"]["name"] for d in yaml.safe_load_all(POOLS)}
    cluster.check(pools == expected, f"AddressPools: {sorted(pools)}")
    selector = "app.kubernetes.io/component=controller"
    logs = cluster.kubectl("logs", "-n", "sart-system", "-l", selector, "--tail=-1")
    cluster.check("admission refused" in logs, f"no controller pod logged the refusal:\n{logs}")
    cluster.stage("an overlapping AddressPool refused by the webhook")


def _sessions(cluster: RealCluster) -> None:
    def established() -> dict[str, str] | None:
        states = {
            p["spec"]["nodeBGPRef"]: _last_status(p) for p in cluster.get("bgppeers")["items"]
        }
        if sorted(states) != sorted(cluster.nodes) or set(states.values()) != {"Established"}:
            return None
        return states

    cluster.wait(established, "both nodes' BGPPeers Established", timeout=120)
    summary = cluster.router.vtysh_json("show bgp summary json")["ipv4Unicast"]["peers"]
    for name, link in cluster.links.items():
        state = summary.get(link.b.ipv4, {}).get("state")
        cluster.check(state == "Established", f"FRR's session with {name}: {state} ({summary})")
    cluster.stage("BGP sessions established (BGPPeers, FRR)")


def _pods(cluster: RealCluster) -> dict[str, str]:
    """The web pods' addresses by pod, their blocks routed on the router and the nodes."""
    for name, node_name in WEB_PODS.items():
        cluster.kubectl("apply", "-f", "-", stdin=web_pod(name, node_name))
    for name, (policy, selector) in SERVICES.items():
        cluster.kubectl("apply", "-f", "-", stdin=service(name, policy, selector))
    ips = cluster.wait(
        lambda: _ready_ips(cluster, WEB_PODS), "a web pod Running and Ready on each node"
    )
    cluster.stage("test pods ready")
    blocks = {}
    for item in cluster.get("addressblocks")["items"]:
        cidr = netaddr.IPNetwork(item["spec"]["cidr"])
        for pod, node_name in WEB_PODS.items():
            if item["spec"].get("nodeRef") == node_name and netaddr.IPAddress(ips[pod]) in cidr:
                blocks[node_name] = str(cidr.cidr)
    cluster.check(sorted(blocks) == sorted(cluster.nodes), f"blocks {blocks} of pods {ips}")
    pool = netaddr.IPNetwork(POD_POOL)
    cluster.check(all(netaddr.IPAddress(ip) in pool for ip in ips.values()), f"pods {ips}")

    def routed() -> bool:
        for name, block in blocks.items():
            if cluster.tor.kernel_nexthops(block) != [cluster.links[name].b.ipv4]:
                return False
            for other, link in cluster.links.items():
                hops = cluster.nodes[other].namespace.kernel_nexthops(block)
                if other != name and hops != [link.a.ipv4]:
                    return False
        return True

    cluster.wait(routed, "each block on the router and on the other node", timeout=60)
    cluster.notes.append(
        "pod blocks on the router: "
        + ", ".join(f"{b} ({n}) via {cluster.links[n].b.ipv4}" for n, b in blocks.items())
    )
    cluster.stage("pod blocks routed (router, other node)")
    return ips


def _routed_pool_block(cluster: RealCluster, name: str, address: str, node: str) -> None:
    """The pod's address is in a pods-b block of its node, and that block is on the router
    via the node."""
    ip = netaddr.IPAddress(address)
    blocks = [
        str(netaddr.IPNetwork(item["spec"]["cidr"]).cidr)
        for item in cluster.get("addressblocks")["items"]
        if item["spec"].get("poolRef") == "pods-b"
        and item["spec"].get("nodeRef") == node
        and ip in netaddr.IPNetwork(item["spec"]["cidr"])
    ]
    cluster.check(len(blocks) == 1, f"{name} at {address}: {node}'s pods-b blocks {blocks}")
    hop = [cluster.links[node].b.ipv4]
    on_router = f"{blocks[0]} via {node} on the router"
    cluster.wait(lambda: cluster.tor.kernel_nexthops(blocks[0]) == hop, on_router, 60)


def _ready_ips(
    cluster: RealCluster, pods: Iterable[str], namespace: str = "default"
) -> dict[str, str] | None:
    """The pods' addresses, once each is Ready."""
    found = {}
    for name in pods:
        status = cluster.get("-n", namespace, "pod", name).get("status", {})
        conditions = status.get("conditions", [])
        if not any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
            return None
        found[name] = str(status["podIP"])
    return found


def _fetch_pod(cluster: RealCluster, source: str, target: str, address: str) -> None:
    """HTTP from pod ``source`` to pod ``target`` at its address answered by ``target``."""
    request = f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {address} 8080"

    def answered() -> str | None:
        done = cluster.kubectl_run("exec", source, "--", "sh", "-c", request)
        return done.stdout if done.returncode == 0 and target in done.stdout else None

    answer = cluster.wait(answered, f"{source} reaching {target} at {address}", timeout=60)
    cluster.check("200 OK" in answer, f"{target}'s answer: {answer}")


def _pod_to_pod(cluster: RealCluster, ips: dict[str, str]) -> None:
    _fetch_pod(cluster, "web-a", "web-b", ips["web-b"])
    cluster.stage("pod to pod across the nodes")


def _pod_addresses(cluster: RealCluster, ips: dict[str, str]) -> None:
    """The original's CNI e2e: the lower of two pods' addresses on a node handed out again to
    the pod created anew (the bit allocator gives the lowest free one); a pod naming the pool
    pods-b gets its address from a pods-b block of its node, that block is routed on the router
    and the pod reached from node-b's; every pod block's BGPAdvertisement Advertised to its
    node's BGPPeer."""
    for name in SPARE_PODS:
        cluster.kubectl("apply", "-f", "-", stdin=web_pod(name, "node-a", app="spare"))
    other = web_pod(OTHER_POOL_POD, "node-a", app="spare", pool="pods-b")
    cluster.kubectl("apply", "-f", "-", stdin=other)
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": POOL_NAMESPACE, "annotations": {ADDRESS_POOL_ANNOTATION: "pods-b"}},
    }
    cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(namespace))
    in_namespace = web_pod(NAMESPACE_POOL_POD, "node-b", app="spare", namespace=POOL_NAMESPACE)
    cluster.kubectl("apply", "-f", "-", stdin=in_namespace)
    extra = (*SPARE_PODS, OTHER_POOL_POD)
    found = cluster.wait(lambda: _ready_ips(cluster, extra), f"pods {extra} Ready on node-a")
    lower = min(SPARE_PODS, key=lambda name: netaddr.IPAddress(found[name]))
    cluster.kubectl("delete", "pod", lower, "--wait=true")
    cluster.kubectl("apply", "-f", "-", stdin=web_pod(lower, "node-a", app="spare"))
    again = cluster.wait(lambda: _ready_ips(cluster, [lower]), f"{lower} created anew Ready")
    cluster.check(again == {lower: found[lower]}, f"{lower} was {found[lower]}, now {again}")
    cluster.stage("the lower address of a node's pods handed out again to the pod anew")
    _routed_pool_block(cluster, OTHER_POOL_POD, found[OTHER_POOL_POD], "node-a")
    _fetch_pod(cluster, "web-b", OTHER_POOL_POD, found[OTHER_POOL_POD])
    cluster.stage("a pod of the pool it names: its block routed, reached from node-b")
    ready = cluster.wait(
        lambda: _ready_ips(cluster, [NAMESPACE_POOL_POD], POOL_NAMESPACE),
        f"{NAMESPACE_POOL_POD} Ready in namespace {POOL_NAMESPACE}",
    )
    _routed_pool_block(cluster, NAMESPACE_POOL_POD, ready[NAMESPACE_POOL_POD], "node-b")
    _fetch_pod(cluster, "web-a", NAMESPACE_POOL_POD, ready[NAMESPACE_POOL_POD])
    cluster.stage("a pod of the pool its namespace names: its block routed, reached from node-a")
    pod_blocks = [
        (str(netaddr.IPNetwork(item["spec"]["cidr"]).cidr), item["spec"]["nodeRef"])
        for item in cluster.get("addressblocks")["items"]
        if item["spec"].get("nodeRef")
    ]

    def all_advertised() -> bool:
        return all(_advertised(cluster, cidr) == {node: "Advertised"} for cidr, node in pod_blocks)

    cluster.wait(all_advertised, f"pod blocks {pod_blocks} Advertised to their node's peer", 60)
    cluster.stage("each pod block's BGPAdvertisement Advertised to its node's BGPPeer")


def _pool_of(address: str) -> str:
    """The name of the service pool holding the address ("" for none)."""
    ip = netaddr.IPAddress(address)
    return next((n for n, cidr in SERVICE_POOLS.items() if ip in netaddr.IPNetwork(cidr)), "")


def _lb_addresses(cluster: RealCluster, name: str, pools: tuple[str, ...] = ("lb",)) -> list[str]:
    """The Service's LoadBalancer addresses, once they are one from each of ``pools``."""

    def addresses() -> list[str] | None:
        status = cluster.get("-n", "default", "service", name).get("status", {})
        found = [str(i["ip"]) for i in status.get("loadBalancer", {}).get("ingress") or []]
        return found if sorted(map(_pool_of, found)) == sorted(pools) else None

    return cluster.wait(addresses, f"Service {name}'s addresses from {', '.join(pools)}", 60)


def _advertised(cluster: RealCluster, route: str) -> dict[str, str] | None:
    """The status of the route's BGPAdvertisement (a Service's or a pod block's) by node, as
    the nodes' agents wrote it; None when there is no BGPAdvertisement for it."""
    nodes = {
        p["metadata"]["name"]: p["spec"]["nodeBGPRef"] for p in cluster.get("bgppeers")["items"]
    }
    for item in cluster.get("-A", "bgpadvertisements")["items"]:
        if item["spec"]["cidr"] == route:
            peers = (item.get("status") or {}).get("peers") or {}
            return {nodes.get(peer, peer): str(state) for peer, state in peers.items()}
    return None


def _reachable(cluster: RealCluster, lb: str, hops: list[str], times: int = 4) -> list[str]:
    """``lb``/32 on the router via ``hops`` exactly, its BGPAdvertisement Advertised by those
    nodes' agents alone (as the original's e2e checks), and ``times`` GETs from the router to
    it answered by web pods; the answers."""
    route = f"{lb}/32"
    cluster.wait(lambda: cluster.tor.kernel_nexthops(route) == hops, f"{route} via {hops}", 60)
    nodes = sorted(n for n, link in cluster.links.items() if link.b.ipv4 in hops)

    def advertised_by() -> list[str] | None:
        states = _advertised(cluster, route) or {}
        found = sorted(n for n, state in states.items() if state == "Advertised")
        return found if found == nodes else None

    cluster.wait(advertised_by, f"{route}'s BGPAdvertisement Advertised by {nodes}", 60)
    cluster.wait(lambda: _rule_packets(cluster, lb), f"kube-proxy's rules for {lb}", 60)
    answers = _router_get(cluster, lb, times)
    cluster.check(
        len(answers) == times and set(answers) <= set(WEB_PODS), f"{lb}'s answers: {answers}"
    )
    return answers


def _router_get(cluster: RealCluster, lb: str, times: int) -> list[str]:
    """The answers to ``times`` HTTP GETs from the router to the address, each on a new
    connection (so spread over the ECMP next hops)."""
    argv = [sys.executable, "-c", FETCH, f"http://{lb}/", str(times)]
    done = cluster.tor.run(argv, check=False)
    cluster.check(done.returncode == 0, f"GET http://{lb}/ from the router: {done.stderr[-2000:]}")
    return done.stdout.split()


def _load_balancer(cluster: RealCluster) -> None:
    [lb] = _lb_addresses(cluster, "web")
    both = sorted(link.b.ipv4 for link in cluster.links.values())
    cluster.wait(lambda: cluster.tor.kernel_nexthops(f"{lb}/32") == both, f"{lb}/32 via {both}", 60)
    route = cluster.router.vtysh(f"show ip route {lb}/32")
    cluster.check(all(hop in route for hop in both), f"FRR's route: {route}")
    cluster.notes.append(f"LoadBalancer {lb}/32 on the router: ECMP via {', '.join(both)}")
    cluster.stage("LoadBalancer address, ECMP on the router")

    before = cluster.wait(lambda: _rule_packets(cluster, lb), f"kube-proxy's rules for {lb}", 60)
    answers = _router_get(cluster, lb, LB_FETCHES)
    after = _rule_packets(cluster, lb) or {}
    entered = {name: after.get(name, 0) - count for name, count in before.items()}
    cluster.notes.append(
        f"{LB_FETCHES} connections from the router to {lb}: answered by "
        + ", ".join(f"{pod} {answers.count(pod)}" for pod in WEB_PODS)
        + "; entered through kube-proxy on "
        + ", ".join(f"{name} {count}" for name, count in entered.items())
    )
    cluster.check(
        len(answers) == LB_FETCHES and set(answers) <= set(WEB_PODS), f"answers {answers}"
    )
    cluster.check(all(entered.values()), f"connections entered per node: {entered}")
    cluster.stage("LoadBalancer traffic from the router through both nodes")


def _local_policy(cluster: RealCluster) -> None:
    """externalTrafficPolicy Local (the original's e2e has it too): announced only from the
    node with a ready endpoint, and answered by that endpoint alone."""
    [lb] = _lb_addresses(cluster, "web-local")
    answers = _reachable(cluster, lb, [cluster.links["node-b"].b.ipv4], 8)
    cluster.check(answers == ["web-b"] * 8, f"web-local's answers: {answers}")
    cluster.notes.append(f"Local Service {lb}/32 on the router via node-b only; 8 of 8 from web-b")
    cluster.stage("Local Service: announced from its endpoint's node only")


def _both(cluster: RealCluster) -> list[str]:
    return sorted(link.b.ipv4 for link in cluster.links.values())


def _policy_change(cluster: RealCluster) -> None:
    """The Local Service made Cluster (announced from both nodes, still answered by node-b's
    pod) and Local again (node-a's path withdrawn), as the original's e2e."""
    [lb] = _lb_addresses(cluster, "web-local")
    for policy, hops in (("Cluster", _both(cluster)), ("Local", [cluster.links["node-b"].b.ipv4])):
        began = time.monotonic()
        patch = json.dumps({"spec": {"externalTrafficPolicy": policy}})
        cluster.kubectl("patch", "-n", "default", "service", "web-local", "-p", patch)
        answers = _reachable(cluster, lb, hops)
        cluster.check(set(answers) == {"web-b"}, f"web-local ({policy})'s answers: {answers}")
        cluster.notes.append(
            f"web-local made {policy}: {lb}/32 via {', '.join(hops)} and answered"
            f" {time.monotonic() - began:.1f} s after the patch"
        )
    cluster.stage("externalTrafficPolicy Local -> Cluster -> Local: the router's paths follow")


def _address_requests(cluster: RealCluster) -> None:
    """Services asking for a pool by annotation, for an address (annotation, and
    spec.loadBalancerIP with a pool), and for two pools: each gets what it asked, announced
    from both nodes and answered."""
    for name, (asked, address, _) in REQUESTS.items():
        manifest = service(name, "Cluster", {"app": "web"}, asked, address)
        cluster.kubectl("apply", "-f", "-", stdin=manifest)
    for name, (asked, address, pools) in REQUESTS.items():
        got = _lb_addresses(cluster, name, pools)
        named = asked.get(LOAD_BALANCER_IPS_ANNOTATION) or address
        cluster.check(not named or named in got, f"{name} asked for {named}, got {got}")
        for lb in got:
            _reachable(cluster, lb, _both(cluster))
        cluster.notes.append(f"{name} ({asked}, {address or 'no loadBalancerIP'}): {got}")
    cluster.stage("Services addressed from the pools and addresses they name, all answered")


def _pool_change(cluster: RealCluster, name: str, was: str, pool: str) -> None:
    """The Service's pool annotation edited from ``was`` to ``pool``: its old address
    withdrawn at the router, a new one from the new pool announced and answered."""
    [old] = _lb_addresses(cluster, name, (was,))
    began = time.monotonic()
    cluster.kubectl(
        "annotate", "--overwrite", "-n", "default", "service", name,
        f"{ADDRESS_POOL_ANNOTATION}={pool}",
    )  # fmt: skip
    [new] = _lb_addresses(cluster, name, (pool,))
    route = f"{old}/32"
    cluster.wait(lambda: not cluster.tor.kernel_nexthops(route), f"{route} withdrawn", 60)
    gone = f"{old} released (its BGPAdvertisement deleted)"
    cluster.wait(lambda: _advertised(cluster, route) is None, gone, 60)
    _reachable(cluster, new, _both(cluster))
    took = time.monotonic() - began
    cluster.notes.append(f"{name} moved to {pool}: {old} withdrawn, {new} answered in {took:.1f} s")
    cluster.stage(f"{name}'s pool changed to {pool}: old address withdrawn, new one answered")


def _no_restarts(cluster: RealCluster) -> None:
    """No container restarted (a crash, a failed liveness probe), and the controller replicas
    told apart: the Lease is held under a node's name."""
    restarts = cluster.restarts()
    cluster.check(not restarts, f"containers restarted: {restarts}")
    lease = cluster.get("-n", "sart-system", "lease", "sart-controller")
    holder = str(lease["spec"].get("holderIdentity", ""))
    held = holder.rpartition("-")[0] in cluster.nodes  # <host name>-<pid>
    cluster.check(held, f"the controller's Lease is held by {holder!r}")
    cluster.notes.append(f"sart-controller leader: {holder}")
    cluster.stage("no container restarted, one controller leads")


def _sartd_pod(cluster: RealCluster, node: str) -> dict[str, Any]:
    pods = cluster.get("-n", "sart-system", "pods", "--field-selector", f"spec.nodeName={node}")
    found = [p for p in pods["items"] if p["metadata"]["name"].startswith("sartd-")]
    cluster.check(
        len(found) == 1, f"sartd pods on {node}: {[p['metadata']['name'] for p in found]}"
    )
    pod: dict[str, Any] = found[0]
    return pod


def _kill(cluster: RealCluster, node: str, daemon: str) -> None:
    """SIGKILL ``sartd <daemon>`` in the node's sartd pod (a crash: no NOTIFICATION, no
    clean-up; the kubelet restarts the container)."""
    for pid in cluster.nodes[node].namespace.pids():  # the pod runs in the node's network
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
            if any(Path(a).name == "sartd" and argv[i + 1 : i + 2] == [daemon]
                   for i, a in enumerate(argv)):  # fmt: skip
                os.kill(pid, signal.SIGKILL)
                return
    cluster.check(False, f"no sartd {daemon} process on {node}")


def _container_back(cluster: RealCluster, node: str, container: str) -> bool:
    """Whether the container of the node's sartd pod restarted and is ready again."""
    statuses = _sartd_pod(cluster, node)["status"].get("containerStatuses") or []
    return any(
        c["name"] == container and c.get("restartCount") and c.get("ready") for c in statuses
    )


def _session_back(cluster: RealCluster, node: str, since: float) -> bool:
    """Whether FRR's session with the node is Established again, newer than ``since``."""
    peers = cluster.router.vtysh_json("show bgp summary json")["ipv4Unicast"]["peers"]
    peer = peers.get(cluster.links[node].b.ipv4, {})
    fresh = peer.get("peerUptimeMsec", 1e12) / 1000 < time.monotonic() - since
    return bool(peer.get("state") == "Established" and fresh)


def _controller_pods(cluster: RealCluster) -> list[dict[str, Any]]:
    selector = "app.kubernetes.io/component=controller"
    pods: list[dict[str, Any]] = cluster.get("-n", "sart-system", "pods", "-l", selector)["items"]
    return pods


def _controller_back(cluster: RealCluster, old: set[str]) -> bool:
    """Whether two new sart-controller pods are ready (the deleted ones gone)."""
    ready = [
        p["metadata"]["name"]
        for p in _controller_pods(cluster)
        if all(c.get("ready") for c in (p.get("status") or {}).get("containerStatuses") or [{}])
    ]
    return len(ready) == 2 and not old & set(ready)


def _through_restart(
    cluster: RealCluster,
    probe: TcpProbe,
    what: str,
    restart: Callable[[], object],
    back: Callable[[float], bool],
) -> None:
    """``restart`` done, waited until ``back``; the probe's Local Service route (via node-b)
    polled on the router meanwhile: it must never leave, and the answers must go on."""
    hop, route = cluster.links["node-b"].b.ipv4, f"{probe.address}/32"
    missing: list[bool] = []
    began = time.monotonic()
    restart()

    def returned() -> bool:
        missing.append(cluster.tor.kernel_nexthops(route) != [hop])
        return back(began)

    cluster.wait(returned, f"{what}: back on node-b", 120)
    took = time.monotonic() - began
    cluster.wait(lambda: probe.samples[-1].at > time.monotonic() - 1, "the probe running", 5)
    samples = probe.window(began, time.monotonic())
    gap, failed = longest_gap(samples)
    answered = all(s.answer == "web-b" for s in samples if s.ok)
    cluster.notes.append(
        f"{what}: back in {took:.1f} s; {route} via {hop} missing in {sum(missing)} of"
        f" {len(missing)} polls; {failed} of {len(samples)} GETs failed"
        f" (longest gap {1000 * gap:.0f} ms)"
    )
    cluster.check(not any(missing), f"{what}: {route} left the router ({missing})")
    cluster.check(answered and samples[-1].ok, f"{what}: answers {samples[-5:]}")
    cluster.stage(f"{what}: the Local Service's route stayed, answers went on")


def _restarts(cluster: RealCluster) -> None:
    """node-b's speaker and agent killed, then both controller pods deleted, while the router
    sends a GET every 0.1 s to the Local Service (announced from node-b alone): the route must
    stay at the router (the speaker restarts gracefully) and the answers go on; how long they
    stopped, if at all, is noted."""
    [lb] = _lb_addresses(cluster, "web-local")
    probe = TcpProbe(cluster.tor, lb, interval=0.1, timeout=1.0, request=HTTP_GET)
    probe.start()
    try:
        cluster.wait(lambda: len(probe.samples) >= 5, "the probe's first answers", 30)
        controllers = {p["metadata"]["name"] for p in _controller_pods(cluster)}
        steps: dict[str, tuple[Callable[[], object], Callable[[float], bool]]] = {
            "sartd bgp killed": (
                lambda: _kill(cluster, "node-b", "bgp"),
                lambda since: (
                    _container_back(cluster, "node-b", "bgp")
                    and _session_back(cluster, "node-b", since)
                ),
            ),
            "sartd agent killed": (
                lambda: _kill(cluster, "node-b", "agent"),
                lambda since: _container_back(cluster, "node-b", "agent"),
            ),
            "sart-controller pods deleted": (
                lambda: cluster.kubectl(
                    "delete", "pod", "-n", "sart-system", "--wait=false", *sorted(controllers)
                ),
                lambda since: _controller_back(cluster, controllers),
            ),
        }
        for what, (restart, back) in steps.items():
            _through_restart(cluster, probe, what, restart, back)
    finally:
        probe.stop()
    pod = _sartd_pod(cluster, "node-b")["metadata"]["name"]
    restarted = sorted(line.split()[0] for line in cluster.restarts())
    expected = [f"{pod}/agent", f"{pod}/bgp"]
    cluster.check(restarted == expected, f"containers restarted: {cluster.restarts()}")


def _pod_after_restart(cluster: RealCluster, ips: dict[str, str]) -> None:
    """A pod on node-b after its agent restarted (the original's CNI e2e): an address no pod
    has (the agent took up the node's allocations again), and it reaches node-a's pod."""
    taken = {
        str(item["status"]["podIP"])
        for item in cluster.get("-A", "pods")["items"]
        if not item["spec"].get("hostNetwork") and item["status"].get("podIP")
    }
    name = "spare-b"
    cluster.kubectl("apply", "-f", "-", stdin=web_pod(name, "node-b", app="spare"))
    found = cluster.wait(lambda: _ready_ips(cluster, [name]), f"{name} Ready on node-b")
    cluster.check(found[name] not in taken, f"{name} got {found[name]}, taken: {taken}")
    _fetch_pod(cluster, name, "web-a", ips["web-a"])
    cluster.stage("a pod on node-b after its agent restarted: a free address, reaches node-a")


def main() -> int:
    """``scripts/demo --full``: the scenario with each stage printed as it is reached."""
    missing = missing_prerequisites()
    if missing:
        print(f"real nodes cannot run here: {'; '.join(missing)}", file=sys.stderr)
        return 1
    try:
        with RealCluster(report=lambda line: print(f"== {line}", flush=True)) as cluster:
            try:
                run_scenario(cluster)
            finally:
                print("\n".join(cluster.summary()), flush=True)
    except (ScenarioError, LabError, NodeError) as error:  # where it stopped, and why
        print(f"failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
