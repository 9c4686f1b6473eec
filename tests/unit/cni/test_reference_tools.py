"""The reference CNI tools work on this machine: real ``cnitool`` runs the reference plugins
``ptp`` + ``host-local`` (and ``loopback``) on a network namespace through ADD, CHECK, STATUS,
GC and DEL, from standard network configuration list files.

They are what sart-cni is later compared with (tests/interop/test_cnitool.py, the benchmarks),
so this proves the benchmark's reference, and that sart.cni.spec reads what real plugins
produce. cnitool and the plugins run inside a "host" namespace of their own, so the host end of
the veth and the forwarding sysctl ptp sets stay out of the machine's namespace; the pod side is
a second namespace, named by its path under /var/run/netns as cnitool wants.

Needs root and the binaries from scripts/cni-tools (built here when missing); marked interop.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sart.cni.spec import parse_request, result_for_version
from sart.testing.cnitools import find_cni_tools

pytestmark = pytest.mark.interop

SUBNET_PREFIX = "10.251.7."


@pytest.fixture(scope="module")
def tools() -> Path:
    return find_cni_tools(build=True)


class Namespaces:
    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:8]
        self.host = f"sartcni-h-{tag}"
        self.pod = f"sartcni-p-{tag}"

    @property
    def pod_path(self) -> str:
        return f"/var/run/netns/{self.pod}"


@pytest.fixture
def netns() -> Iterator[Namespaces]:
    names = Namespaces()
    subprocess.run(["ip", "netns", "add", names.host], check=True)
    try:
        subprocess.run(["ip", "netns", "add", names.pod], check=True)
        try:
            yield names
        finally:
            subprocess.run(["ip", "netns", "del", names.pod], check=False)
    finally:
        subprocess.run(["ip", "netns", "del", names.host], check=False)


@pytest.fixture
def netconf_dir(tmp_path: Path) -> Path:
    conf = tmp_path / "net.d"
    conf.mkdir()
    ptp = {
        "cniVersion": "1.1.0",
        "name": "sartref",
        "plugins": [
            {
                "type": "ptp",
                "ipMasq": False,
                "mtu": 1400,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": SUBNET_PREFIX + "0/24"}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(tmp_path / "ipam"),
                },
            }
        ],
    }
    loopback = {"cniVersion": "1.1.0", "name": "lo", "plugins": [{"type": "loopback"}]}
    (conf / "10-sartref.conflist").write_text(json.dumps(ptp))
    (conf / "99-lo.conflist").write_text(json.dumps(loopback))
    return conf


def cnitool(
    tools: Path, conf: Path, ns: Namespaces, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "NETCONFPATH": str(conf),
        "CNI_PATH": str(tools),
        "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=reference",
    }
    command = ["ip", "netns", "exec", ns.host, str(tools / "cnitool"), *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    if check:
        assert done.returncode == 0, f"cnitool {' '.join(args)}: {done.stderr}{done.stdout}"
    return done


def pod_ip(ns: Namespaces, *args: str) -> Any:
    out = subprocess.run(
        ["ip", "-n", ns.pod, "-j", *args], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out) if out.strip() else []


def reserved(tmp_path: Path) -> set[str]:
    """The addresses host-local holds (one file per address in its data directory)."""
    network = tmp_path / "ipam" / "sartref"
    if not network.is_dir():
        return set()
    return {p.name for p in network.iterdir() if p.name.startswith(SUBNET_PREFIX)}


def test_cnitool_add_check_del_with_ptp_and_host_local(
    tools: Path, netconf_dir: Path, netns: Namespaces, tmp_path: Path
) -> None:
    added = cnitool(tools, netconf_dir, netns, "add", "sartref", netns.pod_path)
    result = json.loads(added.stdout)
    assert result["cniVersion"] == "1.1.0"
    pod_side = [i for i in result["interfaces"] if i.get("sandbox") == netns.pod_path]
    assert [i["name"] for i in pod_side] == ["eth0"]
    address = result["ips"][0]["address"]
    gateway = result["ips"][0]["gateway"]
    assert address.startswith(SUBNET_PREFIX) and address.endswith("/24")
    assert reserved(tmp_path) == {address.split("/")[0]}

    # The kernel state matches the result: address, MTU, default route, and the host answers.
    (eth0,) = pod_ip(netns, "addr", "show", "eth0")
    assert eth0["mtu"] == 1400
    assert f"{address.split('/')[0]}" in {a["local"] for a in eth0["addr_info"]}
    routes = pod_ip(netns, "route", "show", "default")
    assert [r["gateway"] for r in routes] == [gateway]
    subprocess.run(
        ["ip", "netns", "exec", netns.pod, "ping", "-c", "1", "-W", "2", gateway],
        check=True,
        capture_output=True,
    )

    # sart's protocol module reads what a reference plugin produces: as a CHECK's prevResult,
    # and converted to the older shapes.
    check_config = {"cniVersion": "1.1.0", "name": "sartref", "type": "ptp", "prevResult": result}
    environ = {
        "CNI_COMMAND": "CHECK",
        "CNI_CONTAINERID": "cnitool-0123456789abcdef0123",
        "CNI_NETNS": netns.pod_path,
        "CNI_IFNAME": "eth0",
    }
    assert parse_request(environ, json.dumps(check_config).encode()).config["prevResult"] == result
    assert result_for_version(result, "0.4.0")["ips"][0]["version"] == "4"

    cnitool(tools, netconf_dir, netns, "check", "sartref", netns.pod_path)
    cnitool(tools, netconf_dir, netns, "status", "sartref", netns.pod_path)
    cnitool(tools, netconf_dir, netns, "add", "lo", netns.pod_path, "--ifname", "lo")
    (lo,) = pod_ip(netns, "link", "show", "lo")
    assert "UP" in lo["flags"]

    cnitool(tools, netconf_dir, netns, "del", "sartref", netns.pod_path)
    assert pod_ip(netns, "link", "show") == [lo]  # eth0 is gone
    assert reserved(tmp_path) == set()
    # DEL again is fine (the spec: DEL of what is already gone succeeds).
    cnitool(tools, netconf_dir, netns, "del", "sartref", netns.pod_path)
    cnitool(tools, netconf_dir, netns, "del", "lo", netns.pod_path, "--ifname", "lo")


def test_cnitool_gc_releases_host_local_reservations(
    tools: Path, netconf_dir: Path, netns: Namespaces, tmp_path: Path
) -> None:
    cnitool(tools, netconf_dir, netns, "add", "sartref", netns.pod_path)
    assert len(reserved(tmp_path)) == 1
    # cnitool's gc names no attachment as valid, so every reservation is stale.
    cnitool(tools, netconf_dir, netns, "gc", "sartref", netns.pod_path)
    assert reserved(tmp_path) == set()
    cnitool(tools, netconf_dir, netns, "del", "sartref", netns.pod_path)


def test_cnitool_reports_a_plugin_error(tools: Path, netconf_dir: Path, netns: Namespaces) -> None:
    cnitool(tools, netconf_dir, netns, "add", "sartref", netns.pod_path)
    # A second ADD of the same interface: ptp refuses, cnitool fails and says why.
    again = cnitool(tools, netconf_dir, netns, "add", "sartref", netns.pod_path, check=False)
    assert again.returncode != 0
    assert "eth0" in again.stderr + again.stdout
    cnitool(tools, netconf_dir, netns, "del", "sartref", netns.pod_path)
