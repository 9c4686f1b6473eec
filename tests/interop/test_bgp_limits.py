"""Issue 16 against FRR 8, BIRD 2 and GoBGP 3: a real `sartd bgp` driven by the `sart` CLI.

- Next hops (RFC 4271 6.3): the router sends one good route and routes with a NEXT_HOP of a
  loopback address and of sartd's own address (FRR rewrites them with an outbound route-map,
  BIRD in its export filter, GoBGP originates them so: `BgpConfig.next_hops`); sartd's RIB
  has the good one only, counts the others, and the session stays Established. BIRD cannot
  be made to send sartd's own address: it refuses to send a NEXT_HOP equal to its neighbor's
  address ("Invalid NEXT_HOP attribute - neighbor address", and withdraws the route
  instead), so against BIRD only the loopback next hop is sent, by design.
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
OURS_ADDRESS = "10.255.1.1"  # sartd's, the `a` end of a Lab's first link


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
            neighbors=(neighbor(link.a.ipv4, SART_AS, connect_retry=1),),
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
    bad = {LOOPBACK: "127.0.0.1", OURS: OURS_ADDRESS, OURS_TOO: OURS_ADDRESS}
    if beside_kind == "bird":  # it will not send its neighbor's address (see above)
        bad = {LOOPBACK: "127.0.0.1"}
    causes = len(set(bad.values()))
    lab = beside(routes=(GOOD, *bad), next_hops=bad.items())
    sartd, router, peer = lab.sartd, lab.router, lab.peer
    assert lab.ours == OURS_ADDRESS
    sartd.cli("bgp", "neighbor", "add", peer, str(PEER_AS), "--hold-time", "9")
    eventually(lambda: sartd.established(peer), what="session established")

    # sartd took the good route only, counted the others (each time they were sent), and
    # stayed up.
    eventually(lambda: GOOD in sartd.rib(), what="the good route in sartd's RIB")
    eventually(
        lambda: int(sartd.neighbor(peer).get("routes_ignored", "0")) >= len(bad), what="ignored"
    )
    time.sleep(1)
    assert sartd.rib() == [GOOD]
    state = sartd.neighbor(peer)
    assert state["state"] == "SESSION_STATE_ESTABLISHED" and state["prefixes_received"] == "1"
    assert router.neighbor_state(lab.ours) == "established"
    ignored = state["routes_ignored"]
    assert int(ignored) % len(bad) == 0  # all of them each time the router sent them
    assert f"Routes ignored (bad next hop): {ignored}" in sartd.cli("bgp", "neighbor", "get", peer)
    error = router.last_error(lab.ours)  # never told: no NOTIFICATION either way
    assert error is None or error.code is None, error
    log = sartd.stop()
    ignored_lines = [line for line in log.splitlines() if "routes ignored" in line]
    assert len(ignored_lines) == causes, ignored_lines  # logged once per cause


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
