"""A routed cluster on one machine, of any size: N nodes, M spines, a client behind them.

`ClusterLab` builds what `lab_demo` builds for two nodes and one router, for any number of
each: a real control plane (given, or `LabControlPlane`), spine routers (FRR, or BIRD) in
their own network namespaces, each with a loopback address the nodes peer with (the original
sart's lab gives its router 9.9.9.9 that way), node namespaces linked to every spine, each
running `sartd bgp`, `sartd agent --cni-socket` and `sartd fib` (`lab_demo.start_node`), a
client namespace behind the first spine, and `sart-controller` (with leader election, as
deployed). It only builds: what the cluster is configured with (ClusterBGPs, templates,
BGPPeers, pools, Services) is the caller's, so a test can apply the original's samples.

    async with ClusterLab(plane, workdir, nodes=[...], spines=[...]) as lab:
        await lab.apply(yaml.safe_load_all(ORIGINAL_SAMPLES))
        lab.restart_agent("sart-worker")

Addresses: link number k between spine s and node n is 10.255.k.0/24 and fd00:255:k::/64
(spine .1 / ::1, node .2 / ::2), spines first by order, then nodes; a node's InternalIP (and
router id) is its address on the first spine's link; the client is on the last link, behind
the first spine, and every node routes the client's subnets back through the first spine. A
spine given an `address6` has it on its loopback too, and peers with every node over IPv6
from there (IPv6 unicast), as it does over IPv4 from `address`.

`LabControlPlane` is the test control plane plus the Deployment and ReplicaSet controllers
(the original's sample Services come with Deployments) and an audit log of every request, so
that what each component asks of the apiserver can be counted exactly (`audit_requests`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, cast

import attrs
from kubernetes_asyncio.client import AppsV1Api, CoreV1Api, CustomObjectsApi

from sart.k8s.models import GROUP, VERSION
from sart.testing.controlplane import CONTROLLERS, ControlPlane, create_node
from sart.testing.crds import apply_crds
from sart.testing.lab_demo import APISERVER_PORT, start_node
from sart.testing.netns import Link, Namespace, enter, listening_socket
from sart.testing.peers import BgpConfig, Bird, Frr, Lab, Peer, neighbor
from sart.testing.proxy import TcpProxy, proxied_kubeconfig

LAB_CONTROLLERS = (*CONTROLLERS, "deployment-controller", "replicaset-controller")
AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
"""
GRACEFUL_RESTART_FLAGS = ("--graceful-restart", "--defer-end-of-rib")
"""`sartd bgp`'s flags for restarting gracefully under the agent: the shipped DaemonSet's too
(tests/k8s/test_manifests.py keeps them the same)."""
SPEAKER_NAMESPACED = {"BGPAdvertisement"}  # the only namespaced kind of sart's


class LabControlPlane(ControlPlane):
    """The test control plane with the Deployment and ReplicaSet controllers and an audit
    log (level Metadata, one line per request stage after RequestReceived)."""

    def __init__(self, bin_dir: Path | None = None, **options: Any) -> None:
        options.setdefault("controllers", LAB_CONTROLLERS)
        super().__init__(bin_dir, **options)
        self.audit_log: Path | None = None

    def _command_lines(
        self, bin_dir: Path, directory: Path, etcd_peer: int, apiserver_port: int
    ) -> dict[str, tuple[str, ...]]:
        lines = super()._command_lines(bin_dir, directory, etcd_peer, apiserver_port)
        policy = directory / "audit-policy.yaml"
        policy.write_text(AUDIT_POLICY)
        self.audit_log = directory / "audit.log"
        lines["kube-apiserver"] += (
            f"--audit-policy-file={policy}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-mode=blocking",
        )
        return lines

    def audit_size(self) -> int:
        """Where the audit log ends now: give it to `audit_requests` as `start`."""
        if self.audit_log is None or not self.audit_log.exists():
            return 0
        return self.audit_log.stat().st_size

    def audit_requests(self, start: int = 0, end: int | None = None) -> list[AuditedRequest]:
        """The requests the audit log records between two offsets (one per audit ID)."""
        if self.audit_log is None:
            raise RuntimeError("the control plane has not started")
        with self.audit_log.open("rb") as log:
            log.seek(start)
            data = log.read() if end is None else log.read(end - start)
        seen: dict[str, AuditedRequest] = {}
        for line in data.splitlines():
            if not line.strip():
                continue
            event = json.loads(line)
            ref = event.get("objectRef") or {}
            seen.setdefault(
                event["auditID"],
                AuditedRequest(
                    user_agent=event.get("userAgent", ""),
                    verb=event.get("verb", ""),
                    resource=ref.get("resource", ""),
                    namespace=ref.get("namespace", ""),
                    uri=event.get("requestURI", ""),
                    received=_timestamp(event["requestReceivedTimestamp"]),
                ),
            )
        return list(seen.values())


def _timestamp(text: str) -> float:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@attrs.frozen(kw_only=True)
class AuditedRequest:
    user_agent: str
    verb: str
    resource: str
    namespace: str
    uri: str
    received: float  # seconds since the epoch

    @property
    def component(self) -> str:
        """Who asked: the first word of the User-Agent (`sart-controller`, `OpenAPI-Generator`
        for kubernetes_asyncio's default, which the agents use, `kube-controller-manager`)."""
        return self.user_agent.split("/", 1)[0]


@attrs.frozen(kw_only=True)
class NodeSpec:
    name: str
    labels: Mapping[str, str] = attrs.field(factory=dict)
    asn: int = 65000  # the speaker's AS at start; the agent sets the NodeBGP's


@attrs.frozen(kw_only=True)
class SpineSpec:
    name: str
    address: str  # its loopback, which the nodes peer with
    asn: int
    kind: Literal["frr", "bird"] = "frr"
    node_asn: int = 65000  # the AS it expects of every node
    address6: str | None = None  # an IPv6 loopback too: IPv6 sessions with every node


@attrs.define(kw_only=True)
class LabNode:
    spec: NodeSpec
    namespace: Namespace
    address: str  # InternalIP and router id: its end of the first spine's link
    links: dict[str, Link] = attrs.field(factory=dict)  # by spine
    kubeconfig: Path | None = None
    proxy: TcpProxy | None = None
    processes: dict[str, subprocess.Popen[bytes]] = attrs.field(factory=dict)


@attrs.define(kw_only=True)
class LabSpine:
    spec: SpineSpec
    namespace: Namespace
    router: Peer | None = None

    def nexthops(self, prefix: str) -> set[str]:
        """Where the spine sends `prefix`: FRR's kernel route (what zebra installed), BIRD's
        table (it installs nothing here): every usable path's next hop."""
        if isinstance(self.router, Frr):
            return set(self.namespace.kernel_nexthops(prefix))
        assert self.router is not None
        return set(self.router.paths(prefix))


class ClusterLab:
    """See the module's doc. Use as an async context manager; everything it started is
    stopped and removed on exit, whatever happened."""

    def __init__(
        self,
        plane: ControlPlane,
        workdir: Path,
        *,
        nodes: Sequence[NodeSpec],
        spines: Sequence[SpineSpec],
        client: bool = True,
        controller: bool = True,
        tag: str = "cl",
        agent_args: Sequence[str] = (),
        graceful_restart: bool = False,
    ) -> None:
        if not nodes or not spines:
            raise ValueError("a cluster lab needs at least one node and one spine")
        self.plane = plane
        self.workdir = workdir
        self.logs = workdir / "logs"
        self.node_specs = tuple(nodes)
        self.spine_specs = tuple(spines)
        self.with_client = client
        self.with_controller = controller
        self.agent_args = tuple(agent_args)  # more flags for every node's `sartd agent`
        # The speakers restart gracefully (RFC 4724, restarting side) and the spines keep
        # their routes meanwhile.
        self.graceful_restart = graceful_restart
        self.lab = Lab(tag)
        self.nodes: dict[str, LabNode] = {}
        self.spines: dict[str, LabSpine] = {}
        self.client: Namespace | None = None
        self.client_link: Link | None = None
        self.controller: subprocess.Popen[bytes] | None = None
        self._api: Any = None
        self._responders: dict[str, set[int]] = {}
        self._listeners: list[socket.socket] = []
        self._exit = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Self:
        try:
            await self._build()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def api(self) -> Any:
        """The lab's own ApiClient (the admin's), User-Agent `sart-lab`."""
        return self._api

    async def _build(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        self._api = await self._exit.enter_async_context(await self.plane.api_client())
        self._api.user_agent = "sart-lab/1"
        await apply_crds(self._api)
        for spine_spec in self.spine_specs:
            ns = self.lab.namespace(spine_spec.name)
            ns.enable_forwarding()
            ns.add_address("lo", f"{spine_spec.address}/32")
            if spine_spec.address6 is not None:
                ns.add_address("lo", f"{spine_spec.address6}/128")
            self.spines[spine_spec.name] = LabSpine(spec=spine_spec, namespace=ns)
        first = self.spine_specs[0].name
        for spec in self.node_specs:
            ns = self.lab.namespace(spec.name)
            links = {}
            for spine in self.spines.values():
                link = self.lab.link(spine.namespace, ns)
                links[spine.spec.name] = link
                ns.ip("route", "add", f"{spine.spec.address}/32", "via", link.a.ipv4)
                if spine.spec.address6 is not None:
                    route = f"{spine.spec.address6}/128"
                    ns.ip("-6", "route", "add", route, "via", link.a.ipv6)
            self.nodes[spec.name] = LabNode(
                spec=spec, namespace=ns, address=links[first].b.ipv4, links=links
            )
        if self.with_client:
            self.client = self.lab.namespace("client")
            spine0 = self.spines[first].namespace
            self.client_link = self.lab.link(spine0, self.client)
            self.client.ip("route", "add", "default", "via", self.client_link.a.ipv4)
            self.client.ip("-6", "route", "add", "default", "via", self.client_link.a.ipv6)
            # Spread flows (not just address pairs) over the ECMP next hops, as a fabric does.
            spine0.sysctl("net.ipv4.fib_multipath_hash_policy", "1")
            spine0.sysctl("net.ipv6.fib_multipath_hash_policy", "1")
            for subnet in self.client_link.b.addresses:
                back = str(_network(subnet))
                for node in self.nodes.values():
                    via = node.links[first].a
                    gateway = via.ipv6 if ":" in back else via.ipv4
                    node.namespace.ip("route", "add", back, "via", gateway)
        for spine in self.spines.values():
            spine.router = self.lab.start(self._router(spine))
        for node in self.nodes.values():
            await create_node(
                self._api, node.spec.name, addresses=[node.address], labels=node.spec.labels
            )
            listener = listening_socket(node.namespace, "127.0.0.1", APISERVER_PORT)
            proxy = TcpProxy.from_url(self.plane.server, sock=listener)
            node.proxy = self._exit.enter_context(proxy)
            node.kubeconfig = proxied_kubeconfig(
                self.plane.kubeconfig, proxy, self.workdir / node.spec.name
            )
            self._start_node(node, ("bgp", "agent", "fib"))
        if self.with_controller:
            self.start_controller()

    def _router(self, spine: LabSpine) -> Peer:
        spec = spine.spec
        neighbors = tuple(
            neighbor(
                node.links[spec.name].b.ipv4,
                spec.node_asn,
                passive=True,
                graceful_restart=self.graceful_restart,
            )
            for node in self.nodes.values()
        )
        if spec.address6 is not None:
            neighbors += tuple(
                neighbor(
                    node.links[spec.name].b.ipv6,
                    spec.node_asn,
                    passive=True,
                    graceful_restart=self.graceful_restart,
                )
                for node in self.nodes.values()
            )
        config = BgpConfig(
            router_id=spec.address,
            local_as=spec.asn,
            neighbors=neighbors,
            max_paths=max(2, len(self.nodes)),
        )
        if spec.kind == "bird":
            return Bird(spine.namespace, config)
        return Frr(spine.namespace, config)

    def _start_node(self, node: LabNode, daemons: Sequence[str]) -> None:
        assert node.kubeconfig is not None
        started = start_node(
            node.namespace, node.address, node.spec.asn, node.kubeconfig, node.spec.name,
            self.workdir / f"{node.spec.name}.sock", only=daemons, logs=self.logs,
            agent_args=self.agent_args,
            bgp_args=GRACEFUL_RESTART_FLAGS if self.graceful_restart else (),
        )  # fmt: skip
        names = [d for d in ("bgp", "agent", "fib") if d in daemons]
        node.processes.update(zip(names, started, strict=True))

    # -- the controller and restarts ----------------------------------------------------------

    def start_controller(self) -> subprocess.Popen[bytes]:
        with (self.logs / "controller.log").open("ab") as log:
            self.controller = subprocess.Popen(
                [sys.executable, "-m", "sart.cli.controller", "--kubeconfig",
                 str(self.plane.kubeconfig), "--identity", "lab", "--metrics-address", "",
                 "--level", "warning"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        return self.controller

    def stop_controller(self) -> None:
        if self.controller is not None:
            _stop(self.controller)
            self.controller = None

    def restart_controller(self) -> None:
        self.stop_controller()
        self.start_controller()

    def stop_daemon(self, node: str, daemon: str) -> None:
        process = self.nodes[node].processes.pop(daemon, None)
        if process is not None:
            _stop(process)

    def start_daemon(self, node: str, daemon: str) -> None:
        self._start_node(self.nodes[node], (daemon,))

    def restart_speaker(self, node: str) -> None:
        """`sartd bgp` of the node stopped (SIGTERM) and started again."""
        self.stop_daemon(node, "bgp")
        self.start_daemon(node, "bgp")

    def restart_agent(self, node: str) -> None:
        self.stop_daemon(node, "agent")
        self.start_daemon(node, "agent")

    def cpu_seconds(self, node: str, daemon: str) -> float:
        """User + system CPU time of one of the node's daemons so far."""
        return cpu_seconds(self.nodes[node].processes[daemon].pid)

    # -- configuration ------------------------------------------------------------------------

    async def apply(self, documents: Iterable[Mapping[str, Any]]) -> None:
        """Create each object as `kubectl create` would (the kinds the original's samples
        use: Namespaces, Deployments, Services, Pods and sart's own)."""
        core, apps, custom = CoreV1Api(self._api), AppsV1Api(self._api), CustomObjectsApi(self._api)
        for doc in documents:
            if not doc:
                continue
            kind, body = doc["kind"], cast(Any, dict(doc))  # the client takes plain dicts
            namespace = (doc.get("metadata") or {}).get("namespace") or "default"
            if kind == "Namespace":
                await core.create_namespace(body)
            elif kind == "Deployment":
                await apps.create_namespaced_deployment(namespace, body)
            elif kind == "Service":
                await core.create_namespaced_service(namespace, body)
            elif kind == "Pod":
                await core.create_namespaced_pod(namespace, body)
            elif doc["apiVersion"] == f"{GROUP}/{VERSION}" and kind in SPEAKER_NAMESPACED:
                plural = kind.lower() + "s"
                await custom.create_namespaced_custom_object(
                    GROUP, VERSION, namespace, plural, body
                )
            elif doc["apiVersion"] == f"{GROUP}/{VERSION}":
                plural = kind.lower() + "s"
                await custom.create_cluster_custom_object(GROUP, VERSION, plural, body)
            else:
                raise ValueError(f"the lab cannot apply a {kind}")

    async def schedule(self, namespace: str, pod: str, node: str, ip: str) -> None:
        """Play scheduler and kubelet for a Pod: bind it to `node`, then report it Running
        and Ready with `ip`, as the kubelet would."""
        core = CoreV1Api(self._api)
        binding: Any = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": pod},
                   "target": {"apiVersion": "v1", "kind": "Node", "name": node}}  # fmt: skip
        await core.create_namespaced_pod_binding(pod, namespace, binding, _preload_content=False)
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        host = self.nodes[node].address
        status = {
            "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": host,
            "hostIPs": [{"ip": host}], "startTime": now,
            "conditions": [{"type": kind, "status": "True", "lastTransitionTime": now}
                           for kind in ("PodScheduled", "Initialized", "ContainersReady",
                                        "Ready")],
        }  # fmt: skip
        await core.patch_namespaced_pod_status(pod, namespace, {"status": status})

    def answer(self, address: str, port: int = 80) -> None:
        """Every node takes `address` as its own (on lo, as kube-proxy in IPVS mode does for
        a LoadBalancer address) and answers TCP on it with its name: a host-network backend."""
        for node in self.nodes.values():
            node.namespace.add_address("lo", f"{address}/32")
        self.serve(port)

    def serve(self, port: int = 80) -> None:
        """Every node answers TCP on `port` of all its addresses, IPv4 and IPv6, with its
        name (a host-network backend): what reaches it depends on which addresses it has."""
        for node in self.nodes.values():
            if port not in self._responders.setdefault(node.spec.name, set()):
                self._responders[node.spec.name].add(port)
                for host in ("0.0.0.0", "::"):
                    listener = listening_socket(node.namespace, host, port)
                    Responder(listener, node.spec.name.encode()).start()
                    self._listeners.append(listener)

    # -- teardown -----------------------------------------------------------------------------

    async def close(self) -> None:
        self.stop_controller()
        for node in self.nodes.values():
            for daemon in list(node.processes):
                self.stop_daemon(node.spec.name, daemon)
        for listener in self._listeners:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        self._listeners = []
        self._responders = {}
        try:
            await self._exit.aclose()
        finally:
            self.lab.close()


def _network(cidr: str) -> str:
    import netaddr  # noqa: PLC0415

    return str(netaddr.IPNetwork(cidr).cidr)


def _stop(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


class Responder(threading.Thread):
    """Accepts on a listening socket (made in a node's namespace) and answers each
    connection with a fixed text, then closes it."""

    def __init__(self, listener: socket.socket, text: bytes) -> None:
        super().__init__(daemon=True, name=f"responder-{text.decode()}")
        self.listener, self.text = listener, text

    def run(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with contextlib.suppress(OSError), conn:
                conn.sendall(self.text)


# -- probes -------------------------------------------------------------------------------------


@attrs.frozen
class Sample:
    at: float  # time.monotonic()
    ok: bool
    answer: str  # the node that answered, "" on failure


class TcpProbe(threading.Thread):
    """From inside a namespace, a TCP connection to address:port every `interval` seconds
    (each with a new source port, so a flow-hashing router spreads them over its next hops),
    recording which node answered or that none did within `timeout`. With a `request` (an
    HTTP GET, say) it sends that and takes the answer's last word (a page naming its pod) once
    the server closes; without one the server speaks first (`Responder`)."""

    def __init__(
        self,
        namespace: Namespace,
        address: str,
        port: int = 80,
        *,
        interval: float = 0.05,
        timeout: float = 0.2,
        request: bytes = b"",
    ) -> None:
        super().__init__(daemon=True, name=f"probe-{address}")
        self.namespace, self.address, self.port = namespace, address, port
        self.request = request
        self.interval, self.timeout = interval, timeout
        self.samples: list[Sample] = []
        self._halt = threading.Event()

    def run(self) -> None:
        enter(self.namespace)
        next_at = time.monotonic()
        while not self._halt.is_set():
            at = time.monotonic()
            try:
                with socket.create_connection((self.address, self.port), self.timeout) as conn:
                    conn.settimeout(self.timeout)
                    answer = self._answer(conn)
                self.samples.append(Sample(at, bool(answer), answer))
            except OSError:
                self.samples.append(Sample(at, False, ""))
            next_at += self.interval
            self._halt.wait(max(0.0, next_at - time.monotonic()))

    def _answer(self, conn: socket.socket) -> str:
        if not self.request:
            return conn.recv(64).decode()
        conn.sendall(self.request)
        received = b""
        while chunk := conn.recv(4096):
            received += chunk
        words = received.decode(errors="replace").split()
        return words[-1] if words else ""

    def stop(self) -> None:
        self._halt.set()
        self.join(5)

    def window(self, start: float, end: float) -> list[Sample]:
        return [s for s in list(self.samples) if start <= s.at <= end]


def longest_gap(samples: Sequence[Sample]) -> tuple[float, int]:
    """The longest run of failed probes: seconds from its first failure to the next success
    (to the last sample when none follows), and how many failed in all."""
    longest, failed, began = 0.0, 0, None
    for sample in samples:
        if not sample.ok:
            failed += 1
            began = sample.at if began is None else began
        elif began is not None:
            longest, began = max(longest, sample.at - began), None
    if began is not None and samples:
        longest = max(longest, samples[-1].at - began)
    return longest, failed


class RouteWatch(threading.Thread):
    """Polls where each spine sends a prefix, every `interval` seconds."""

    def __init__(self, spines: Iterable[LabSpine], prefix: str, interval: float = 0.05) -> None:
        super().__init__(daemon=True, name=f"routes-{prefix}")
        self.spines, self.prefix, self.interval = list(spines), prefix, interval
        self.samples: list[tuple[float, str, frozenset[str]]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            for spine in self.spines:
                with contextlib.suppress(Exception):  # a poll that fails is a missing sample
                    hops = frozenset(spine.nexthops(self.prefix))
                    self.samples.append((time.monotonic(), spine.spec.name, hops))
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join(5)

    def absent(self, spine: str, hop: str, start: float, end: float) -> float:
        """The longest time `hop` was missing from the spine's route in [start, end]
        (0.0 when every sample had it)."""
        longest, began = 0.0, None
        rows = [(t, h) for t, s, h in list(self.samples) if s == spine and start <= t <= end]
        for t, hops in rows:
            if hop not in hops:
                began = t if began is None else began
            elif began is not None:
                longest, began = max(longest, t - began), None
        if began is not None and rows:
            longest = max(longest, rows[-1][0] - began)
        return longest

    def seen(self, spine: str, start: float, end: float) -> set[frozenset[str]]:
        return {h for t, s, h in list(self.samples) if s == spine and start <= t <= end}


async def wait_for(check: Any, *, timeout: float = 60.0, interval: float = 0.1) -> Any:
    """Await `check()` (a coroutine function or a plain one) until it is truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"not reached within {timeout} s")
        await asyncio.sleep(interval)


# -- the original sart's e2e, on this lab -------------------------------------------------------

ORIGINAL_SAMPLES = """
# terassyi/sart manifests/sample/cluster_bgp.yaml
apiVersion: sart.terassyi.net/v1alpha2
kind: ClusterBGP
metadata:
  name: clusterbgp-sample-a
spec:
  nodeSelector:
    bgp: a
  asnSelector:
    from: label
  routerIdSelector:
    from: internalAddress
  speaker:
    path: 127.0.0.1:5000
  peers:
    - peerTemplateRef: bgppeertemplate-sample
      nodeBGPSelector:
        bgp: a
---
apiVersion: sart.terassyi.net/v1alpha2
kind: ClusterBGP
metadata:
  name: clusterbgp-sample-b
spec:
  nodeSelector:
    bgp: b
  asnSelector:
    from: label
  routerIdSelector:
    from: internalAddress
  speaker:
    path: 127.0.0.1:5000
---
# manifests/sample/peer_template.yaml
apiVersion: sart.terassyi.net/v1alpha2
kind: BGPPeerTemplate
metadata:
  name: bgppeertemplate-sample
spec:
  asn: 65000
  addr: 9.9.9.9
  groups:
    - to-route0
---
# manifests/sample/bgp_peer.yaml
apiVersion: sart.terassyi.net/v1alpha2
kind: BGPPeer
metadata:
  labels:
    bgp: b
    bgppeer.sart.terassyi.net/node: sart-control-plane
  name: bgppeer-sample-sart-cp
spec:
  addr: 9.9.9.9
  asn: 65000
  groups:
    - to-route0
  nodeBGPRef: sart-control-plane
  speaker:
    path: 127.0.0.1:5000
---
# manifests/sample/lb_address_pool.yaml
apiVersion: sart.terassyi.net/v1alpha2
kind: AddressPool
metadata:
  name: default-lb-pool
spec:
  cidr: 10.0.1.0/24
  type: service
  allocType: bit
  blockSize: 24
  autoAssign: true
---
apiVersion: sart.terassyi.net/v1alpha2
kind: AddressPool
metadata:
  name: non-default-lb-pool
spec:
  cidr: 10.0.100.0/24
  type: service
  allocType: bit
  blockSize: 24
  autoAssign: false
---
# manifests/sample/lb.yaml
apiVersion: v1
kind: Namespace
metadata:
  name: test
  labels:
    name: test
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app-cluster
  namespace: test
spec:
  replicas: 2
  selector:
    matchLabels:
      app: app-cluster
  template:
    metadata:
      labels:
        app: app-cluster
    spec:
      containers:
        - name: app
          image: nginx:latest
          ports:
            - containerPort: 80
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app-local
  namespace: test
spec:
  replicas: 2
  selector:
    matchLabels:
      app: app-local
  template:
    metadata:
      labels:
        app: app-local
    spec:
      containers:
        - name: app
          image: nginx:latest
          ports:
            - containerPort: 80
---
# LoadBalancer Service
apiVersion: v1
kind: Service
metadata:
  name: app-svc-cluster
  namespace: test
  annotations:
    sart.terassyi.net/address-pool: default-lb-pool
spec:
  type: LoadBalancer
  externalTrafficPolicy: Cluster
  selector:
    app: app-cluster
  ports:
    - name: http
      port: 80
      targetPort: 80
---
# LoadBalancer Service
apiVersion: v1
kind: Service
metadata:
  name: app-svc-local
  namespace: test
  annotations:
    sart.terassyi.net/address-pool: default-lb-pool
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  selector:
    app: app-local
  ports:
    - name: http
      port: 80
      targetPort: 80
---
apiVersion: v1
kind: Pod
metadata:
  name: curl
spec:
  containers:
    - name: curl
      image: curlimages/curl
      command: ["sleep", "infinity"]
"""
"""The original sart's manifests/sample (kustomization: cluster_bgp.yaml, peer_template.yaml,
bgp_peer.yaml, lb.yaml; and lb_address_pool.yaml), exactly as they are there."""

# The original's e2e (e2e/Makefile, lb mode): every node AS 65000 (iBGP with the router),
# the workers bgp=a, the control plane bgp=b. Three nodes here: the control plane and two
# workers (the original has a third worker, also bgp=a).
ASN_LABEL = "sart.terassyi.net/asn"
ORIGINAL_NODES = (
    NodeSpec(name="sart-control-plane", labels={"bgp": "b", ASN_LABEL: "65000"}),
    NodeSpec(name="sart-worker", labels={"bgp": "a", ASN_LABEL: "65000"}),
    NodeSpec(name="sart-worker2", labels={"bgp": "a", ASN_LABEL: "65000"}),
)
# Spine 0 is the original's router0 (FRR, AS 65000, 9.9.9.9 on a loopback, what the sample
# template names). The samples have one router; spine 1 is BIRD at 7.7.7.7, the address the
# original's cluster_bgp_c sample gives its second router, peered by one BGPPeer per node in
# the shape of the sample's bgp_peer.yaml (SPINE1_PEERS): a ClusterBGP cannot add it, as a
# node belongs to one ClusterBGP (the original too only adds peers when it creates a NodeBGP).
ORIGINAL_SPINES = (
    SpineSpec(name="spine0", address="9.9.9.9", asn=65000, kind="frr"),
    SpineSpec(name="spine1", address="7.7.7.7", asn=65000, kind="bird"),
)
# Where the samples' Deployments run (the lab is their scheduler and kubelet): app-cluster on
# both workers, app-local on one worker and the control plane, so that the Local Service is
# announced from two nodes of the three and the Cluster one from all three.
PLACEMENT = {
    "app-cluster": ("sart-worker", "sart-worker2"),
    "app-local": ("sart-worker", "sart-control-plane"),
}


def spine1_peers(nodes: Iterable[str]) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "BGPPeer",
            "metadata": {
                "name": f"bgppeer-{node}-spine1",
                "labels": {"bgppeer.sart.terassyi.net/node": node},
            },
            "spec": {
                "addr": "7.7.7.7",
                "asn": 65000,
                "groups": ["to-spine1"],
                "nodeBGPRef": node,
                "speaker": {"path": "127.0.0.1:5000"},
            },
        }
        for node in nodes
    ]


async def run_deployments(lab: ClusterLab, placement: Mapping[str, Sequence[str]]) -> None:
    """Bind each Deployment's pods (namespace `test`) to the nodes given, Running and Ready."""
    core = CoreV1Api(lab.api)
    for index, (app, nodes) in enumerate(sorted(placement.items())):

        async def pods(app: str = app, count: int = len(nodes)) -> list[Any] | None:
            found = await core.list_namespaced_pod("test", label_selector=f"app={app}")
            items = [p for p in found.items if p.metadata.deletion_timestamp is None]
            return items if len(items) >= count else None

        listed = await wait_for(pods)
        for number, (pod, node) in enumerate(zip(listed, nodes, strict=False)):
            if pod.spec.node_name:
                continue
            await lab.schedule("test", pod.metadata.name, node, f"10.244.{index}.{number + 10}")


async def service_address(lab: ClusterLab, name: str, namespace: str = "test") -> str:
    core = CoreV1Api(lab.api)

    async def address() -> str | None:
        got = await core.read_namespaced_service(name, namespace)
        ingress = got.status.load_balancer.ingress if got.status.load_balancer else None
        return str(ingress[0].ip) if ingress else None

    result: str = await wait_for(address)
    return result
