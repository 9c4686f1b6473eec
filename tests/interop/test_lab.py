"""Self-tests of the interop lab, without sart's speaker: FRR routes between BIRD and GoBGP.

    BIRD (AS 65001) --- FRR router (AS 65000) --- GoBGP (AS 65002)
     10.255.1.2          10.255.1.1 / 10.255.2.1     10.255.2.2
     fd00:255:1::2       fd00:255:1::1 / 2::1        fd00:255:2::2

BIRD and GoBGP both originate the same anycast /32 and /128; FRR must install an ECMP route.
Hold times are 3 s so a frozen peer is noticed quickly. The tests share one topology and run in
order; each one that disturbs it puts it back.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sart.testing.netns import LabError, Namespace, list_namespaces
from sart.testing.peers import (
    BgpConfig,
    Bird,
    DaemonError,
    Frr,
    GoBgp,
    Lab,
    LastError,
    Line3,
    Peer,
    neighbor,
    render_gobgp,
    wait_for,
    wait_kernel_nexthops,
)

pytestmark = pytest.mark.interop

ROUTER_AS, BIRD_AS, GOBGP_AS = 65000, 65001, 65002
ANYCAST4 = "10.0.100.10/32"
ANYCAST6 = "fd00:100::10/128"
HOLD = 3


@dataclass(frozen=True)
class Routed:
    lab: Lab
    topo: Line3
    frr: Frr
    bird: Bird
    gobgp: GoBgp

    @property
    def bird4(self) -> str:
        return self.topo.left_link.b.ipv4

    @property
    def bird6(self) -> str:
        return self.topo.left_link.b.ipv6

    @property
    def gobgp4(self) -> str:
        return self.topo.right_link.b.ipv4

    @property
    def gobgp6(self) -> str:
        return self.topo.right_link.b.ipv6

    def sessions(self) -> Iterator[tuple[Peer, str]]:
        """Every (daemon, neighbor address) pair of the topology."""
        left, right = self.topo.left_link, self.topo.right_link
        for addr in (self.bird4, self.bird6, self.gobgp4, self.gobgp6):
            yield self.frr, addr
        yield self.bird, left.a.ipv4
        yield self.bird, left.a.ipv6
        yield self.gobgp, right.a.ipv4
        yield self.gobgp, right.a.ipv6

    def wait_all_established(self, timeout: float = 30.0) -> None:
        for peer, addr in self.sessions():
            peer.wait_established(addr, timeout=timeout)


@pytest.fixture(scope="module")
def routed(module_lab: Lab, line3: Line3) -> Routed:
    left, right = line3.left_link, line3.right_link
    frr = Frr(
        line3.router,
        BgpConfig(
            router_id=left.a.ipv4,
            local_as=ROUTER_AS,
            max_paths=4,
            neighbors=[
                neighbor(left.b.ipv4, BIRD_AS, hold_time=HOLD),
                neighbor(left.b.ipv6, BIRD_AS, hold_time=HOLD),
                neighbor(right.b.ipv4, GOBGP_AS, hold_time=HOLD, graceful_restart=True),
                neighbor(right.b.ipv6, GOBGP_AS, hold_time=HOLD, graceful_restart=True),
            ],
        ),
    )
    bird = Bird(
        line3.left,
        BgpConfig(
            router_id=left.b.ipv4,
            local_as=BIRD_AS,
            routes=[ANYCAST4, ANYCAST6],
            neighbors=[
                neighbor(left.a.ipv4, ROUTER_AS, hold_time=HOLD),
                neighbor(left.a.ipv6, ROUTER_AS, hold_time=HOLD),
            ],
        ),
    )
    gobgp = GoBgp(
        line3.right,
        BgpConfig(
            router_id=right.b.ipv4,
            local_as=GOBGP_AS,
            routes=[ANYCAST4, ANYCAST6],
            neighbors=[
                neighbor(right.a.ipv4, ROUTER_AS, hold_time=HOLD, graceful_restart=True),
                neighbor(right.a.ipv6, ROUTER_AS, hold_time=HOLD, graceful_restart=True),
            ],
        ),
    )
    for peer in (frr, bird, gobgp):
        module_lab.start(peer)
    return Routed(module_lab, line3, frr, bird, gobgp)


def test_sessions_establish(routed: Routed) -> None:
    routed.wait_all_established()
    for peer, addr in routed.sessions():
        assert peer.neighbor_state(addr) == "established"


def test_anycast_route_is_ecmp_in_the_kernel(routed: Routed) -> None:
    both = {routed.bird4, routed.gobgp4}
    assert set(routed.frr.wait_route(ANYCAST4, nexthops=both)) == both
    hops = wait_kernel_nexthops(routed.topo.router, ANYCAST4, nexthops=both)
    assert hops == sorted(both)


def test_ipv6_routes_both_ways(routed: Routed) -> None:
    both = {routed.bird6, routed.gobgp6}
    routed.frr.wait_route(ANYCAST6, nexthops=both)
    # FRR installs one next hop per speaker (BIRD sends a link-local one as well, which wins).
    assert len(wait_kernel_nexthops(routed.topo.router, ANYCAST6, count=2)) == 2

    routed.frr.announce("fd00:50::/64", "10.0.50.0/24")
    try:
        router_left, router_right = routed.topo.left_link.a, routed.topo.right_link.a
        assert routed.bird.wait_route("fd00:50::/64") == [router_left.ipv6]
        assert routed.gobgp.wait_route("fd00:50::/64") == [router_right.ipv6]
        assert routed.bird.wait_route("10.0.50.0/24") == [router_left.ipv4]
        assert routed.gobgp.wait_route("10.0.50.0/24") == [router_right.ipv4]
        assert routed.frr.routes("ipv6")["fd00:50::/64"] == ["::"]
    finally:
        routed.frr.withdraw("fd00:50::/64", "10.0.50.0/24")
    routed.bird.wait_no_route("fd00:50::/64")
    routed.gobgp.wait_no_route("10.0.50.0/24")


def test_withdraw_by_gobgp_is_seen_by_frr(routed: Routed) -> None:
    routed.gobgp.withdraw(ANYCAST4)
    assert routed.frr.wait_route(ANYCAST4, nexthops=[routed.bird4]) == [routed.bird4]
    wait_kernel_nexthops(routed.topo.router, ANYCAST4, nexthops=[routed.bird4])

    routed.gobgp.announce(ANYCAST4)
    routed.frr.wait_route(ANYCAST4, nexthops={routed.bird4, routed.gobgp4})
    wait_kernel_nexthops(routed.topo.router, ANYCAST4, count=2)


def test_frozen_peer_is_dropped_by_the_hold_timer(routed: Routed) -> None:
    frr, bird = routed.frr, routed.bird
    frr.wait_established(routed.bird4)
    started = time.monotonic()
    bird.freeze()
    try:
        frr.wait_not_established(routed.bird4, timeout=HOLD + 10)
        elapsed = time.monotonic() - started
        error = frr.last_error(routed.bird4)
    finally:
        bird.thaw()
    assert elapsed >= HOLD - 1
    assert error is not None
    assert (error.code, error.subcode, error.received) == (4, 0, False), error
    frr.wait_route(ANYCAST4, nexthops=[routed.gobgp4])  # BIRD's paths are gone

    routed.wait_all_established()
    frr.wait_route(ANYCAST4, nexthops={routed.bird4, routed.gobgp4})


def test_graceful_restart_keeps_routes_while_the_peer_is_down(routed: Routed) -> None:
    """GoBGP is killed (no NOTIFICATION) and started again with the restart bit: FRR, the
    helper, keeps its paths meanwhile. FRR then waits for GoBGP to reconnect, which GoBGP 3
    does at most every 5 s, so this test takes 5-10 s."""
    frr, gobgp = routed.frr, routed.gobgp
    routed.frr.wait_route(ANYCAST4, nexthops={routed.bird4, routed.gobgp4})
    seen: dict[str, list[str]] = {}

    def while_down() -> None:
        frr.wait_not_established(routed.gobgp4, timeout=10)
        time.sleep(1)  # a non-GR speaker would have flushed the paths by now
        seen["down"] = frr.paths(ANYCAST4)

    gobgp.restart(graceful=True, while_down=while_down)
    assert set(seen["down"]) == {routed.bird4, routed.gobgp4}
    routed.wait_all_established()
    frr.wait_route(ANYCAST4, nexthops={routed.bird4, routed.gobgp4})
    wait_kernel_nexthops(routed.topo.router, ANYCAST4, count=2)


def test_plain_restart_sends_a_cease(routed: Routed) -> None:
    routed.bird.restart()
    error = wait_for(
        lambda: e if (e := routed.frr.last_error(routed.bird4)) and e.code == 6 else None,
        timeout=10,
        what="FRR to report BIRD's Cease",
    )
    assert error.received, error
    routed.wait_all_established()


def _wait_notification(peer: Peer, address: str, timeout: float = 20.0) -> LastError:
    """The last error `peer` reports for `address`, once it is about a NOTIFICATION (before
    that FRR reports reset reasons such as "Waiting for peer OPEN")."""
    return wait_for(
        lambda: e if (e := peer.last_error(address)) and e.received is not None else None,
        timeout=timeout,
        what=f"a NOTIFICATION on {peer} for {address}",
        describe=lambda: f"{peer.last_error(address)}\n{peer.log_tail(20)}",
    )


def test_wrong_as_gives_a_readable_error(lab: Lab) -> None:
    """Four edges around an FRR router, each session with one side expecting the wrong AS:
    the side that notices sends Bad Peer AS (2/2) and both sides report it."""
    router = lab.namespace("router")
    edges: list[tuple[type[Bird] | type[GoBgp], bool]] = [
        (Bird, True),  # True: the edge is wrong about the router's AS
        (GoBgp, True),
        (Bird, False),  # False: the router is wrong about the edge's AS
        (GoBgp, False),
    ]
    links = [lab.link(router, lab.namespace(f"edge{i}")) for i in range(len(edges))]
    frr = lab.start(
        Frr(
            router,
            BgpConfig(
                router_id=links[0].a.ipv4,
                local_as=ROUTER_AS,
                neighbors=[
                    neighbor(ln.b.ipv4, 65010 + i if edge_wrong else 65090 + i)
                    for i, (ln, (_, edge_wrong)) in enumerate(zip(links, edges, strict=True))
                ],
            ),
        )
    )
    peers: list[Peer] = []
    for i, (ln, (kind, edge_wrong)) in enumerate(zip(links, edges, strict=True)):
        config = BgpConfig(
            router_id=ln.b.ipv4,
            local_as=65010 + i,
            neighbors=[neighbor(ln.a.ipv4, 65099 if edge_wrong else ROUTER_AS)],
        )
        peers.append(lab.start(kind(ln.b.namespace, config)))

    for ln, peer, (_, edge_wrong) in zip(links, peers, edges, strict=True):
        at_edge = _wait_notification(peer, ln.a.ipv4)
        at_router = _wait_notification(frr, ln.b.ipv4)
        assert at_router.received is edge_wrong, at_router
        assert (at_router.code, at_router.subcode) == (2, 2), at_router
        assert "Bad Peer AS" in at_router.text
        assert at_edge.received is not edge_wrong, at_edge
        if isinstance(peer, GoBgp) and not edge_wrong:
            # GoBGP 3 does not log the code of a NOTIFICATION it gets before Established.
            assert at_edge.code is None
        else:
            assert (at_edge.code, at_edge.subcode) == (2, 2), at_edge
            assert re.search("bad peer as|as number mismatch", at_edge.text, re.IGNORECASE)
        assert frr.neighbor_state(ln.b.ipv4) != "established"


def test_a_daemon_that_cannot_start_says_why(lab: Lab) -> None:
    ns = lab.namespace("solo")
    config = BgpConfig(router_id="10.255.9.1", local_as=65009)
    lab.start(GoBgp(ns, config))
    same_api = lab.add(GoBgp(ns, config, name="same-api"))
    with pytest.raises(DaemonError, match="port 50051 is already in use"):
        same_api.start()
    # Its own API port, but BGP's port 179 is taken: gobgpd exits, and its log says why.
    same_bgp = lab.add(GoBgp(ns, config, name="same-bgp", api_port=50052))
    with pytest.raises(DaemonError, match=r"(?s)exited with .*address already in use"):
        same_bgp.start()
    assert same_api.workdir is None and same_bgp.workdir is None
    # A config line FRR refuses is an error too, not a silently different router.
    bad = BgpConfig(router_id="10.255.9.1", local_as=65009, routes=["10.9.0.0/24"], max_paths=999)
    bad_frr = lab.add(Frr(lab.namespace("frr"), bad))
    with pytest.raises(DaemonError, match=r"rejected config lines(?s:.*)maximum-paths 999"):
        bad_frr.start()
    assert bad_frr.workdir is None


@pytest.mark.parametrize("kind", [Frr, Bird, GoBgp], ids=lambda k: k.kind)
def test_every_option_renders_a_config_the_daemon_accepts(
    lab: Lab, kind: type[Frr] | type[Bird] | type[GoBgp]
) -> None:
    """Options the topology tests do not use (iBGP, passive, multihop, ports, update source,
    both families on one session, no hold timer, next hops of our choosing, BFD where the
    daemon has it) still give a config each daemon loads."""
    ns = lab.namespace("options")
    ns.add_address("lo", "10.0.0.1/32")
    config = BgpConfig(
        router_id="10.0.0.1",
        local_as=65000,
        max_paths=4,
        listen_port=1179,
        restart_time=30,
        routes=["10.1.0.0/24", "fd00:1::/64", "10.2.0.0/24", "fd00:2::/64"],
        next_hops=[("10.2.0.0/24", "10.0.0.9"), ("fd00:2::/64", "fd00::9")],
        neighbors=[
            neighbor(
                "10.0.0.2",
                65000,
                passive=True,
                graceful_restart=True,
                multihop=3,
                port=1179,
                local_address="10.0.0.1",
                families=("ipv4", "ipv6"),
            ),
            neighbor("fd00::2", 65001, hold_time=0, connect_retry=5, multihop=2),
            neighbor("fd00::3", 65001, bfd=None if kind is GoBgp else (300, 300, 3)),
        ],
    )
    peer = lab.start(kind(ns, config))
    assert set(peer.neighbor_states()) == {"10.0.0.2", "fd00::2", "fd00::3"}
    assert peer.wait_route("10.1.0.0/24") == ["0.0.0.0"]
    assert peer.wait_route("fd00:1::/64") == ["::"]


def test_bfd_with_gobgp_is_refused_by_name() -> None:
    config = BgpConfig(
        router_id="10.0.0.1",
        local_as=65000,
        neighbors=[neighbor("10.0.0.2", 65001, bfd=(300, 300, 3))],
    )
    with pytest.raises(LabError, match=r"GoBGP has no BFD, but neighbors \['10.0.0.2'\]"):
        render_gobgp(config)


def test_teardown_leaves_nothing_behind() -> None:
    lab = Lab("teardown")
    ns = lab.namespace("solo")
    other = lab.namespace("other")
    lab.link(ns, other)
    peer = lab.start(Bird(ns, BgpConfig(router_id="10.255.1.1", local_as=65009)))
    peer.freeze()  # even a stopped daemon goes
    pid, workdir = peer.pid, peer.workdir
    assert workdir is not None
    lab.close()
    assert ns.name not in list_namespaces()
    assert other.name not in list_namespaces()
    assert not Path(f"/proc/{pid}").exists()
    assert not workdir.exists()


def test_namespace_delete_kills_what_runs_inside() -> None:
    with Namespace.create("killme") as ns:
        proc = ns.popen(["sleep", "60"])
    assert proc.wait(timeout=5) is not None
    assert not ns.exists()
    with pytest.raises(LabError):
        ns.ip("link")
