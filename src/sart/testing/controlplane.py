"""A real Kubernetes control plane for tests and the lab: etcd, kube-apiserver and
kube-controller-manager as local processes, with no mocks.

The binaries are built from Go modules by ``scripts/k8s-control-plane build`` into a cache
outside the work tree. ``ControlPlane`` starts the three processes on free loopback ports in a
temporary directory (certificates, etcd data, logs, kubeconfig all live there), waits until the
apiserver answers ``/readyz`` and the controller-manager has created ServiceAccount
``default/default``, and stops everything again: processes first (each in its own process group),
then the directory. A small reaper process watches the owner through a pipe, so a test run that
is killed outright (SIGKILL, a crash) still leaves nothing behind.

For fault tests, components can be stopped and started again while the directory (etcd data,
certificates, kubeconfig) and the ports stay: a client keeps its kubeconfig and reconnects to the
same address (``stop_components``, ``start_components``, ``restart``), or frozen in place with
SIGSTOP/SIGCONT (``pause``, ``resume``).

There is no kubelet, scheduler or node-lifecycle controller: ``create_node`` and
``create_ready_pod`` make Node and Pod objects that look like a running cluster's, and the real
endpointslice controller turns Services over such pods into EndpointSlices.

By hand: ``scripts/k8s-control-plane run`` (or ``python -m sart.testing.controlplane``) starts it
in the foreground and prints the kubeconfig path; Ctrl-C stops it. See docs/development.md.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Final, TypeVar

import attrs
import yaml

if TYPE_CHECKING:
    from kubernetes_asyncio.client import ApiClient

__all__ = [
    "COMPONENTS",
    "CONTROLLERS",
    "ControlPlane",
    "ControlPlaneError",
    "StartTimes",
    "create_namespace",
    "create_node",
    "create_ready_pod",
    "delete_namespace",
    "find_binaries",
    "main",
    "unique_name",
    "wait_until",
]

T = TypeVar("T")

BIN_DIR_ENV: Final = "SART_K8S_BIN_DIR"
"""Directory holding etcd, kube-apiserver and kube-controller-manager; skips the build script."""
BINARIES: Final = ("etcd", "kube-apiserver", "kube-controller-manager")
COMPONENTS: Final = BINARIES
"""The components in start order (each needs the one before it); they stop the other way."""
BUILD_SCRIPT: Final = Path(__file__).resolve().parents[3] / "scripts" / "k8s-control-plane"

CONTROLLERS: Final = (
    "serviceaccount-controller",  # the `default` ServiceAccount of every namespace
    "serviceaccount-token-controller",  # legacy token Secrets, when a test creates one
    "root-ca-certificate-publisher-controller",  # the kube-root-ca.crt ConfigMap
    "endpointslice-controller",  # Services with selectors -> EndpointSlices
    "endpointslice-mirroring-controller",
    "endpoints-controller",
    "namespace-controller",  # namespace deletion actually finishes
    "garbage-collector-controller",  # ownerReferences cascade
)
"""The controllers the harness runs. Never all of them: without kubelets the node-lifecycle
controller would mark every Node unreachable and taint-eviction would delete the pods."""

ADMIN_USER: Final = "sart-admin"
SERVICE_CLUSTER_IP_RANGE: Final = "10.0.0.0/16"
SERVICE_ACCOUNT_ISSUER: Final = "https://kubernetes.default.svc.cluster.local"
STOP_TIMEOUT: Final = 10.0
POLL_INTERVAL: Final = 0.1


class ControlPlaneError(RuntimeError):
    """The control plane could not be built, started or reached."""


@attrs.frozen
class StartTimes:
    """Seconds each start phase took, measured with a monotonic clock."""

    certificates: float
    etcd: float
    apiserver: float
    controller_manager: float

    @property
    def total(self) -> float:
        return self.certificates + self.etcd + self.apiserver + self.controller_manager

    def __str__(self) -> str:
        return (
            f"{self.total:.1f} s (certificates {self.certificates:.2f} s, etcd {self.etcd:.1f} s,"
            f" kube-apiserver {self.apiserver:.1f} s,"
            f" kube-controller-manager {self.controller_manager:.1f} s)"
        )


# --- binaries ----------------------------------------------------------------------------------


def _has_binaries(directory: Path) -> bool:
    return all(os.access(directory / name, os.X_OK) for name in BINARIES)


def find_binaries(*, build: bool = True) -> Path:
    """The directory with the three binaries: ``$SART_K8S_BIN_DIR`` if set, else the build
    script's cache, built first when ``build`` is true and the cache has none (5-15 minutes
    on 2 cores the first time; a no-op afterwards)."""
    explicit = os.environ.get(BIN_DIR_ENV)
    if explicit:
        if not _has_binaries(Path(explicit)):
            raise ControlPlaneError(f"${BIN_DIR_ENV}={explicit} lacks one of {', '.join(BINARIES)}")
        return Path(explicit)
    if not BUILD_SCRIPT.is_file():
        raise ControlPlaneError(
            f"{BUILD_SCRIPT} not found (sart is not installed from a checkout):"
            f" set ${BIN_DIR_ENV} to a directory with {', '.join(BINARIES)}"
        )
    found = subprocess.run(
        [str(BUILD_SCRIPT), "bin-dir"], capture_output=True, text=True, check=False
    )
    if found.returncode != 0 and build:
        # Progress goes straight to our stderr: a cold build is long and should show it.
        if subprocess.run([str(BUILD_SCRIPT), "build"], check=False).returncode != 0:
            raise ControlPlaneError(f"{BUILD_SCRIPT} build failed (its output is above)")
        found = subprocess.run(
            [str(BUILD_SCRIPT), "bin-dir"], capture_output=True, text=True, check=False
        )
    if found.returncode != 0:
        raise ControlPlaneError(
            f"no control-plane binaries: {found.stderr.strip()} (run {BUILD_SCRIPT} build)"
        )
    return Path(found.stdout.strip())


# --- certificates ------------------------------------------------------------------------------

_OPENSSL_CONFIG = "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\n"
_EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-noenc")
_LEAF = (
    "-addext",
    "basicConstraints=critical,CA:FALSE",
    "-addext",
    "keyUsage=critical,digitalSignature",
)


def _openssl(directory: Path, *args: str) -> None:
    done = subprocess.run(
        ["openssl", *args], cwd=directory, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise ControlPlaneError(f"openssl {' '.join(args)} failed: {done.stderr.strip()}")


def _write_certificates(directory: Path) -> None:
    """A throw-away CA; the apiserver serving certificate (127.0.0.1, localhost); the admin client
    certificate (O=system:masters, so RBAC never gets in its way); the service-account key pair."""
    if shutil.which("openssl") is None:
        raise ControlPlaneError("the openssl command is needed (apt-get install openssl)")
    config = directory / "openssl.cnf"
    config.write_text(_OPENSSL_CONFIG)
    req = ("req", "-config", config.name, "-x509", "-days", "3650")
    signed = ("-CA", "ca.crt", "-CAkey", "ca.key")
    _openssl(directory, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", "ca.key")  # fmt: skip
    _openssl(directory, *req, "-new", "-key", "ca.key", "-subj", "/CN=sart-test-ca",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", "ca.crt")  # fmt: skip
    # 10.0.0.1: the `kubernetes` Service's ClusterIP, which pods on a real node (sart.testing.node)
    # reach through a DNAT rule and check the certificate against.
    sans = "IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default.svc"
    _openssl(directory, *req, *_EC_KEY, *signed, "-keyout", "apiserver.key",
             "-subj", "/CN=kube-apiserver", "-addext", f"subjectAltName={sans}",
             "-addext", "extendedKeyUsage=serverAuth", *_LEAF, "-out", "apiserver.crt")  # fmt: skip
    _openssl(directory, *req, *_EC_KEY, *signed, "-keyout", "admin.key",
             "-subj", f"/O=system:masters/CN={ADMIN_USER}",
             "-addext", "extendedKeyUsage=clientAuth", *_LEAF, "-out", "admin.crt")  # fmt: skip
    _openssl(directory, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
             "-out", "sa.key")  # fmt: skip
    _openssl(directory, "pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub")


def _kubeconfig(server: str, directory: Path) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "sart-test",
                "cluster": {
                    "server": server,
                    "certificate-authority": str(directory / "ca.crt"),
                },
            }
        ],
        "users": [
            {
                "name": ADMIN_USER,
                "user": {
                    "client-certificate": str(directory / "admin.crt"),
                    "client-key": str(directory / "admin.key"),
                },
            }
        ],
        "contexts": [
            {"name": "sart-test", "context": {"cluster": "sart-test", "user": ADMIN_USER}}
        ],
        "current-context": "sart-test",
    }


# --- processes ---------------------------------------------------------------------------------


def _free_ports(count: int) -> list[int]:
    """Ports the kernel just handed out on 127.0.0.1 (all bound at once, so they differ)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def _stat(pid: int) -> list[str]:
    """Fields of /proc/<pid>/stat after the command name (state first); [] if there is none."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return []


def _alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    fields = _stat(pid)
    return bool(fields) and fields[0] != "Z"


def _started(pid: int) -> str:
    """When the process started (clock ticks since boot): with the pid, names it uniquely."""
    fields = _stat(pid)
    return fields[19] if len(fields) > 19 else ""


def _kill_groups(groups: Sequence[int], timeout: float) -> None:
    """SIGTERM every process group, wait for the leaders, SIGKILL what is still there. SIGCONT
    follows the SIGTERM so that a paused (SIGSTOPped) group gets to handle it."""
    for group in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGTERM)
            os.killpg(group, signal.SIGCONT)
    deadline = time.monotonic() + timeout
    while any(_alive(g) for g in groups) and time.monotonic() < deadline:
        time.sleep(0.05)
    for group in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)


def _reaper() -> None:
    """Run as a separate process by ControlPlane. Reads process-group ids from stdin, one per
    line. "exit" means the owner cleaned up; end of input without it means the owner died, so
    the groups are killed and the directory (argv[1]) removed."""
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    directory = Path(sys.argv[1])
    started: dict[int, str] = {}
    for line in sys.stdin:
        word = line.strip()
        if word == "exit":
            return
        started[int(word)] = _started(int(word))
    # Only the processes we were told about, not whoever has reused a pid since.
    _kill_groups([pid for pid, at in started.items() if at and _started(pid) == at], timeout=5.0)
    shutil.rmtree(directory, ignore_errors=True)


# Loopback only: never through an HTTP(S)_PROXY from the environment.
_LOCAL: Final = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _read_from(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as file:
            file.seek(offset)
            return file.read().decode(errors="replace")
    except OSError:
        return ""


def _tmp_parent() -> str | None:
    """tmpfs when there is one: etcd is much faster without a disk under it."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager on free loopback ports.

    Use as a context manager, or call ``start()`` and ``stop()``. ``stop()`` is idempotent and
    also runs at interpreter exit; a reaper process cleans up if the owner is killed outright.

    Between the two, single components can be stopped and started again (``stop_components``,
    ``start_components``, ``restart``) with the command lines of the first start: same ports,
    same etcd data, same certificates, so the kubeconfig stays valid. ``pause``/``resume`` freeze
    a component's process group (SIGSTOP/SIGCONT): its sockets stay open but nothing answers.
    These calls block (up to seconds while a component gets ready): from a coroutine, run them
    with ``await asyncio.to_thread(plane.restart, "kube-apiserver")``.
    """

    def __init__(
        self,
        bin_dir: Path | None = None,
        *,
        controllers: Sequence[str] = CONTROLLERS,
        timeout: float = 90.0,
        attempts: int = 3,
        bind_address: str = "127.0.0.1",
        endpoint_routing: bool = False,
    ) -> None:
        self._bin_dir = bin_dir
        self.bind_address = bind_address
        """Where the apiserver listens: 0.0.0.0 lets a node in a network namespace reach it."""
        self.endpoint_routing = endpoint_routing
        """The apiserver calls a webhook's Service at one of its ready endpoints
        (``--enable-aggregator-routing``: its webhook client resolves Services through
        EndpointSlices then) instead of at its ClusterIP, which nothing on the host routes:
        kube-proxy runs on the nodes only, as on a control plane outside the cluster network."""
        self.controllers = tuple(controllers)
        self.timeout = timeout
        self.attempts = attempts
        self._directory: Path | None = None
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._commands: dict[str, tuple[str, ...]] = {}
        self._paused: set[str] = set()
        self._reaper: subprocess.Popen[bytes] | None = None
        self._https = _LOCAL
        self.server = ""
        self.etcd_url = ""
        self.times: StartTimes | None = None

    # The public view -------------------------------------------------------------------------

    @property
    def bin_dir(self) -> Path:
        if self._bin_dir is None:
            self._bin_dir = find_binaries()
        return self._bin_dir

    @property
    def directory(self) -> Path:
        """The temporary directory: certificates, etcd data, logs/, kubeconfig."""
        if self._directory is None:
            raise ControlPlaneError("the control plane is not running")
        return self._directory

    @property
    def kubeconfig(self) -> Path:
        """A kubeconfig for the admin user (client certificate, group system:masters)."""
        return self.directory / "kubeconfig"

    @property
    def logs(self) -> Path:
        return self.directory / "logs"

    @property
    def commands(self) -> dict[str, tuple[str, ...]]:
        """The command line (argv) of each component, as started and restarted."""
        return dict(self._commands)

    @property
    def stopped(self) -> tuple[str, ...]:
        """The components stopped with ``stop_components`` and not started again."""
        return tuple(
            name for name in COMPONENTS if name in self._commands and name not in self._processes
        )

    @property
    def paused(self) -> tuple[str, ...]:
        """The components paused with ``pause`` and not resumed."""
        return tuple(name for name in COMPONENTS if name in self._paused)

    @property
    def pids(self) -> dict[str, int]:
        """Process ids of the running components, and of the reaper."""
        pids = {name: process.pid for name, process in self._processes.items()}
        if self._reaper is not None:
            pids["reaper"] = self._reaper.pid
        return pids

    def exited(self) -> list[str]:
        """The components that have exited since they were started (a healthy plane: none)."""
        return [name for name, process in self._processes.items() if process.poll() is not None]

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # Start -----------------------------------------------------------------------------------

    def start(self) -> StartTimes:
        """Start the three processes and wait until they serve; returns how long each took.
        On any failure (or Ctrl-C) everything started so far is stopped before raising."""
        if self._directory is not None:
            raise ControlPlaneError("the control plane is already running")
        bin_dir = self.bin_dir
        for attempt in range(1, self.attempts + 1):
            try:
                self.times = self._start_once(bin_dir)
            except ControlPlaneError as error:
                self.stop()
                # A free port can be taken by someone else between our probe and the bind.
                if attempt < self.attempts and "address already in use" in str(error):
                    continue
                raise
            except BaseException:
                self.stop()
                raise
            return self.times
        raise AssertionError("unreachable")

    def _start_once(self, bin_dir: Path) -> StartTimes:
        began = time.monotonic()
        directory = Path(tempfile.mkdtemp(prefix="sart-k8s-", dir=_tmp_parent()))
        self._directory = directory
        atexit.register(self.stop)
        self._start_reaper(directory)
        self.logs.mkdir()
        _write_certificates(directory)
        context = ssl.create_default_context(cafile=str(directory / "ca.crt"))
        context.load_cert_chain(str(directory / "admin.crt"), str(directory / "admin.key"))
        self._https = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
        )
        etcd_client, etcd_peer, apiserver_port = _free_ports(3)
        self.etcd_url = f"http://127.0.0.1:{etcd_client}"
        self.server = f"https://127.0.0.1:{apiserver_port}"
        self.kubeconfig.write_text(yaml.safe_dump(_kubeconfig(self.server, directory)))
        self._commands = self._command_lines(bin_dir, directory, etcd_peer, apiserver_port)
        certificates = time.monotonic() - began

        took: dict[str, float] = {}
        for name in COMPONENTS:
            began = time.monotonic()
            self._spawn(name)
            self._wait(name, self._readiness(name))
            took[name] = time.monotonic() - began
        return StartTimes(
            certificates=certificates,
            etcd=took["etcd"],
            apiserver=took["kube-apiserver"],
            controller_manager=took["kube-controller-manager"],
        )

    def _command_lines(
        self, bin_dir: Path, directory: Path, etcd_peer: int, apiserver_port: int
    ) -> dict[str, tuple[str, ...]]:
        """Each component's argv; kept, so that a restart runs exactly the same command."""
        peer = f"http://127.0.0.1:{etcd_peer}"
        return {
            "etcd": (
                str(bin_dir / "etcd"),
                "--name=default",
                f"--data-dir={directory / 'etcd'}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=default={peer}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ),
            "kube-apiserver": (
                str(bin_dir / "kube-apiserver"),
                f"--etcd-servers={self.etcd_url}",
                f"--bind-address={self.bind_address}",
                f"--secure-port={apiserver_port}",
                "--advertise-address=127.0.0.1",
                # A real node's (sart.testing.node) host name resolves nowhere: logs and exec
                # reach its kubelet by its InternalIP.
                "--kubelet-preferred-address-types=InternalIP,Hostname",
                f"--cert-dir={directory}",
                f"--tls-cert-file={directory / 'apiserver.crt'}",
                f"--tls-private-key-file={directory / 'apiserver.key'}",
                f"--client-ca-file={directory / 'ca.crt'}",
                "--authorization-mode=RBAC",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--allow-privileged=true",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={directory / 'sa.pub'}",
                f"--service-account-signing-key-file={directory / 'sa.key'}",
                "--endpoint-reconciler-type=none",
                "--enable-priority-and-fairness=false",
                "--profiling=false",
                *(("--enable-aggregator-routing=true",) if self.endpoint_routing else ()),
            ),
            "kube-controller-manager": (
                str(bin_dir / "kube-controller-manager"),
                f"--kubeconfig={self.kubeconfig}",
                "--leader-elect=false",
                "--secure-port=0",
                f"--controllers={','.join(self.controllers)}",
                f"--service-account-private-key-file={directory / 'sa.key'}",
                f"--root-ca-file={directory / 'ca.crt'}",
            ),
        }

    def _readiness(self, name: str) -> Callable[[], bool]:
        """When a component counts as started: etcd answers /health, the apiserver /readyz,
        the controller-manager has made ServiceAccount default/default (proof that its
        controllers sync, and that pods in `default` can be admitted; on a restart it exists
        already, so there only the process has to be up)."""
        if name == "etcd":
            return self._etcd_healthy
        if name == "kube-apiserver":
            return lambda: self._get("/readyz") is not None
        if "serviceaccount-controller" in self.controllers:
            path = "/api/v1/namespaces/default/serviceaccounts/default"
            return lambda: self._get(path) is not None
        return lambda: True

    # Faults ----------------------------------------------------------------------------------

    def stop_components(self, *names: str) -> None:
        """Stop these components (all when none is named) in stop order: SIGTERM to the
        process group, SIGKILL after 10 s. The directory, ports and kubeconfig stay, for
        ``start_components``. Stopping a stopped component does nothing."""
        self._check_running()
        for name in reversed(self._in_order(names)):
            process = self._processes.pop(name, None)
            self._paused.discard(name)
            if process is None:
                continue
            if process.poll() is None:  # not reaped yet, so its pid (and group) is still ours
                _kill_groups([process.pid], timeout=STOP_TIMEOUT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=STOP_TIMEOUT)

    def start_components(self, *names: str) -> dict[str, float]:
        """Start stopped components again (all stopped ones when none is named), in start
        order, with their first command lines, and wait for each as ``start()`` does. Returns
        the seconds each took. If another process took a port in the meantime (the ports were
        picked from the ephemeral range), the component is started again until ``timeout``."""
        self._check_running()
        order = self._in_order(names) if names else list(self.stopped)
        running = [name for name in order if name in self._processes]
        if running:
            raise ControlPlaneError(f"already running: {', '.join(running)}")
        took: dict[str, float] = {}
        for name in order:
            began = time.monotonic()
            self._launch_again(name)
            took[name] = time.monotonic() - began
        return took

    def restart(self, *names: str, down_for: float = 0.0) -> dict[str, float]:
        """Stop these components (all when none is named), keep them down ``down_for``
        seconds, start them again and wait until they serve; returns the start seconds."""
        self.stop_components(*names)
        if down_for > 0:
            time.sleep(down_for)  # the outage itself, not a wait for something to happen
        return self.start_components(*self._in_order(names))

    def pause(self, name: str) -> None:
        """Freeze a component's process group (SIGSTOP): connections stay open, nothing is
        answered, clients time out rather than see an error."""
        os.killpg(self._process(name).pid, signal.SIGSTOP)
        self._paused.add(name)

    def resume(self, name: str) -> None:
        """Let a paused component run again (SIGCONT)."""
        os.killpg(self._process(name).pid, signal.SIGCONT)
        self._paused.discard(name)

    def _check_running(self) -> None:
        if self._directory is None:
            raise ControlPlaneError("the control plane is not running")

    def _in_order(self, names: Sequence[str]) -> list[str]:
        unknown = sorted(set(names) - set(COMPONENTS))
        if unknown:
            raise ValueError(
                f"no component {', '.join(unknown)} (there are {', '.join(COMPONENTS)})"
            )
        return [name for name in COMPONENTS if not names or name in names]

    def _process(self, name: str) -> subprocess.Popen[bytes]:
        self._in_order([name])
        process = self._processes.get(name)
        if process is None or process.poll() is not None:
            raise ControlPlaneError(f"{name} is not running")
        return process

    def _launch_again(self, name: str) -> None:
        log = self.logs / f"{name}.log"
        deadline = time.monotonic() + self.timeout
        while True:
            offset = log.stat().st_size if log.exists() else 0
            self._spawn(name)
            try:
                self._wait(name, self._readiness(name))
            except ControlPlaneError:
                lost_port = "address already in use" in _read_from(log, offset)
                if not (lost_port and self._processes[name].poll() is not None):
                    raise
                del self._processes[name]
                if time.monotonic() > deadline:
                    raise
                time.sleep(POLL_INTERVAL)  # the port's new owner may let go of it
            else:
                return

    def _start_reaper(self, directory: Path) -> None:
        self._reaper = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from sart.testing.controlplane import _reaper; _reaper()",
                str(directory),
            ],
            stdin=subprocess.PIPE,
            start_new_session=True,
        )

    def _tell_reaper(self, line: str) -> None:
        if self._reaper is None or self._reaper.stdin is None:
            return
        with contextlib.suppress(OSError):
            self._reaper.stdin.write(f"{line}\n".encode())
            self._reaper.stdin.flush()

    def _spawn(self, name: str) -> None:
        # Appended: the log of a restarted component follows that of its earlier runs.
        log = (self.logs / f"{name}.log").open("ab")
        with log:
            process = subprocess.Popen(
                self._commands[name],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: killpg reaches any children
            )
        self._processes[name] = process
        # The reaper remembers each pid with its start time, so the pids of stopped components
        # that it still lists can never hit a process that reused them.
        self._tell_reaper(str(process.pid))

    def _wait(self, name: str, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.timeout
        process = self._processes[name]
        while not ready():
            if process.poll() is not None:
                raise ControlPlaneError(
                    f"{name} exited with status {process.returncode} while starting;"
                    f" last lines of its log:\n{_tail(self.logs / f'{name}.log')}"
                )
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"{name} was not ready after {self.timeout:.0f} s;"
                    f" last lines of its log:\n{_tail(self.logs / f'{name}.log')}"
                )
            time.sleep(POLL_INTERVAL)

    def _etcd_healthy(self) -> bool:
        try:
            with _LOCAL.open(f"{self.etcd_url}/health", timeout=2) as answer:
                return bool(json.load(answer).get("health") == "true")
        except (OSError, ValueError):
            return False

    def _get(self, path: str) -> bytes | None:
        """GET from the apiserver as the admin user; None unless the answer is 200."""
        try:
            with self._https.open(f"{self.server}{path}", timeout=5) as answer:
                return bytes(answer.read()) if answer.status == 200 else None
        except (OSError, ValueError):  # refused, reset, TLS not up yet, 4xx/5xx (HTTPError)
            return None

    # Stop ------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop the processes (controller-manager, apiserver, etcd: the reverse of the start
        order) and remove the directory. Safe to call twice, or after a failed start."""
        atexit.unregister(self.stop)
        running = [self._processes[name] for name in COMPONENTS if name in self._processes]
        for process in reversed(running):
            if process.poll() is None:  # not reaped yet, so its pid (and group) is still ours
                _kill_groups([process.pid], timeout=STOP_TIMEOUT)
        for process in self._processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=STOP_TIMEOUT)
        self._processes.clear()
        self._commands.clear()
        self._paused.clear()
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None
        if self._reaper is not None:
            self._tell_reaper("exit")
            if self._reaper.stdin is not None:
                with contextlib.suppress(OSError):
                    self._reaper.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._reaper.wait(timeout=STOP_TIMEOUT)
            self._reaper = None

    # Clients ---------------------------------------------------------------------------------

    async def api_client(self, kubeconfig: Path | None = None) -> ApiClient:
        """A kubernetes-asyncio client built from the kubeconfig (or another one, such as a
        proxied copy); close it (``async with``)."""
        from kubernetes_asyncio import config  # noqa: PLC0415 (slow import, only when used)

        return await config.new_client_from_config(
            config_file=str(kubeconfig or self.kubeconfig), persist_config=False
        )


# --- helpers for tests and the lab (kubernetes-asyncio) ----------------------------------------


async def wait_until(
    probe: Callable[[], Awaitable[T | None]],
    *,
    timeout: float = 10.0,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Call ``probe`` until it returns something other than None (or False); return that."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await probe()
        if value is not None and value is not False:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout} s")
        await asyncio.sleep(interval)


async def create_namespace(api: ApiClient, name: str, *, timeout: float = 10.0) -> None:
    """Create a namespace and wait for its `default` ServiceAccount (pods need it to be
    admitted; the controller-manager creates it within milliseconds)."""
    from kubernetes_asyncio import client  # noqa: PLC0415 (slow import, only when used)
    from kubernetes_asyncio.client.exceptions import ApiException  # noqa: PLC0415

    core = client.CoreV1Api(api)
    await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))

    async def default_account() -> bool:
        try:
            await core.read_namespaced_service_account("default", name)
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        return True

    await wait_until(default_account, timeout=timeout, what=f"ServiceAccount {name}/default")


async def delete_namespace(api: ApiClient, name: str) -> None:
    """Delete a namespace without waiting for it to go. Pods are force-deleted first: with no
    kubelet a graceful delete never completes and the namespace would stay Terminating. Its
    Services are deleted first too, so none outlives the test while the namespace terminates:
    a leftover LoadBalancer Service would take an address from the next test's pool."""
    from kubernetes_asyncio import client  # noqa: PLC0415

    core = client.CoreV1Api(api)
    await core.delete_collection_namespaced_pod(name, grace_period_seconds=0)
    for service in (await core.list_namespaced_service(name)).items:
        try:
            await core.delete_namespaced_service(service.metadata.name, name)
        except client.ApiException as error:
            if error.status != 404:
                raise
    await core.delete_namespace(name)


async def create_node(
    api: ApiClient,
    name: str,
    *,
    addresses: Iterable[str | tuple[str, str]] = (),
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    pod_cidrs: Sequence[str] = (),
) -> Any:
    """Create a Node that looks Ready and return it. ``addresses`` are InternalIPs, or
    (type, address) pairs such as ("ExternalIP", "203.0.113.7"). The status given at creation
    is kept: there is no kubelet to own it and no node-lifecycle controller to mark it
    NotReady. The label kubernetes.io/hostname is set to ``name`` unless given."""
    from kubernetes_asyncio import client  # noqa: PLC0415

    now = datetime.now(UTC).replace(microsecond=0)
    node = client.V1Node(
        metadata=client.V1ObjectMeta(
            name=name,
            labels={"kubernetes.io/hostname": name, **(labels or {})},
            annotations=dict(annotations or {}),
        ),
        spec=client.V1NodeSpec(
            pod_cidr=pod_cidrs[0] if pod_cidrs else None, pod_cidrs=list(pod_cidrs) or None
        ),
        status=client.V1NodeStatus(
            addresses=[
                client.V1NodeAddress(type=kind, address=address)
                for kind, address in (
                    ("InternalIP", entry) if isinstance(entry, str) else entry
                    for entry in addresses
                )
            ],
            conditions=[
                client.V1NodeCondition(
                    type="Ready",
                    status="True",
                    reason="KubeletReady",
                    message="sart.testing: no kubelet, always ready",
                    last_heartbeat_time=now,
                    last_transition_time=now,
                )
            ],
        ),
    )
    return await client.CoreV1Api(api).create_node(node)


async def create_ready_pod(
    api: ApiClient,
    namespace: str,
    name: str,
    *,
    node: str,
    ips: Sequence[str],
    labels: Mapping[str, str] | None = None,
    ports: Mapping[str, int] | None = None,
    host_ip: str | None = None,
) -> Any:
    """Create a Pod bound to ``node`` and give it the status a kubelet would (Running, its IPs,
    one per family, Ready); return the Pod. The Node must exist, or the endpointslice controller
    skips the pod. ``ports`` are named TCP container ports, for Services with named targetPorts.
    """
    from kubernetes_asyncio import client  # noqa: PLC0415

    if not ips:
        raise ValueError("a ready pod needs at least one IP")
    core = client.CoreV1Api(api)
    container = client.V1Container(
        name="app",
        image="registry.invalid/sart/no-kubelet:0",
        ports=[
            client.V1ContainerPort(name=port_name, container_port=port, protocol="TCP")
            for port_name, port in (ports or {}).items()
        ]
        or None,
    )
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels=dict(labels or {})),
        spec=client.V1PodSpec(node_name=node, containers=[container]),
    )
    await core.create_namespaced_pod(namespace, pod)
    now = datetime.now(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
    status: dict[str, Any] = {
        "phase": "Running",
        "podIP": ips[0],
        "podIPs": [{"ip": ip} for ip in ips],
        "startTime": now,
        "conditions": [
            {"type": kind, "status": "True", "lastTransitionTime": now}
            for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
        ],
    }
    if host_ip is not None:
        status["hostIP"] = host_ip
        status["hostIPs"] = [{"ip": host_ip}]
    return await core.patch_namespaced_pod_status(name, namespace, {"status": status})


def unique_name(prefix: str) -> str:
    """A DNS-1123 label: ``prefix`` (lowercased, cut to fit) and 8 random hex digits."""
    cleaned = "".join(c if c.isalnum() else "-" for c in prefix.lower()).strip("-")
    return f"{cleaned[:54].rstrip('-')}-{uuid.uuid4().hex[:8]}"


# --- the foreground command --------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Start a control plane in the foreground, print the kubeconfig path, stop on Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="k8s-control-plane run",
        description="A local etcd + kube-apiserver + kube-controller-manager for development.",
    )
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds to wait per part")
    parser.add_argument(
        "--controllers",
        default=",".join(CONTROLLERS),
        help="kube-controller-manager controllers (default: %(default)s)",
    )
    options = parser.parse_args(argv)

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # SIGINT too: a shell without job control starts background commands with it ignored.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, terminate)
    out: IO[str] = sys.stdout
    plane = ControlPlane(controllers=options.controllers.split(","), timeout=options.timeout)
    try:
        times = plane.start()
        pids = ", ".join(f"{name} {pid}" for name, pid in plane.pids.items())
        print(f"ready:      {times}", file=out)
        print(f"server:     {plane.server}", file=out)
        print(f"logs:       {plane.logs}", file=out)
        print(f"pids:       {pids}", file=out)
        print(f"kubeconfig: {plane.kubeconfig}", file=out)
        print(f"  export KUBECONFIG={plane.kubeconfig}", file=out)
        print("Ctrl-C stops it and removes everything.", file=out, flush=True)
        while not (exited := plane.exited()):
            time.sleep(0.5)
        for name in exited:
            print(f"{name} exited on its own; its log ends with:", file=sys.stderr)
            print(_tail(plane.logs / f"{name}.log"), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopping", file=out, flush=True)
        return 0
    except ControlPlaneError as error:
        print(f"k8s-control-plane: {error}", file=sys.stderr)
        return 1
    finally:
        plane.stop()


if __name__ == "__main__":
    sys.exit(main())
