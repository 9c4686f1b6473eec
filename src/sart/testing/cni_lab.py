"""One Kubernetes node with sart's pod network, for the CNI interop test and benchmark.

`cni_lab()` starts (or is given) the real control plane, applies the CRDs, creates an
autoAssign AddressPool of type pod, a Node, a Kubernetes namespace for the pods, and runs:

- `sart-controller` (host namespace), which serves the agent's BlockRequests;
- `sartd agent --cni-socket ...` inside the node's network namespace, where it makes the pods'
  interfaces, with the apiserver on the node's own 127.0.0.1:6443 (a `TcpProxy` listening in
  that namespace, as in `sart.testing.lab_demo`).

It returns once the agent answers a CNI STATUS, and on the way out stops both processes, deletes
the pods' namespaces and the node's, and the Kubernetes objects it made (or the whole control
plane when it started it). Runtimes' side: `CniLab.plugin_dir()` is a CNI_PATH directory with a
`sart-cni` entry; `CniLab.netconf()` the plugin's entry of a network configuration.

    async with cni_lab() as lab:
        sandbox = lab.sandbox()
        ...  # run sart-cni (or cnitool) inside lab.node with CNI_NETNS=lab.netns_path(sandbox)

Needs root (namespaces) and the control-plane binaries (`find_binaries`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes_asyncio.client import ApiClient, CoreV1Api, CustomObjectsApi
from kubernetes_asyncio.client.exceptions import ApiException

from sart.cni.install import install
from sart.k8s.models import GROUP, VERSION
from sart.testing.controlplane import (
    ControlPlane,
    create_namespace,
    create_node,
    delete_namespace,
    find_binaries,
    unique_name,
)
from sart.testing.crds import apply_crds
from sart.testing.netns import LabError, Namespace, listening_socket
from sart.testing.proxy import TcpProxy, proxied_kubeconfig

__all__ = ["APISERVER_PORT", "CniLab", "cni_lab", "sart_cni_path"]

APISERVER_PORT = 6443  # where the node's agent finds the apiserver on its own loopback
NODE_ADDRESS = "192.0.2.1"


def sart_cni_path() -> Path:
    """The `sart-cni` executable next to this interpreter (the venv's console script)."""
    found = shutil.which("sart-cni", path=str(Path(sys.executable).parent))
    if found is None:
        raise LabError(f"no sart-cni next to {sys.executable}: is sart installed in this venv?")
    return Path(found)


def node_python() -> str:
    """The machine's own Python 3 (as a node has it), or this interpreter when that one is
    missing or older than the plugin needs."""
    system = Path("/usr/bin/python3")
    if system.exists():
        done = subprocess.run(
            [str(system), "-c", "import sys; print(sys.version_info >= (3, 11))"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.stdout.strip() == "True":
            return str(system)
    return sys.executable


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


@dataclass
class CniLab:
    """What `cni_lab()` made; see the module docstring."""

    plane: ControlPlane
    api: ApiClient
    workdir: Path
    node: Namespace
    node_name: str
    node_address: str
    pool: str
    pool_cidr: str
    namespace: str
    socket: Path
    agent: subprocess.Popen[bytes] | None = None
    controller: subprocess.Popen[bytes] | None = None
    sandboxes: list[Namespace] = field(default_factory=list)

    @property
    def agent_log(self) -> Path:
        return self.workdir / "agent.log"

    @property
    def controller_log(self) -> Path:
        return self.workdir / "controller.log"

    def log_tails(self, lines: int = 40) -> str:
        """The last lines of the agent's and the controller's logs, for a failure report."""
        return (
            f"--- sartd agent ({self.agent_log}):\n{_tail(self.agent_log, lines)}\n"
            f"--- sart-controller ({self.controller_log}):\n{_tail(self.controller_log, lines)}"
        )

    def netconf(self, name: str = "sart", version: str = "1.1.0") -> dict[str, Any]:
        """A single-plugin network configuration for sart-cni talking to this lab's agent (as a
        conflist's entry, drop cniVersion and name)."""
        return {"cniVersion": version, "name": name, "type": "sart-cni", "socket": str(self.socket)}

    def plugin_dir(self, *others: Path) -> Path:
        """A directory to use as CNI_PATH: `sart-cni` installed as on a node (by
        `sart.cni.install`, run by the machine's own Python, outside this venv) and a symlink
        to every executable in `others` (e.g. the reference tools' directory)."""
        directory = Path(tempfile.mkdtemp(prefix="cni-bin-", dir=self.workdir))
        install(directory, None, python=node_python())
        for other in others:
            for entry in sorted(other.iterdir()):
                if entry.is_file() and os.access(entry, os.X_OK):
                    (directory / entry.name).symlink_to(entry)
        return directory

    def sandbox(self) -> Namespace:
        """A new network namespace standing for a pod's sandbox, deleted with the lab."""
        made = Namespace.create("pod")
        self.sandboxes.append(made)
        return made

    def sandboxes_for(self, count: int) -> list[Namespace]:
        """`count` new sandboxes, made a few at a time (each is four `ip` commands)."""
        with ThreadPoolExecutor(16) as pool:
            made = list(pool.map(lambda _: Namespace.create("pod"), range(count)))
        self.sandboxes.extend(made)
        return made

    def delete_sandboxes(self) -> None:
        for sandbox in self.sandboxes:
            sandbox.delete()
        self.sandboxes.clear()

    @staticmethod
    def netns_path(sandbox: Namespace) -> str:
        return f"/var/run/netns/{sandbox.name}"

    async def create_pods(self, names: Sequence[str], *, in_flight: int = 32) -> None:
        """Pod objects bound to the node (no kubelet: they stay Pending, which the agent does
        not mind), so CNI_ARGS can name them as a runtime does."""
        core = CoreV1Api(self.api)
        gate = asyncio.Semaphore(in_flight)

        async def create(name: str) -> None:
            body: Any = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name},
                "spec": {
                    "nodeName": self.node_name,
                    "containers": [{"name": "app", "image": "registry.invalid/sart/none:0"}],
                },
            }
            async with gate:
                await core.create_namespaced_pod(self.namespace, body)

        await asyncio.gather(*(create(name) for name in names))

    def cni_args(self, pod: str) -> str:
        """CNI_ARGS as containerd passes them for a pod of the lab's namespace."""
        return f"IgnoreUnknown=1;K8S_POD_NAMESPACE={self.namespace};K8S_POD_NAME={pod}"

    async def blocks(self) -> dict[str, str]:
        """This lab's pool's AddressBlocks: name -> CIDR."""
        listing = await CustomObjectsApi(self.api).list_cluster_custom_object(
            GROUP, VERSION, "addressblocks"
        )
        return {
            item["metadata"]["name"]: item["spec"]["cidr"]
            for item in listing["items"]
            if item["spec"].get("poolRef") == self.pool
        }

    def status(self) -> subprocess.CompletedProcess[bytes]:
        """A CNI STATUS through the real plugin (exit 0: the agent is ready for ADDs)."""
        env = {"CNI_COMMAND": "STATUS", "CNI_PATH": "/opt/cni/bin"}
        stdin = json.dumps(self.netconf()).encode()
        return subprocess.run(
            [str(sart_cni_path())],
            check=False,
            input=stdin,
            env=env,
            capture_output=True,
            timeout=30,
        )

    async def wait_ready(self, timeout: float = 60.0) -> None:
        """Until the agent answers STATUS with success; LabError (with its log) if it exits or
        takes longer than `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            if self.agent is not None and self.agent.poll() is not None:
                raise LabError(
                    f"sartd agent exited with {self.agent.returncode}\n{self.log_tails()}"
                )
            done = await asyncio.to_thread(self.status)
            if done.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise LabError(
                    f"the agent did not answer STATUS within {timeout} s: "
                    f"{done.stdout.decode()}\n{self.log_tails()}"
                )
            await asyncio.sleep(0.1)


def _stop(process: subprocess.Popen[bytes] | None, timeout: float = 15.0) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout)


async def _delete_quietly(custom: CustomObjectsApi, plural: str, name: str) -> None:
    try:
        await custom.delete_cluster_custom_object(GROUP, VERSION, plural, name)
    except ApiException as error:
        if error.status != 404:
            raise


@contextlib.asynccontextmanager
async def cni_lab(
    plane: ControlPlane | None = None,
    *,
    pool_cidr: str = "10.244.0.0/16",
    block_size: int = 26,
    gc_interval: float = 3600.0,
    node_address: str = NODE_ADDRESS,
    agent_level: str = "info",
    agent_options: Sequence[str] = (),
) -> AsyncIterator[CniLab]:
    """The lab described in the module docstring. With `plane` (e.g. a test session's), the
    objects made are deleted at the end; without, a control plane is started and stopped."""
    async with contextlib.AsyncExitStack() as stack:
        if plane is None:
            plane = ControlPlane(find_binaries())
            await asyncio.to_thread(plane.start)
            stack.callback(plane.stop)
            shared = False
        else:
            shared = True
        workdir = Path(tempfile.mkdtemp(prefix="sart-cni-lab-"))
        stack.callback(shutil.rmtree, workdir, True)
        api = await stack.enter_async_context(await plane.api_client())
        await apply_crds(api)
        custom = CustomObjectsApi(api)
        node_name = unique_name("cni-node")
        pool = unique_name("pods")
        namespace = unique_name("cni")

        node = Namespace.create("cninode")
        stack.callback(node.delete)
        node.add_address("lo", f"{node_address}/32")
        await create_node(api, node_name, addresses=[node_address])
        await custom.create_cluster_custom_object(GROUP, VERSION, "addresspools", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "AddressPool",
            "metadata": {"name": pool},
            "spec": {"cidr": pool_cidr, "type": "pod", "blockSize": block_size,
                     "autoAssign": True}})  # fmt: skip
        await create_namespace(api, namespace)
        if shared:
            stack.push_async_callback(_forget, api, node_name, pool, namespace)

        listener = listening_socket(node, "127.0.0.1", APISERVER_PORT)
        proxy = stack.enter_context(TcpProxy.from_url(plane.server, sock=listener))
        kubeconfig = proxied_kubeconfig(plane.kubeconfig, proxy, workdir / "kubeconfig")
        lab = CniLab(
            plane=plane,
            api=api,
            workdir=workdir,
            node=node,
            node_name=node_name,
            node_address=node_address,
            pool=pool,
            pool_cidr=pool_cidr,
            namespace=namespace,
            socket=workdir / "cni.sock",
        )
        stack.callback(lab.delete_sandboxes)

        python = sys.executable
        with lab.controller_log.open("wb") as log:
            lab.controller = subprocess.Popen(
                [python, "-m", "sart.cli.controller", "--kubeconfig", str(plane.kubeconfig),
                 "--no-leader-elect", "--metrics-address", "", "--level", "info"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        stack.callback(_stop, lab.controller)
        with lab.agent_log.open("wb") as log:
            lab.agent = node.popen(
                [python, "-m", "sart.cli.sartd", "agent", "--kubeconfig", str(kubeconfig),
                 "--node", node_name, "--cni-socket", str(lab.socket),
                 "--cni-gc-interval", f"{gc_interval:g}", "--metrics-address", "",
                 "--level", agent_level, *agent_options],
                stdout=log,
            )  # fmt: skip
        stack.callback(_stop, lab.agent)
        await lab.wait_ready()
        yield lab


async def _forget(api: ApiClient, node: str, pool: str, namespace: str) -> None:
    """Delete what the lab made in a control plane that outlives it."""
    custom = CustomObjectsApi(api)
    await delete_namespace(api, namespace)
    for plural in ("blockrequests", "addressblocks"):
        listing = await custom.list_cluster_custom_object(GROUP, VERSION, plural)
        for item in listing["items"]:
            spec = item.get("spec") or {}
            if pool in (spec.get("pool"), spec.get("poolRef")):
                await _delete_quietly(custom, plural, item["metadata"]["name"])
    await _delete_quietly(custom, "addresspools", pool)
    with contextlib.suppress(ApiException):
        await CoreV1Api(api).delete_node(node)
