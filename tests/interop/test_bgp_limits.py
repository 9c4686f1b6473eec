"""Issue 16 against FRR 8: a real `sartd bgp` driven by the `sart` CLI.

- Next hops (RFC 4271 6.3): FRR sends one good route and routes whose NEXT_HOP it rewrote
  (route-map `set ip next-hop`) to a loopback address and to sartd's own address; sartd's
  RIB has the good one only, counts the others, and the session stays Established.
- Maximum prefixes (RFC 4486): FRR announces one prefix more than sartd's limit; FRR's
  `show bgp neighbor` shows the Cease / Maximum Number of Prefixes Reached it received; the
  session comes back after the restart time and goes down again while FRR still sends too
  many; with the limit raised through the API it stays up.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sart.testing.netns import Link, Namespace
from sart.testing.peers import BgpConfig, Frr, Lab, neighbor

SART_AS, PEER_AS = 65100, 65200


def eventually(check: Callable[[], object], timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not in {timeout} s: {what or check}")
        time.sleep(0.1)


class Sartd:
    """`sartd bgp` in a namespace, and the `sart` CLI next to it."""

    def __init__(self, namespace: Namespace, link: Link) -> None:
        self.ns = namespace
        self.log: str | None = None
        command = [
            *(sys.executable, "-m", "sart.cli.sartd", "bgp", "--as", str(SART_AS)),
            *("--router-id", link.a.ipv4, "--metrics-address", "", "--format", "json"),
        ]
        self.process = namespace.popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        eventually(
            lambda: self.ns.run(self._cli("bgp", "global", "get"), check=False).returncode == 0
        )

    @staticmethod
    def _cli(*args: str) -> list[str]:
        return [sys.executable, "-m", "sart.cli.sart", *args]

    def __call__(self, *args: str) -> str:
        return self.ns.run(self._cli(*args)).stdout

    def neighbor(self, address: str) -> dict[str, Any]:
        state: dict[str, Any] = json.loads(
            self("bgp", "neighbor", "get", address, "--format", "json")
        )
        return state

    def established(self, address: str) -> bool:
        return self.neighbor(address)["state"] == "SESSION_STATE_ESTABLISHED"

    def rib(self) -> list[str]:
        return [
            p["prefix"] for p in json.loads(self("bgp", "global", "rib", "get", "--format", "json"))
        ]

    def stop(self) -> str:
        """Stop it (once); its log."""
        if self.log is None:
            self.process.terminate()
            _, stderr = self.process.communicate(timeout=15)
            self.log = stderr.decode()
        return self.log


@pytest.fixture
def setup(lab: Lab) -> Iterator[tuple[Sartd, Frr, Link]]:
    sart_ns, frr_ns = lab.namespace("sartd"), lab.namespace("frr")
    link = lab.link(sart_ns, frr_ns)
    frr = lab.start(
        Frr(
            frr_ns,
            BgpConfig(
                router_id=link.b.ipv4,
                local_as=PEER_AS,
                neighbors=(neighbor(link.a.ipv4, SART_AS, connect_retry=1),),
                routes=("10.60.1.0/24", "10.60.2.0/24", "10.60.3.0/24", "10.60.4.0/24"),
            ),
        )
    )
    sartd = Sartd(sart_ns, link)
    yield sartd, frr, link
    sartd.stop()


def test_routes_with_unusable_next_hops_are_ignored_and_the_session_stays(
    setup: tuple[Sartd, Frr, Link],
) -> None:
    sartd, frr, link = setup
    peer, ours = link.b.ipv4, link.a.ipv4
    frr.vtysh(
        "configure terminal",
        "ip prefix-list LOOP seq 5 permit 10.60.2.0/24",
        "ip prefix-list OURS seq 5 permit 10.60.3.0/24",
        "ip prefix-list OURS seq 10 permit 10.60.4.0/24",
        "route-map NH permit 10",
        "match ip address prefix-list LOOP",
        "set ip next-hop 127.0.0.1",
        "exit",
        "route-map NH permit 20",
        "match ip address prefix-list OURS",
        f"set ip next-hop {ours}",
        "exit",
        "route-map NH permit 30",
        "exit",
        "router bgp 65200",
        "address-family ipv4 unicast",
        f"neighbor {ours} route-map NH out",
    )
    sartd("bgp", "neighbor", "add", peer, str(PEER_AS), "--hold-time", "9")
    eventually(lambda: sartd.established(peer), what="session established")

    # FRR did send the rewritten next hops (its Adj-RIB-Out says so)...
    def advertised() -> dict[str, str]:
        sent = frr.vtysh_json(f"show bgp ipv4 unicast neighbors {ours} advertised-routes json")
        return {p: r.get("nextHop", "") for p, r in sent.get("advertisedRoutes", {}).items()}

    eventually(lambda: len(advertised()) == 4, what="FRR advertised its four routes")
    hops = advertised()
    assert hops["10.60.2.0/24"] == "127.0.0.1" and hops["10.60.3.0/24"] == ours, hops
    # ...and sartd took the good route only, counted the others (each time FRR sends them),
    # and stayed up.
    eventually(lambda: "10.60.1.0/24" in sartd.rib(), what="the good route in sartd's RIB")
    eventually(lambda: int(sartd.neighbor(peer).get("routes_ignored", "0")) >= 3, what="ignored")
    time.sleep(1)
    assert sartd.rib() == ["10.60.1.0/24"]
    state = sartd.neighbor(peer)
    assert state["state"] == "SESSION_STATE_ESTABLISHED" and state["prefixes_received"] == "1"
    assert frr.neighbor_state(ours) == "established"
    ignored = state["routes_ignored"]
    assert int(ignored) % 3 == 0  # three per time FRR sent them
    assert f"Routes ignored (bad next hop): {ignored}" in sartd("bgp", "neighbor", "get", peer)
    frr_info = frr.neighbor_info(ours)
    assert frr_info.get("connectionsDropped", 0) == 0
    log = sartd.stop()
    ignored_lines = [line for line in log.splitlines() if "routes ignored" in line]
    # logged once per cause: loopback, ours
    assert len(ignored_lines) == 2, ignored_lines


def test_max_prefixes_cease_restart_and_a_raised_limit(setup: tuple[Sartd, Frr, Link]) -> None:
    sartd, frr, link = setup
    peer, ours = link.b.ipv4, link.a.ipv4
    sartd("bgp", "neighbor", "add", peer, str(PEER_AS), "--hold-time", "9",
          "--max-prefixes", "3", "--max-prefixes-restart", "2")  # fmt: skip

    def cease_1_received() -> bool:
        info = frr.neighbor_info(ours)
        return info.get("lastErrorCodeSubcode") == "0601"

    eventually(cease_1_received, what="FRR received Cease / Maximum Number of Prefixes Reached")
    info = frr.neighbor_info(ours)
    assert "Maximum Number of Prefixes Reached" in info.get("lastNotificationReason", ""), info
    error = frr.last_error(ours)
    assert error is not None and (error.code, error.subcode, error.received) == (6, 1, True)
    assert sartd.rib() == []
    first = sartd.neighbor(peer)
    assert int(first["prefix_limit_exceeded"]) >= 1  # (it may be back up already: 2 s)
    assert "MAXIMUM_PREFIXES_REACHED" in first["last_error"] or "prefixes" in first["last_error"]

    # Held down for the restart time, then started again: and down again, FRR still sends 4.
    eventually(
        lambda: int(sartd.neighbor(peer).get("prefix_limit_exceeded", "0")) >= 2,
        timeout=30,
        what="the session came back after the restart time and hit the limit again",
    )
    assert frr.neighbor_info(ours).get("connectionsEstablished", 0) >= 2

    # The limit raised through the API: the session stays up with all four.
    sartd("bgp", "neighbor", "del", peer)
    sartd("bgp", "neighbor", "add", peer, str(PEER_AS), "--hold-time", "9",
          "--max-prefixes", "10", "--max-prefixes-warning", "30")  # fmt: skip
    eventually(lambda: sartd.established(peer), what="session up with the raised limit")
    eventually(lambda: len(sartd.rib()) == 4, what="all four routes")
    time.sleep(4)  # longer than the old restart time
    state = sartd.neighbor(peer)
    assert state["state"] == "SESSION_STATE_ESTABLISHED" and state["prefixes_received"] == "4"
    assert state.get("prefix_limit_warnings") == "1"  # 4 >= 30% of 10, once
    assert "Maximum prefixes: 10 (warning at 30%" in sartd("bgp", "neighbor", "get", peer)
    assert frr.neighbor_state(ours) == "established"
