"""`sartd fib` with the real kernel: a node namespace runs `sartd bgp` and `sartd fib`, FRR
routers in their own namespaces announce prefixes, and what the kernel of the node holds
(`ip -j route`) and whether packets reach addresses behind the routers is checked.

    r1 (AS 65200, 10.255.1.2 and fd00:255:1::2) --- node (AS 65100) --- r2 (AS 65200, 10.255.2.2)

Each router has an address of the prefixes it announces on its loopback, so a ping from the
node reaches it only through a route `sartd fib` installed.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from netaddr import IPAddress, IPNetwork

from sart.fib.kernel import KernelRoutes
from sart.fib.plan import Route
from sart.testing.netns import Link, Namespace
from sart.testing.peers import BgpConfig, Frr, Lab, neighbor, wait_for

NODE_AS, ROUTER_AS = 65100, 65200
ONLY_R1, ANYCAST, ONLY_R1_V6 = "10.71.0.0/24", "10.70.0.0/24", "2001:db8:71::/48"
GRACE = 5.0  # longer than a restart of `sartd bgp` takes here (about 2 s)


def python_daemon(ns: Namespace, args: list[str], log: Path) -> subprocess.Popen[bytes]:
    return ns.popen(
        [sys.executable, "-m", "sart.cli.sartd", *args],
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        process.wait(15)


class Node:
    """The node namespace: `sartd bgp` (multipath on) and `sartd fib`, each restartable."""

    def __init__(self, lab: Lab, tmp: Path, links: list[Link]) -> None:
        self.ns = links[0].a.namespace
        self.links = links
        self.tmp = tmp
        self.api = f"unix:{tmp / 'bgp.sock'}"
        self.config = tmp / "bgp.yaml"
        neighbors = [{"asn": ROUTER_AS, "address": link.b.ipv4} for link in links]
        neighbors.append({"asn": ROUTER_AS, "address": links[0].b.ipv6})
        self.config.write_text(
            yaml.safe_dump(
                {
                    "asn": NODE_AS,
                    "router_id": links[0].a.ipv4,
                    "multi_path": True,
                    "connect_retry_time": 1,
                    "hold_time": 9,
                    "neighbors": neighbors,
                }
            )
        )
        self.bgp_log, self.fib_log = tmp / "bgp.log", tmp / "fib.log"
        self.bgp: subprocess.Popen[bytes] | None = None
        self.fib: subprocess.Popen[bytes] | None = None

    def start_bgp(self) -> None:
        args = ["bgp", "-f", str(self.config), "--api-address", self.api, "--metrics-address", ""]
        self.bgp = python_daemon(self.ns, args, self.bgp_log)

    def stop_bgp(self) -> None:
        assert self.bgp is not None
        stop(self.bgp)

    def start_fib(self, *extra: str) -> None:
        args = ["fib", "--endpoint", self.api, "--grace", str(GRACE), "--metrics-address", ""]
        self.fib = python_daemon(self.ns, [*args, *extra, "--level", "debug"], self.fib_log)

    def close(self) -> None:
        for process in (self.fib, self.bgp):
            if process is not None:
                stop(process)

    def routes(self, prefix: str) -> list[dict[str, Any]]:
        return self.ns.routes(prefix)

    def nexthops(self, prefix: str) -> list[str]:
        return self.ns.kernel_nexthops(prefix)

    def wait_nexthops(self, prefix: str, want: list[str], timeout: float = 30.0) -> None:
        wait_for(
            lambda: self.nexthops(prefix) == sorted(want),
            timeout=timeout,
            what=f"{prefix} via {want} in the node's kernel",
            describe=self.describe,
        )

    def ping(self, address: str, count: int = 1) -> bool:
        command = ["ping", "-n", "-q", "-c", str(count), "-W", "1", address]
        if count > 1:
            command[1:1] = ["-i", "0.05"]
        return self.ns.run(command, check=False, timeout=30).returncode == 0

    def log_has(self, text: str) -> bool:
        return text in self.fib_log.read_text(errors="replace")

    def describe(self) -> str:
        def tail(log: Path) -> str:
            lines = log.read_text(errors="replace").splitlines() if log.exists() else []
            return "\n".join([line for line in lines if "hpack" not in line][-15:])

        return (
            f"kernel: {self.ns.ip('route', 'show', 'proto', '186')}"
            f"{self.ns.ip('-6', 'route', 'show', 'proto', '186')}\n"
            f"bgp log:\n{tail(self.bgp_log)}\nfib log:\n{tail(self.fib_log)}"
        )


def router(lab: Lab, ns: Namespace, link: Link, *routes: str, ipv6: bool = False) -> Frr:
    neighbors = [neighbor(link.a.ipv4, NODE_AS)]
    if ipv6:
        neighbors.append(neighbor(link.a.ipv6, NODE_AS))
    for prefix in routes:  # an address of each prefix on the router, to ping
        net = IPNetwork(prefix)
        ns.add_address("lo", f"{net.network + 1}/{net.prefixlen}")
    return lab.start(
        Frr(
            ns,
            BgpConfig(
                router_id=link.b.ipv4, local_as=ROUTER_AS, neighbors=neighbors, routes=routes
            ),
        )
    )


@pytest.fixture
def two_routers(lab: Lab, tmp_path: Path) -> Iterator[tuple[Node, Frr, Frr]]:
    node_ns, r1_ns, r2_ns = lab.namespace("node"), lab.namespace("r1"), lab.namespace("r2")
    l1, l2 = lab.link(node_ns, r1_ns), lab.link(node_ns, r2_ns)
    r1 = router(lab, r1_ns, l1, ONLY_R1, ANYCAST, ONLY_R1_V6, ipv6=True)
    r2 = router(lab, r2_ns, l2, ANYCAST)
    node = Node(lab, tmp_path, [l1, l2])
    try:
        yield node, r1, r2
    finally:
        node.close()


def test_learned_routes_are_installed_with_ecmp_withdrawn_and_carry_packets(
    two_routers: tuple[Node, Frr, Frr],
) -> None:
    node, r1, r2 = two_routers
    l1, l2 = node.links
    # Left by an earlier run: our protocol, not in the speaker's table.
    node.ns.ip("route", "add", "10.99.0.0/24", "via", l1.b.ipv4, "proto", "186", "metric", "20")
    # Not ours (another protocol): never touched.
    node.ns.ip("route", "add", "10.98.0.0/24", "via", l1.b.ipv4, "proto", "static")
    assert not node.ping("10.71.0.1")  # no route yet
    node.start_bgp()
    node.start_fib()
    node.wait_nexthops(ONLY_R1, [l1.b.ipv4])
    node.wait_nexthops(ANYCAST, [l1.b.ipv4, l2.b.ipv4])  # ECMP: one route, two next hops
    node.wait_nexthops(ONLY_R1_V6, [l1.b.ipv6])
    (single,) = node.routes(ONLY_R1)
    assert (single["protocol"], single["metric"]) == ("bgp", 20)
    (ecmp,) = node.routes(ANYCAST)
    assert [hop["weight"] for hop in ecmp["nexthops"]] == [1, 1]
    # Packets flow through the installed routes, IPv4 and IPv6.
    assert node.ping("10.71.0.1") and node.ping("10.70.0.1") and node.ping("2001:db8:71::1")
    # The leftover goes once the speaker has been up for the grace time; the static stays.
    wait_for(lambda: not node.routes("10.99.0.0/24"), timeout=30, what="the stale route to go")
    assert node.nexthops("10.98.0.0/24") == [l1.b.ipv4]

    r2.withdraw(ANYCAST)
    node.wait_nexthops(ANYCAST, [l1.b.ipv4])
    r1.withdraw(ONLY_R1, ONLY_R1_V6)
    wait_for(
        lambda: not node.routes(ONLY_R1) and not node.routes(ONLY_R1_V6),
        timeout=30,
        what="withdrawn routes to leave the kernel",
        describe=node.describe,
    )
    assert not node.ping("10.71.0.1")

    # A default route from BGP is not installed unless --prefix names it.
    r1.announce("0.0.0.0/0", "10.72.0.0/24")
    node.wait_nexthops("10.72.0.0/24", [l1.b.ipv4])
    assert node.ns.ip_json("-4", "route", "show", "default") == []
    assert node.fib is not None and node.fib.poll() is None


def test_only_the_allowed_prefixes_and_families(two_routers: tuple[Node, Frr, Frr]) -> None:
    node, _, _ = two_routers
    l1, l2 = node.links
    node.start_bgp()
    node.start_fib("--prefix", "10.70.0.0/16", "--family", "ipv4", "--table", "100")
    wait_for(
        lambda: _table_nexthops(node.ns, ANYCAST, 100) == sorted([l1.b.ipv4, l2.b.ipv4]),
        timeout=30,
        what="the anycast route in table 100",
        describe=node.describe,
    )
    # 10.71.0.0/24 lies outside the allow list, IPv6 is not allowed: only the anycast route.
    routes = node.ns.ip_json("-4", "route", "show", "table", "100")
    assert [r["dst"] for r in routes] == [ANYCAST]
    v6 = node.ns.run(["ip", "-j", "-6", "route", "show", "table", "100"], check=False)
    assert v6.returncode != 0 or json.loads(v6.stdout) == []  # no such table: nothing in it
    assert node.routes(ONLY_R1) == [] and node.routes(ANYCAST) == []  # not in main


def _table_nexthops(ns: Namespace, prefix: str, table: int) -> list[str]:
    shown = ns.run(["ip", "-j", "-4", "route", "show", prefix, "table", str(table)], check=False)
    if shown.returncode != 0:  # the table does not exist before its first route
        return []
    routes = json.loads(shown.stdout or "[]")
    hops = [r["gateway"] for r in routes if "gateway" in r]
    hops += [h["gateway"] for r in routes for h in r.get("nexthops", [])]
    return sorted(hops)


def test_routes_survive_a_speaker_restart_and_go_when_it_stays_away(
    two_routers: tuple[Node, Frr, Frr],
) -> None:
    node, r1, _ = two_routers
    l1, l2 = node.links
    node.start_bgp()
    node.start_fib()
    node.wait_nexthops(ANYCAST, [l1.b.ipv4, l2.b.ipv4])
    node.wait_nexthops(ONLY_R1, [l1.b.ipv4])
    # Packets keep flowing while the speaker restarts: ping all along.
    pinger = node.ns.popen(
        ["ping", "-n", "-q", "-i", "0.05", "-w", "60", "10.70.0.1"], stdout=subprocess.PIPE
    )
    try:
        node.stop_bgp()
        wait_for(lambda: node.log_has("speaker lost"), timeout=15, what="fib to see it go")
        assert node.nexthops(ANYCAST) == [l1.b.ipv4, l2.b.ipv4]  # kept
        r1.withdraw(ONLY_R1)  # while our speaker is down: it will not be relearned
        restarted = time.monotonic()
        node.start_bgp()
        wait_for(
            lambda: node.fib_log.read_text().count("kernel synchronised") >= 2,
            timeout=30,
            what="fib to read the restarted speaker's table",
        )
        # Not relearned: kept as stale until the speaker has been up for the grace time.
        wait_for(lambda: not node.routes(ONLY_R1), timeout=30, what="the stale route to go")
        swept = time.monotonic() - restarted
        assert swept >= GRACE - 0.5, f"the stale route went after {swept:.1f} s"
        node.wait_nexthops(ANYCAST, [l1.b.ipv4, l2.b.ipv4])
    finally:
        pinger.send_signal(signal.SIGINT)  # ping prints its summary
        out, _ = pinger.communicate(timeout=10)
    summary = out.decode()
    assert " 0% packet loss" in summary, summary

    # Gone for longer than the grace time: the routes go.
    node.stop_bgp()
    stopped = time.monotonic()
    wait_for(
        lambda: not node.routes(ANYCAST),
        timeout=30,
        what="routes to go after the grace time",
        describe=node.describe,
    )
    gone = time.monotonic() - stopped
    assert gone >= GRACE - 0.5, f"routes went after {gone:.1f} s"
    assert node.fib is not None and node.fib.poll() is None  # still running, still retrying


@pytest.mark.asyncio
async def test_kernel_adapter_replaces_lists_and_deletes(lab: Lab) -> None:
    """sart.fib.kernel on its own: IPv4 and IPv6, one next hop <-> several, another table
    and metric; a delete names our protocol, so another protocol's route stays."""
    ns, other = lab.namespace("kernel"), lab.namespace("other")
    link = lab.link(ns, other)
    v4 = [IPAddress(link.b.ipv4), IPAddress(str(IPAddress(link.b.ipv4) + 1))]
    v6 = [IPAddress(link.b.ipv6), IPAddress(str(IPAddress(link.b.ipv6) + 1))]
    p4, p6 = IPNetwork("10.80.0.0/24"), IPNetwork("2001:db8:80::/48")

    def route(prefix: IPNetwork, hops: list[IPAddress], metric: int = 20) -> Route:
        return Route(destination=prefix, gateways=tuple(hops), table=100, metric=metric)

    async with KernelRoutes(100, 186, netns=ns.name) as kernel:
        assert await kernel.routes() == []
        wanted = [route(p4, v4), route(p6, v6[:1])]
        for r in wanted:
            await kernel.replace(r)
            await kernel.replace(r)  # idempotent
        assert sorted(await kernel.routes(), key=str) == sorted(wanted, key=str)
        changed = [route(p4, v4[:1]), route(p6, v6)]
        for r in changed:
            await kernel.replace(r)
        assert sorted(await kernel.routes(), key=str) == sorted(changed, key=str)
        ns.ip("route", "add", "10.81.0.0/24", "via", link.b.ipv4, "table", "100", "proto", "static")
        await kernel.delete(route(IPNetwork("10.81.0.0/24"), v4[:1]))  # not ours: stays
        await kernel.delete(route(IPNetwork("10.82.0.0/24"), v4[:1]))  # not there: no error
        for r in changed:
            await kernel.delete(r)
        assert await kernel.routes() == []
        assert ns.ip_json("-4", "route", "show", "table", "100")[0]["dst"] == "10.81.0.0/24"
