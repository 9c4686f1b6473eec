"""Issue 16 against FRR 8, BIRD 2 and GoBGP 3: a real `sartd bgp` driven by the `sart` CLI.

- Next hops (RFC 4271 6.3): over an IPv4 and an IPv6 session, the router sends one good route
  of each family and routes with a next hop of a loopback address (127.0.0.1, ::1) and of
  sartd's own address on that session (FRR rewrites them with an outbound route-map, BIRD in
  its export filter, GoBGP originates them so: `BgpConfig.next_hops`); sartd's RIB has the
  good ones only, counts the others, and both sessions stay Established. Two combinations
  cannot be made, and are left out by design (`CANNOT_SEND`): BIRD refuses to send a next hop
  equal to its neighbor's address ("Invalid NEXT_HOP attribute - neighbor address", and
  withdraws the route instead), so it sends only the loopback ones; FRR refuses `set ipv6
  next-hop global ::1` as a config line, so it sends no IPv6 loopback next hop.
- Maximum prefixes (RFC 4486): the router announces one prefix more than sartd's limit and
  receives Cease / Maximum Number of Prefixes Reached (each router says so its own way:
  `Peer.last_error`); the session comes back after the restart time and goes down again
  while the router still sends too many; with the limit raised through the API it stays up.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from sart.testing.netns import Link
from sart.testing.peers import BgpConfig, Bird, Frr, GoBgp, Lab, Peer, neighbor
from sartd_process import Sartd
from waiting import eventually

SART_AS, PEER_AS = 65100, 65200
ROUTERS: dict[str, type[Peer]] = {"frr": Frr, "bird": Bird, "gobgp": GoBgp}
GOOD, LOOPBACK, OURS, OURS_TOO = "10.60.1.0/24", "10.60.2.0/24", "10.60.3.0/24", "10.60.4.0/24"
GOOD6, LOOPBACK6, OURS6 = "fd00:60:1::/64", "fd00:60:2::/64", "fd00:60:3::/64"
OURS_ADDRESS, OURS6_ADDRESS = "10.255.1.1", "fd00:255:1::1"  # sartd's: a Lab's first link, `a`
BAD_NEXT_HOPS = {
    LOOPBACK: "127.0.0.1", OURS: OURS_ADDRESS, OURS_TOO: OURS_ADDRESS,
    LOOPBACK6: "::1", OURS6: OURS6_ADDRESS,
}  # fmt: skip
# What a router cannot be made to send (see the module docstring).
CANNOT_SEND = {"frr": {LOOPBACK6}, "bird": {OURS, OURS_TOO, OURS6}, "gobgp": set()}


@attrs.frozen
class Beside:
    """sartd and a router on either end of a link."""

    sartd: Sartd
    router: Peer
    link: Link

    @property
    def peer(self) -> str:
        """The router's address (sartd's neighbor)."""
        return self.link.b.ipv4

    @property
    def ours(self) -> str:
        """sartd's address (the router's neighbor)."""
        return self.link.a.ipv4


@pytest.fixture(params=list(ROUTERS))
def beside_kind(request: pytest.FixtureRequest) -> str:
    """Each kind of router in turn."""
    kind: str = request.param
    return kind


@pytest.fixture
def beside(lab: Lab, tmp_path: Path, beside_kind: str) -> Iterator[Callable[..., Beside]]:
    """Starts sartd and a router of `beside_kind`, the router originating `routes`
    (`BgpConfig` options as keywords)."""
    made: list[Sartd] = []

    def start(**router_config: Any) -> Beside:
        sart_ns, peer_ns = lab.namespace("sartd"), lab.namespace(beside_kind)
        link = lab.link(sart_ns, peer_ns)
        config = BgpConfig(
            router_id=link.b.ipv4,
            local_as=PEER_AS,
            neighbors=(
                neighbor(link.a.ipv4, SART_AS, connect_retry=1),
                neighbor(link.a.ipv6, SART_AS, connect_retry=1),
            ),
            **router_config,
        )
        router = lab.start(ROUTERS[beside_kind](peer_ns, config))
        made.append(Sartd(sart_ns, SART_AS, link.a.ipv4, tmp_path))
        return Beside(made[-1], router, link)

    yield start
    for sartd in made:
        sartd.stop()


def test_routes_with_unusable_next_hops_are_ignored_and_the_session_stays(
    beside: Callable[..., Beside], beside_kind: str
) -> None:
    bad = {p: hop for p, hop in BAD_NEXT_HOPS.items() if p not in CANNOT_SEND[beside_kind]}
    lab = beside(routes=(GOOD, GOOD6, *bad), next_hops=bad.items())
    sartd, router = lab.sartd, lab.router
    assert (lab.link.a.ipv4, lab.link.a.ipv6) == (OURS_ADDRESS, OURS6_ADDRESS)
    sessions = {  # the router's address: sartd's, the routes with a bad next hop sent there
        lab.link.b.ipv4: (lab.link.a.ipv4, [p for p in bad if ":" not in p]),
        lab.link.b.ipv6: (lab.link.a.ipv6, [p for p in bad if ":" in p]),
    }
    for peer in sessions:
        sartd.cli("bgp", "neighbor", "add", peer, str(PEER_AS), "--hold-time", "9")
    for peer, (_, ignored) in sessions.items():
        eventually(lambda peer=peer: sartd.established(peer), what=f"session with {peer}")
        eventually(
            lambda peer=peer, ignored=ignored: (
                int(sartd.neighbor(peer).get("routes_ignored", "0")) >= len(ignored)
            ),
            what=f"routes from {peer} ignored",
        )

    # sartd took the good routes only, counted the others (each time they were sent), and
    # both sessions stayed up.
    eventually(lambda: sorted(sartd.rib()) == [GOOD, GOOD6], what="the good routes in the RIB")
    time.sleep(1)
    assert sorted(sartd.rib()) == [GOOD, GOOD6]
    for peer, (ours, ignored) in sessions.items():
        state = sartd.neighbor(peer)
        assert state["state"] == "SESSION_STATE_ESTABLISHED", state
        assert state["prefixes_received"] == "1", state
        assert router.neighbor_state(ours) == "established"
        count = state["routes_ignored"]
        assert int(count) % len(ignored) == 0  # all of them each time the router sent them
        assert f"Routes ignored (bad next hop): {count}" in sartd.cli(
            "bgp", "neighbor", "get", peer
        )
        error = router.last_error(ours)  # never told: no NOTIFICATION either way
        assert error is None or error.code is None, error
    log = sartd.stop()
    ignored_lines = [line for line in log.splitlines() if "routes ignored" in line]
    causes = sum(len({bad[p] for p in ignored}) for _, ignored in sessions.values())
    assert len(ignored_lines) == causes, ignored_lines  # logged once per cause and session


def test_max_prefixes_cease_restart_and_a_raised_limit(beside: Callable[..., Beside]) -> None:
    lab = beside(routes=(GOOD, LOOPBACK, OURS, OURS_TOO))
    sartd, router, peer = lab.sartd, lab.router, lab.peer
    sartd.cli("bgp", "neighbor", "add", peer, str(PEER_AS), "--hold-time", "9",
              "--max-prefixes", "3", "--max-prefixes-restart", "2")  # fmt: skip

    def cease_1_received() -> bool:
        error = router.last_error(lab.ours)
        return error is not None and (error.code, error.subcode, error.received) == (6, 1, True)

    eventually(cease_1_received, what="Cease / Maximum Number of Prefixes Reached received")
    if isinstance(router, Frr):
        info = router.neighbor_info(lab.ours)
        assert info.get("lastErrorCodeSubcode") == "0601", info
        assert "Maximum Number of Prefixes Reached" in info.get("lastNotificationReason", ""), info
    assert sartd.rib() == []
    first = sartd.neighbor(peer)
    assert int(first["prefix_limit_exceeded"]) >= 1  # (it may be back up already: 2 s)
    assert "MAXIMUM_PREFIXES_REACHED" in first["last_error"] or "prefixes" in first["last_error"]

    # Held down for the restart time, then started again: and down again, the router still
    # sends 4.
    eventually(
        lambda: int(sartd.neighbor(peer).get("prefix_limit_exceeded", "0")) >= 2,
        timeout=30,
        what="the session came back after the restart time and hit the limit again",
    )

    # The limit raised through the API: the session stays up with all four.
    sartd.cli("bgp", "neighbor", "del", peer)
    sartd.cli("bgp", "neighbor", "add", peer, str(PEER_AS), "--hold-time", "9",
              "--max-prefixes", "10", "--max-prefixes-warning", "30")  # fmt: skip
    eventually(lambda: sartd.established(peer), what="session up with the raised limit")
    eventually(lambda: len(sartd.rib()) == 4, what="all four routes")
    time.sleep(4)  # longer than the old restart time
    state = sartd.neighbor(peer)
    assert state["state"] == "SESSION_STATE_ESTABLISHED" and state["prefixes_received"] == "4"
    assert state.get("prefix_limit_warnings") == "1"  # 4 >= 30% of 10, once
    assert "Maximum prefixes: 10 (warning at 30%" in sartd.cli("bgp", "neighbor", "get", peer)
    assert router.neighbor_state(lab.ours) == "established"
