"""A real Kubernetes node for tests and the lab: containerd, runc and a kubelet (and optionally
kube-proxy) in a network namespace of their own, registered with a ``ControlPlane``.

The binaries come from ``scripts/k8s-node build`` (kubelet, kube-scheduler, kube-proxy from Go
modules at the control plane's Kubernetes version, a static pause program; containerd and runc
from Debian packages). Nothing is pulled: images are imported into the node's containerd
(``ctr -n k8s.io images import``) from docker-archive tarballs, such as scripts/build-image's,
and the sandbox ("pause") image is assembled here with ``sart.testing.oci``.

Layout of one node (``Node.start``):

- a network namespace ``sart-<name>`` joined to the host by a veth pair (``host_address`` on
  the host side, ``address`` on the node's, the node's default route through the host side);
  containerd, the kubelet, kube-proxy and so every ``hostNetwork`` pod and every pod's
  interfaces live in it. The apiserver must listen where the node reaches it
  (``ControlPlane(bind_address="0.0.0.0")``);
- a DNAT rule in the namespace from the ``kubernetes`` Service (10.0.0.1:443) to the apiserver,
  what kube-proxy does on a real node for the pods' in-cluster configuration; without kube-proxy
  it is the only Service rule;
- a directory (containerd's root and state, its socket, the kubelet's root dir and
  configuration, CNI ``bin/`` and ``net.d/`` directories, logs);
- a UTS namespace whose host name is the node's name (``hostNetwork`` pods see it: two
  sart-controller replicas on two nodes would otherwise both be ``<machine>-1`` and both lead);
- a mount namespace for containerd, the kubelet and kube-proxy (slave of the host's) where
  ``/run/sart``, ``/opt/cni/bin`` and ``/etc/cni/net.d`` are the node's own directories, so the
  shipped manifests apply unchanged and several nodes' agents and plugins never mix;
- containerd: ``restrict_oom_score_adj`` (root here lacks CAP_SYS_RESOURCE; runc 1.1.5 would
  fail with "can't get final child's PID from pipe: EOF"), the locally imported sandbox image,
  the node's CNI directories with the reference ``loopback`` plugin in ``bin/`` (containerd 1.6
  runs it before the configured network);
- the kubelet: cgroupfs driver under a cgroup of the node's own (``/sart-<name>``; a second
  kubelet on the machine would otherwise kill the first one's pods as orphaned cgroups), cgroup
  v1 allowed, swap allowed, no eviction, no node allocatable enforcement, anonymous access with
  AlwaysAllow (a lab), ``--node-ip`` the node's non-loopback address (logs and exec need one),
  its pods' logs in the node's directory (``podLogsDir``: in a shared /var/log/pods each
  kubelet's garbage collection removes the other nodes' pods' logs, and ``kubectl logs`` of
  them fails).

Stop order (``Node.stop``): kube-proxy, the kubelet, the containers' shims (with the
containers), containerd; then the mounts under the directory, the pods' network namespaces, the
node's cgroups, its namespace and its directory are removed.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import netaddr
import yaml

from sart.testing.controlplane import ControlPlane, _kill_groups, _tail
from sart.testing.netns import Namespace
from sart.testing.oci import ImageConfig, build_image, write_archive

__all__ = [
    "BUILD_SCRIPT",
    "PAUSE_IMAGE",
    "Node",
    "NodeError",
    "busybox_image",
    "find_node_binaries",
    "image_cache",
    "missing_prerequisites",
    "pause_image",
]

BUILD_SCRIPT: Final = Path(__file__).resolve().parents[3] / "scripts" / "k8s-node"
CNI_TOOLS: Final = Path(__file__).resolve().parents[3] / "scripts" / "cni-tools"
BINARIES: Final = ("kubelet", "kube-scheduler", "kube-proxy", "pause")
PAUSE_IMAGE: Final = "localhost/sart/pause:1"
"""The sandbox image containerd is told to use; imported, never pulled."""
BUSYBOX_IMAGE: Final = "localhost/sart/busybox:1"
KUBERNETES_SERVICE: Final = ("10.0.0.1", 443)
CLUSTER_DNS: Final = "10.0.0.10"
STOP_TIMEOUT: Final = 15.0
CNI_HOST_DIRS: Final = {
    "run": Path("/run/sart"),
    "bin": Path("/opt/cni/bin"),
    "conf": Path("/etc/cni/net.d"),
}
"""Paths that are the node's own directories inside its mount namespace."""


class NodeError(RuntimeError):
    """The node could not be built, started or reached."""


def _run(*argv: str, check: bool = True, timeout: float = 120.0) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=timeout)
    if check and done.returncode != 0:
        raise NodeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def _script_dir(script: Path, *, build: bool) -> Path:
    found = subprocess.run([str(script), "bin-dir"], capture_output=True, text=True, check=False)
    if found.returncode != 0 and build:
        if subprocess.run([str(script), "build"], check=False).returncode != 0:
            raise NodeError(f"{script} build failed (its output is above)")
        found = subprocess.run(
            [str(script), "bin-dir"], capture_output=True, text=True, check=False
        )
    if found.returncode != 0:
        raise NodeError(f"{found.stderr.strip()} (run {script} build)")
    return Path(found.stdout.strip())


def find_node_binaries(*, build: bool = True) -> Path:
    """The directory of kubelet, kube-scheduler, kube-proxy and pause (scripts/k8s-node),
    built first when missing and ``build`` is true."""
    return _script_dir(BUILD_SCRIPT, build=build)


def missing_prerequisites() -> list[str]:
    """What this machine lacks for a real node (empty when it can run one)."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root (network namespaces, mounts, containers)")
    for program in ("containerd", "containerd-shim-runc-v2", "runc", "ctr", "ip", "nsenter"):
        if shutil.which(program) is None:
            missing.append(f"{program} (scripts/k8s-node build installs containerd and runc)")
    if not Path("/sys/fs/cgroup").is_dir():
        missing.append("a cgroup file system at /sys/fs/cgroup")
    return missing


def image_cache(bin_dir: Path) -> Path:
    """Where the pause and busybox images are kept (beside the node's binaries)."""
    return bin_dir.parent / "images"


def _layer_image(root: Path, out: Path, tag: str, config: ImageConfig) -> Path:
    """An image of one directory as a docker-archive tarball, rebuilt only when missing."""
    archive = out / "image.tar"
    if not archive.is_file():
        layout = out / "layout"
        shutil.rmtree(layout, ignore_errors=True)
        build_image([root], layout, tag=tag, config=config)
        write_archive(layout, archive)
    return archive


def pause_image(bin_dir: Path, cache: Path) -> Path:
    """The sandbox image: the static pause program as /pause."""
    out = cache / "pause"
    root = out / "rootfs"
    if not (out / "image.tar").is_file():
        shutil.rmtree(out, ignore_errors=True)
        root.mkdir(parents=True)
        shutil.copy2(bin_dir / "pause", root / "pause")
    return _layer_image(root, out, PAUSE_IMAGE, ImageConfig(entrypoint=("/pause",)))


def busybox_image(cache: Path) -> Path:
    """A small image for test pods: Debian's static busybox as /bin/busybox, with /bin/sh,
    sleep, httpd, ip, nc, wget and cat linked to it, and /www/index.html ("sart")."""
    busybox = Path("/bin/busybox")
    if not busybox.is_file():
        raise NodeError("no /bin/busybox (apt-get install busybox-static)")
    out = cache / "busybox"
    if not (out / "image.tar").is_file():
        shutil.rmtree(out, ignore_errors=True)
        root = out / "rootfs"
        (root / "bin").mkdir(parents=True)
        (root / "www").mkdir()
        (root / "tmp").mkdir()
        shutil.copy2(busybox, root / "bin" / "busybox")
        for name in ("sh", "sleep", "httpd", "ip", "nc", "wget", "cat", "hostname"):
            (root / "bin" / name).symlink_to("busybox")
        (root / "www" / "index.html").write_text("sart\n")
    return _layer_image(
        out / "rootfs", out, BUSYBOX_IMAGE, ImageConfig(cmd=("/bin/sh",), env=("PATH=/bin",))
    )


def _kubeconfig(server: str, plane: ControlPlane) -> dict[str, object]:
    """The admin kubeconfig pointed at ``server``, checking the certificate as ``kubernetes``."""
    config = yaml.safe_load(plane.kubeconfig.read_text())
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = server
        cluster["cluster"]["tls-server-name"] = "kubernetes"
    return dict(config)


class Node:
    """One node: containerd and a kubelet (and kube-proxy if asked) in a network namespace.

    ``address``/``host_address`` are the two ends of the veth pair (a /30 of ``link``).
    ``images`` are docker-archive tarballs imported into containerd before the kubelet starts.
    """

    def __init__(
        self,
        plane: ControlPlane,
        name: str = "node-1",
        *,
        link: str = "172.31.250.0/30",
        images: Sequence[Path] = (),
        kube_proxy: bool = False,
        scheduler: bool = True,
        bin_dir: Path | None = None,
        timeout: float = 90.0,
    ) -> None:
        network = netaddr.IPNetwork(link)
        hosts = list(network.iter_hosts())
        self.plane = plane
        self.name = name
        self.host_address = str(hosts[0])
        self.address = str(hosts[1])
        self.prefix = network.prefixlen
        self.images = tuple(images)
        self.kube_proxy = kube_proxy
        self.scheduler = scheduler
        self.timeout = timeout
        self.netns = f"sart-{name}"[:15]
        self.host_veth = f"sh-{name}"[:15]
        self._bin_dir = bin_dir
        self._directory: Path | None = None
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self.times: dict[str, float] = {}

    # The public view -------------------------------------------------------------------------

    @property
    def bin_dir(self) -> Path:
        if self._bin_dir is None:
            self._bin_dir = find_node_binaries()
        return self._bin_dir

    @property
    def directory(self) -> Path:
        if self._directory is None:
            raise NodeError("the node is not running")
        return self._directory

    @property
    def logs(self) -> Path:
        return self.directory / "logs"

    @property
    def cni_bin_dir(self) -> Path:
        """The node's CNI plugin directory (what /opt/cni/bin is on a real node)."""
        return self.directory / "cni" / "bin"

    @property
    def cni_conf_dir(self) -> Path:
        """The node's CNI configuration directory (/etc/cni/net.d on a real node)."""
        return self.directory / "cni" / "net.d"

    @property
    def containerd_socket(self) -> Path:
        return self.directory / "containerd.sock"

    @property
    def namespace(self) -> Namespace:
        """The node's network namespace, for links to other namespaces (a router's) and its
        routes. A link made to it goes away with it; ``stop`` deletes it, not the caller."""
        return Namespace(self.netns)

    @property
    def pids(self) -> dict[str, int]:
        return {name: process.pid for name, process in self._processes.items()}

    def exited(self) -> list[str]:
        return [name for name, process in self._processes.items() if process.poll() is not None]

    def exec(self, *argv: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run a command in the node's network namespace (on the node, as it were)."""
        return subprocess.run(
            ["nsenter", f"--net=/run/netns/{self.netns}", *argv],
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )

    def ctr(self, *argv: str, timeout: float = 300.0) -> str:
        return _run(
            "ctr", "--address", str(self.containerd_socket), "-n", "k8s.io", *argv,
            timeout=timeout,
        )  # fmt: skip

    def __enter__(self) -> Node:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # Start -----------------------------------------------------------------------------------

    def start(self) -> dict[str, float]:
        """Start the node and wait until its Node is registered; returns seconds per phase.
        It turns Ready once a CNI configuration is in ``cni_conf_dir``."""
        if self._directory is not None:
            raise NodeError("the node is already running")
        missing = missing_prerequisites()
        if missing:
            raise NodeError(f"cannot run a node here: {'; '.join(missing)}")
        bin_dir = self.bin_dir
        self._directory = Path(tempfile.mkdtemp(prefix=f"sart-{self.name}-"))
        atexit.register(self.stop)
        try:
            self._start(bin_dir)
        except BaseException:
            self.stop()
            raise
        return self.times

    def _phase(self, name: str, began: float) -> None:
        self.times[name] = time.monotonic() - began

    def _start(self, bin_dir: Path) -> None:
        d = self.directory
        for sub in (
            "logs",
            "pod-logs",
            "cni/bin",
            "cni/net.d",
            "kubelet",
            "containerd/root",
            "images",
        ):
            (d / sub).mkdir(parents=True)
        began = time.monotonic()
        self._network()
        self._cgroups()
        self._mount_namespace()
        self._phase("network", began)

        began = time.monotonic()
        cni_tools = _script_dir(CNI_TOOLS, build=True)
        shutil.copy2(cni_tools / "loopback", self.cni_bin_dir / "loopback")
        (d / "containerd.toml").write_text(self._containerd_config())
        self._spawn(
            "containerd", "containerd", "--config", str(d / "containerd.toml"), "--log-level=warn"
        )
        self._wait("containerd", lambda: self.containerd_socket.is_socket() and self._ctr_ok())
        self._phase("containerd", began)

        began = time.monotonic()
        for archive in (pause_image(bin_dir, image_cache(bin_dir)), *self.images):
            self.ctr("images", "import", "--no-unpack", str(archive))
        self._phase("images", began)

        began = time.monotonic()
        server = f"https://{self.host_address}:{self.plane.server.rpartition(':')[2]}"
        (d / "kubeconfig").write_text(yaml.safe_dump(_kubeconfig(server, self.plane)))
        (d / "kubelet.yaml").write_text(yaml.safe_dump(self._kubelet_config()))
        self._spawn(
            "kubelet",
            str(bin_dir / "kubelet"),
            f"--config={d / 'kubelet.yaml'}",
            f"--kubeconfig={d / 'kubeconfig'}",
            f"--root-dir={d / 'kubelet'}",
            f"--cert-dir={d / 'kubelet' / 'pki'}",
            f"--hostname-override={self.name}",
            f"--node-ip={self.address}",
            "--v=1",
        )
        if self.scheduler:
            self._spawn(
                "kube-scheduler",
                str(bin_dir / "kube-scheduler"),
                f"--kubeconfig={d / 'kubeconfig'}",
                "--leader-elect=false",
                "--secure-port=0",
                "--v=1",
                netns=False,
            )
        if self.kube_proxy:
            (d / "kube-proxy.yaml").write_text(yaml.safe_dump(self._kube_proxy_config()))
            self._spawn(
                "kube-proxy",
                str(bin_dir / "kube-proxy"),
                f"--config={d / 'kube-proxy.yaml'}",
                f"--hostname-override={self.name}",
                "--v=1",
            )
        # Registered, not Ready: the container runtime reports its network ready only once a
        # CNI configuration exists, which the CNI's own DaemonSet (a host-network pod) writes.
        self._wait("kubelet", self._node_registered)
        self._phase("kubelet", began)

    def _network(self) -> None:
        ns, veth = self.netns, self.host_veth
        _run("ip", "netns", "add", ns)
        _run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        _run("ip", "address", "add", f"{self.host_address}/{self.prefix}", "dev", veth)
        _run("ip", "link", "set", veth, "up")
        n = ("ip", "-n", ns)
        _run(*n, "address", "add", f"{self.address}/{self.prefix}", "dev", "eth0")
        _run(*n, "link", "set", "lo", "up")
        _run(*n, "link", "set", "eth0", "up")
        _run(*n, "route", "add", "default", "via", self.host_address)
        # What kube-proxy does for the `kubernetes` Service: pods on the host network (sart's)
        # reach the apiserver through its ClusterIP with their in-cluster configuration.
        host, port = KUBERNETES_SERVICE
        apiserver = f"{self.host_address}:{self.plane.server.rpartition(':')[2]}"
        nat = ("nsenter", f"--net=/run/netns/{ns}", "iptables", "-t", "nat", "-A", "OUTPUT")
        _run(*nat, "-d", host, "-p", "tcp", "--dport", str(port), "-j", "DNAT",
             "--to-destination", apiserver)  # fmt: skip
        # Packets the node forwards (pods' traffic) must be routed.
        self.exec("sysctl", "-qw", "net.ipv4.ip_forward=1")

    @property
    def mount_namespace(self) -> Path:
        """The node's mount namespace (a bind-mounted nsfs file): containerd, the kubelet and
        kube-proxy share it, with the node's own /run/sart."""
        return self.directory / "mnt" / "ns"

    @property
    def uts_namespace(self) -> Path:
        """The node's UTS namespace (a bind-mounted nsfs file), its host name the node's name:
        what ``hostNetwork`` pods see as their host name. Two nodes sharing the machine's
        would give both sart-controller replicas (host network, identity ``<hostname>-<pid>``,
        pid 1 in their containers) the same identity, and both would lead."""
        return self.directory / "mnt" / "uts"

    def _mount_namespace(self) -> None:
        """A mount namespace of the node's own, its mounts slaves of the host's, where
        /run/sart (the DaemonSet's hostPath for the agents' sockets, which sart-cni on the
        host reaches) is a directory of the node's: two nodes on one machine would otherwise
        share it, and the last agent started would answer every node's sart-cni."""
        holder = self.mount_namespace.parent
        holder.mkdir()
        _run("mount", "--bind", str(holder), str(holder))
        _run("mount", "--make-private", str(holder))
        self.mount_namespace.touch()
        _run("unshare", f"--mount={self.mount_namespace}", "--propagation", "slave", "true")
        self.uts_namespace.touch()
        _run("unshare", f"--uts={self.uts_namespace}", "hostname", self.name)
        run_sart = self.directory / "run-sart"
        run_sart.mkdir()
        # The node's own directories where the DaemonSet's hostPaths and containerd look:
        # the shipped manifests apply unchanged and each node gets its own plugin and conflist.
        for source, target in (
            (run_sart, CNI_HOST_DIRS["run"]),
            (self.cni_bin_dir, CNI_HOST_DIRS["bin"]),
            (self.cni_conf_dir, CNI_HOST_DIRS["conf"]),
        ):
            target.mkdir(parents=True, exist_ok=True)  # a mount point (empty on the host)
            _run("nsenter", f"--mount={self.mount_namespace}", "mount", "--bind", str(source),
                 str(target))  # fmt: skip
        # The pods' namespaces containerd mounts there reach the agent's container
        # (HostToContainer): shared within the node, still not with the host.
        Path("/run/netns").mkdir(exist_ok=True)
        _run("nsenter", f"--mount={self.mount_namespace}", "mount", "--make-shared", "/run/netns")

    @property
    def cgroup_root(self) -> str:
        """The kubelet's cgroupRoot: each node's pods under a cgroup of its own, or a second
        kubelet on the machine kills the first one's pods as orphaned cgroups."""
        return f"/sart-{self.name}"

    def _cgroup_dirs(self) -> list[Path]:
        """The node's cgroup in every hierarchy (runc also makes one in cgroup v2's)."""
        hierarchies = sorted(Path("/sys/fs/cgroup").iterdir())
        return [h / self.cgroup_root.lstrip("/") for h in hierarchies if h.is_dir()]

    def _cgroups(self) -> None:
        for directory in self._cgroup_dirs():
            if directory.parent.name == "unified":
                continue
            directory.mkdir(exist_ok=True)
            if directory.parent.name == "cpuset":  # an empty cpuset admits no process
                for name in ("cpuset.cpus", "cpuset.mems"):
                    (directory / name).write_text((directory.parent / name).read_text())

    def _remove_cgroups(self) -> None:
        for root in self._cgroup_dirs():
            if not root.is_dir():
                continue
            found = [Path(d) for d, _, _ in os.walk(root)]
            for directory in sorted(found, key=lambda p: len(p.parts), reverse=True):
                with contextlib.suppress(OSError):
                    directory.rmdir()

    def _containerd_config(self) -> str:
        d = self.directory
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        return "\n".join(
            [
                "version = 2",
                f'root = "{d / "containerd" / "root"}"',
                f'state = "{d / "containerd" / "state"}"',
                "[grpc]",
                f'  address = "{self.containerd_socket}"',
                "[ttrpc]",
                f'  address = "{d / "containerd-ttrpc.sock"}"',
                f"[{cri}]",
                f'  sandbox_image = "{PAUSE_IMAGE}"',
                "  restrict_oom_score_adj = true",
                "  enable_cdi = false",
                f"[{cri}.containerd]",
                '  snapshotter = "overlayfs"',
                f"[{cri}.containerd.runtimes.runc]",
                '  runtime_type = "io.containerd.runc.v2"',
                f"[{cri}.cni]",
                f'  bin_dir = "{CNI_HOST_DIRS["bin"]}"',
                f'  conf_dir = "{CNI_HOST_DIRS["conf"]}"',
                "",
            ]
        )

    def _kubelet_config(self) -> dict[str, object]:
        return {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": self.cgroup_root,
            "podLogsDir": str(self.directory / "pod-logs"),
            "failCgroupV1": False,
            "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "enforceNodeAllocatable": [],
            "localStorageCapacityIsolation": False,
            "evictionHard": {},
            "resolvConf": "",
            "clusterDNS": [CLUSTER_DNS],
            "clusterDomain": "cluster.local",
            "address": self.address,
            "readOnlyPort": 0,
            "healthzPort": 0,
            "authentication": {
                "anonymous": {"enabled": True},
                "webhook": {"enabled": False},
                "x509": {"clientCAFile": str(self.plane.directory / "ca.crt")},
            },
            "authorization": {"mode": "AlwaysAllow"},
            "serializeImagePulls": False,
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "nodeStatusReportFrequency": "10s",
        }

    def _kube_proxy_config(self) -> dict[str, object]:
        return {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "mode": "iptables",
            "clientConnection": {"kubeconfig": str(self.directory / "kubeconfig")},
            "hostnameOverride": self.name,
            "bindAddress": self.address,
            "healthzBindAddress": "",
            "metricsBindAddress": "",
            "conntrack": {"maxPerCore": 0},
            "clusterCIDR": "",
        }

    def _ctr_ok(self) -> bool:
        done = subprocess.run(
            ["ctr", "--address", str(self.containerd_socket), "version"],
            capture_output=True,
            check=False,
        )
        return done.returncode == 0

    def _node_registered(self) -> bool:
        return self.plane._get(f"/api/v1/nodes/{self.name}") is not None

    def ready(self) -> bool:
        """The Node's Ready condition is True (the runtime's network is ready too)."""
        node = self.plane._get(f"/api/v1/nodes/{self.name}")
        if node is None:
            return False
        conditions = json.loads(node).get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def _spawn(self, name: str, *argv: str, netns: bool = True) -> None:
        command = (
            [
                "nsenter",
                f"--net=/run/netns/{self.netns}",
                f"--mount={self.mount_namespace}",
                f"--uts={self.uts_namespace}",
                *argv,
            ]
            if netns
            else list(argv)
        )
        with (self.logs / f"{name}.log").open("ab") as log:
            self._processes[name] = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _wait(self, name: str, ready: object) -> None:
        assert callable(ready)
        deadline = time.monotonic() + self.timeout
        process = self._processes[name]
        while not ready():
            if process.poll() is not None:
                raise NodeError(
                    f"{name} exited with status {process.returncode} while starting;"
                    f" last lines of its log:\n{_tail(self.logs / f'{name}.log')}"
                )
            if time.monotonic() > deadline:
                raise NodeError(
                    f"{name} was not ready after {self.timeout:.0f} s;"
                    f" last lines of its log:\n{_tail(self.logs / f'{name}.log')}"
                )
            time.sleep(0.2)

    # Stop ------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop everything the node started and remove its namespace and directory. Safe to
        call twice, or after a failed start."""
        atexit.unregister(self.stop)
        for name in ("kube-proxy", "kube-scheduler", "kubelet"):
            process = self._processes.pop(name, None)
            if process is not None and process.poll() is None:
                _kill_groups([process.pid], timeout=STOP_TIMEOUT)
        directory = self._directory
        containerd = self._processes.pop("containerd", None)
        namespaces = self._pod_namespaces() if containerd is not None else []
        if directory is not None:
            self._kill_shims(directory)
        if containerd is not None and containerd.poll() is None:
            _kill_groups([containerd.pid], timeout=STOP_TIMEOUT)
        for process in self._processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=STOP_TIMEOUT)
        self._processes.clear()
        if directory is not None:
            self._unmount(directory)
        for name in namespaces:  # the pods' namespaces, which a CNI DEL would have removed
            # mounted in the node's mount namespace, gone with it: only the file is left
            with contextlib.suppress(OSError):
                (Path("/run/netns") / name).unlink()
        self._remove_cgroups()
        _run("ip", "link", "delete", self.host_veth, check=False)
        _run("ip", "netns", "delete", self.netns, check=False)
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)
            self._directory = None

    def _pod_namespaces(self) -> list[str]:
        """The network namespaces (under /run/netns) of this containerd's pod sandboxes."""
        names = []
        with contextlib.suppress(NodeError, subprocess.TimeoutExpired):
            for container in self.ctr("containers", "list", "-q", timeout=10).split():
                with contextlib.suppress(NodeError, ValueError, KeyError, TypeError):
                    info = json.loads(self.ctr("containers", "info", container, timeout=10))
                    for namespace in info["Spec"]["linux"]["namespaces"]:
                        path = namespace.get("path", "")
                        if namespace["type"] == "network" and "/netns/" in path:
                            names.append(path.rpartition("/")[2])
        return sorted(set(names))

    def resident_memory(self) -> dict[str, float]:
        """MiB of resident memory: containerd, the kubelet, kube-proxy, kube-scheduler, and
        "pods" (the shims and every process under them)."""
        return {name: rss for name, (rss, _) in self._usage().items()}

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) spent so far, by the same components as
        ``resident_memory``, each with its exited and waited-for children."""
        return {name: cpu for name, (_, cpu) in self._usage().items()}

    def _usage(self) -> dict[str, tuple[float, float]]:
        """(MiB resident, CPU seconds) of each component's process tree."""
        children: dict[int, list[int]] = {}
        usage: dict[int, tuple[float, float]] = {}
        shims = []
        marker = str(self.directory).encode()
        tick = os.sysconf("SC_CLK_TCK")
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            with contextlib.suppress(OSError, ValueError, IndexError):
                status = (proc / "status").read_text()
                fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
                pid = int(proc.name)
                # after the command's ")": utime, stime, cutime, cstime are 11 to 14
                times = (proc / "stat").read_text().rpartition(")")[2].split()[11:15]
                children.setdefault(int(fields["PPid"]), []).append(pid)
                usage[pid] = (
                    int(fields.get("VmRSS", "0 kB").split()[0]) / 1024,
                    sum(int(t) for t in times) / tick,
                )
                cmdline = (proc / "cmdline").read_bytes()
                if b"containerd-shim" in cmdline and marker in cmdline:
                    shims.append(pid)

        def tree(pid: int) -> tuple[float, float]:
            below = [tree(child) for child in children.get(pid, [])]
            rss, cpu = usage.get(pid, (0.0, 0.0))
            return rss + sum(r for r, _ in below), cpu + sum(c for _, c in below)

        found = {name: tree(process.pid) for name, process in self._processes.items()}
        pods = [tree(pid) for pid in shims]
        found["pods"] = (sum(r for r, _ in pods), sum(c for _, c in pods))
        return found

    @staticmethod
    def _kill_shims(directory: Path) -> None:
        """The containers' shims (and with them the containers): every process whose command
        line names this node's containerd state (``-address .../containerd.sock``)."""
        marker = str(directory).encode()
        shims = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                cmdline = (proc / "cmdline").read_bytes()
                if b"containerd-shim" in cmdline and marker in cmdline:
                    shims.append(int(proc.name))
        for pid in shims:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        # the shims' children (containers) are gone with their process groups' leaders' kills
        time.sleep(0.5 if shims else 0)

    @staticmethod
    def _unmount(directory: Path) -> None:
        """Mounts under the directory (overlay roots, pods' volumes), deepest first."""
        prefix = str(directory)
        mounts = []
        with contextlib.suppress(OSError):
            for line in Path("/proc/self/mounts").read_text().splitlines():
                target = line.split()[1].replace("\\040", " ")
                if target.startswith(prefix):
                    mounts.append(target)
        for target in sorted(mounts, key=len, reverse=True):
            _run("umount", "-l", target, check=False)
