"""Real `cnitool` (containernetworking's libcni, as runtimes use it) drives sart: a standard
network configuration list with sart-cni and the reference `loopback` plugin, against the real
`sartd agent --cni-socket` running inside a node's network namespace with the real apiserver
and sart-controller serving blocks (`sart.testing.cni_lab`).

ADD gives the pod netns an address of the node's block of the pool, its default route and a
loopback that is up, and the pod pings its node; CHECK (with libcni's cached prevResult) passes;
DEL removes the interfaces and frees the address; GC removes the attachments of the network
it names that the list of valid attachments (cnitool's is empty) does not name, and nothing of
another network; STATUS answers 0 while the agent runs and the spec's 50 when it is gone.
cnitool runs inside the node namespace, as a runtime on the node would, and finds `sart-cni`
in CNI_PATH (a symlink to the venv's script).

Needs root, the control-plane binaries and the reference tools (built when missing).
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from netaddr import IPNetwork

from sart.testing.cni_lab import CniLab, cni_lab
from sart.testing.cnitools import find_cni_tools
from sart.testing.controlplane import ControlPlane, find_binaries
from sart.testing.netns import Namespace

pytestmark = [pytest.mark.k8s, pytest.mark.interop, pytest.mark.asyncio]

POOL = "10.246.0.0/24"
CACHE = Path("/var/lib/cni/results")  # libcni's result cache, which cnitool uses


@pytest.fixture(scope="module")
def plane() -> Iterator[ControlPlane]:
    with ControlPlane(find_binaries()) as started:
        yield started


@pytest_asyncio.fixture
async def lab(plane: ControlPlane) -> AsyncIterator[CniLab]:
    async with cni_lab(plane, pool_cidr=POOL, block_size=28) as made:
        yield made


class Runtime:
    """cnitool on the node, with network configuration lists naming sart-cni."""

    def __init__(self, lab: CniLab, tmp: Path) -> None:
        self.lab = lab
        self.confdir = tmp / "net.d"
        self.confdir.mkdir()
        self.bindir = lab.plugin_dir(find_cni_tools(build=True))
        self.tag = uuid.uuid4().hex[:6]
        self.networks: list[str] = []

    def network(self, name: str, *, loopback: bool = True) -> str:
        """A conflist named `name` and a suffix of this test's (libcni's result cache is
        machine-wide: other tests' attachments stay out of this one's GC); its name."""
        name = f"{name}-{self.tag}"
        self.networks.append(name)
        plugins: list[dict[str, Any]] = [{"type": "sart-cni", "socket": str(self.lab.socket)}]
        if loopback:
            plugins.append({"type": "loopback"})
        conflist = {"cniVersion": "1.1.0", "name": name, "plugins": plugins}
        (self.confdir / f"10-{name}.conflist").write_text(json.dumps(conflist))
        return name

    def forget(self) -> None:
        """Remove libcni's cached results of this test's networks."""
        for name in self.networks:
            for cached in CACHE.glob(f"{name}-*"):
                cached.unlink()

    def cnitool(
        self, *args: str, pod: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "NETCONFPATH": str(self.confdir),
            "CNI_PATH": str(self.bindir),
        }
        if pod is not None:
            env["CNI_ARGS"] = self.lab.cni_args(pod)
        command = [str(self.bindir / "cnitool"), *args]
        done = self.lab.node.run(command, env=env, check=False, timeout=60)
        if check:
            assert done.returncode == 0, (
                f"cnitool {' '.join(args)}: {done.stdout}{done.stderr}\n{self.lab.log_tails()}"
            )
        return done

    def add(self, network: str, sandbox: Namespace, pod: str) -> dict[str, Any]:
        done = self.cnitool("add", network, self.lab.netns_path(sandbox), pod=pod)
        result: dict[str, Any] = json.loads(done.stdout)
        return result


@pytest.fixture
def runtime(lab: CniLab, tmp_path: Path) -> Iterator[Runtime]:
    made = Runtime(lab, tmp_path)
    try:
        yield made
    finally:
        made.forget()


def links(namespace: Namespace) -> dict[str, dict[str, Any]]:
    return {link["ifname"]: link for link in namespace.ip_json("addr", "show")}


def host_veths(lab: CniLab) -> set[str]:
    return {name for name in links(lab.node) if name.startswith("sart")}


def ping(sandbox: Namespace, address: str) -> bool:
    done = sandbox.run(["ping", "-c", "1", "-W", "2", address], check=False)
    return done.returncode == 0


async def test_cnitool_add_check_del_with_sart_and_loopback(lab: CniLab, runtime: Runtime) -> None:
    net = runtime.network("sartnet")
    await lab.create_pods(["web-0", "web-1"])
    sandbox = lab.sandbox()
    result = runtime.add(net, sandbox, "web-0")

    assert result["cniVersion"] == "1.1.0"
    address = IPNetwork(result["ips"][0]["address"])
    assert address.prefixlen == 32 and address.ip in IPNetwork(POOL)
    blocks = await lab.blocks()
    assert [cidr for cidr in blocks.values() if address.ip in IPNetwork(cidr)], blocks
    pod_side = [i for i in result["interfaces"] if i.get("sandbox")]
    assert [i["name"] for i in pod_side] == ["eth0"]
    assert pod_side[0]["sandbox"] == lab.netns_path(sandbox)
    (veth,) = host_veths(lab)
    assert veth in {i["name"] for i in result["interfaces"]}

    # The kernel as the result says: the address on eth0, the default route through the
    # gateway; the loopback plugin's lo is up; the pod reaches its node.
    inside = links(sandbox)
    assert str(address.ip) in {a["local"] for a in inside["eth0"]["addr_info"]}
    assert "UP" in inside["lo"]["flags"]
    routes = sandbox.ip_json("route", "show", "default")
    assert [r.get("gateway") for r in routes] == [result["ips"][0]["gateway"]]
    assert ping(sandbox, lab.node_address)

    runtime.cnitool("check", net, lab.netns_path(sandbox), pod="web-0")

    runtime.cnitool("del", net, lab.netns_path(sandbox), pod="web-0")
    assert "eth0" not in links(sandbox)
    assert host_veths(lab) == set()
    assert not ping(sandbox, lab.node_address)
    # DEL of what is gone succeeds; the address is free again for the next pod.
    runtime.cnitool("del", net, lab.netns_path(sandbox), pod="web-0")
    again = runtime.add(net, lab.sandbox(), "web-1")
    assert IPNetwork(again["ips"][0]["address"]) == address


async def test_cnitool_gc_deletes_the_attachments_libcni_cached(
    lab: CniLab, runtime: Runtime
) -> None:
    net = runtime.network("sartnet")
    other_net = runtime.network("othernet", loopback=False)
    await lab.create_pods(["leaked", "kept", "next"])
    leaked, kept = lab.sandbox(), lab.sandbox()
    gone = IPNetwork(runtime.add(net, leaked, "leaked")["ips"][0]["address"])
    other = IPNetwork(runtime.add(other_net, kept, "kept")["ips"][0]["address"])
    assert len(host_veths(lab)) == 2

    # cnitool gc names no valid attachment: libcni DELs every attachment of sartnet it has in
    # its cache, then sends the plugins a GC (whose answer the next test is about).
    runtime.cnitool("gc", net, lab.netns_path(leaked), check=False)
    assert "eth0" not in links(leaked)
    assert "eth0" in links(kept) and ping(kept, lab.node_address)
    assert len(host_veths(lab)) == 1
    # The address came back: the next pod gets it.
    reused = runtime.add(net, lab.sandbox(), "next")
    assert IPNetwork(reused["ips"][0]["address"]) == gone != other


async def test_cnitool_gc_has_sart_remove_an_attachment_no_list_names(
    lab: CniLab, runtime: Runtime
) -> None:
    net = runtime.network("sartnet")
    await lab.create_pods(["direct"])
    sandbox = lab.sandbox()
    # Made by sart-cni directly, so libcni has nothing cached for it: only sart's own GC can
    # find it (an attachment a runtime lost track of).
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "f" * 64, "CNI_IFNAME": "eth0",
           "CNI_NETNS": lab.netns_path(sandbox), "CNI_PATH": str(runtime.bindir),
           "CNI_ARGS": lab.cni_args("direct")}  # fmt: skip
    config = json.dumps(lab.netconf(net))
    made = lab.node.run([str(runtime.bindir / "sart-cni")], env=env, input=config, check=False)
    assert made.returncode == 0, made.stdout
    assert "eth0" in links(sandbox)

    done = runtime.cnitool("gc", net, lab.netns_path(sandbox), check=False)
    assert "eth0" not in links(sandbox)
    assert host_veths(lab) == set()
    assert done.returncode == 0, done.stdout + done.stderr


async def test_cnitool_status_answers_and_says_when_the_agent_is_gone(
    lab: CniLab, runtime: Runtime
) -> None:
    net = runtime.network("sartnet")
    sandbox = lab.sandbox()
    runtime.cnitool("status", net, lab.netns_path(sandbox))
    assert lab.agent is not None
    lab.agent.terminate()
    lab.agent.wait(15)
    down = runtime.cnitool("status", net, lab.netns_path(sandbox), check=False)
    assert down.returncode != 0
    said = down.stdout + down.stderr
    assert "not running" in said or "cannot connect" in said, said
    # ADD is refused as "try again later" (11), not as a failure of the pod's configuration.
    await lab.create_pods(["late"])
    late = runtime.cnitool("add", net, lab.netns_path(sandbox), pod="late", check=False)
    assert late.returncode != 0
    assert "eth0" not in links(sandbox)
