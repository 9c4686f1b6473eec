"""BFD (RFC 5880/5881) between sartd's speaker and a real BFD daemon over a veth, for each of
FRR's bfdd and BIRD's `protocol bfd` (GoBGP has no BFD), over IPv4 and over IPv6 (RFC 5881 is
the same for both: UDP 3784, TTL / Hop Limit 255): the session comes Up on both sides, and a
cut of the link (iptables / ip6tables DROP both ways) is detected within multiplier x interval
(3 x 300 ms < 1 s) with the BGP session taken down at once, where the hold timer alone (90 s)
would keep it Established; once the link is back, BFD and BGP come back by themselves."""

from __future__ import annotations

import time

import pytest
from netaddr import IPAddress

from sart.bfd.packet import SessionState
from sart.bgp.config import BfdConfig, NeighborConfig, SpeakerConfig
from sart.bgp.fsm import State
from sart.testing.netns import Namespace
from sart.testing.peers import BgpConfig, Bird, Family, Frr, Lab, Peer, neighbor
from sart.testing.speaker_thread import SpeakerThread
from waiting import eventually

SART_AS, PEER_AS = 65100, 65200
BFD_PEERS: dict[str, type[Peer]] = {"frr": Frr, "bird": Bird}


def cut_link(ns: Namespace, ifname: str, op: str, family: Family) -> None:
    """Drop everything of `family` in and out of `ifname` (-A), or stop dropping (-D): the
    link is cut with its carrier up, as a failed switch between the two would (no netem
    here)."""
    tables = "iptables" if family == "ipv4" else "ip6tables"
    ns.run([tables, op, "INPUT", "-i", ifname, "-j", "DROP"])
    ns.run([tables, op, "OUTPUT", "-o", ifname, "-j", "DROP"])


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
@pytest.mark.parametrize("kind", list(BFD_PEERS))
def test_bfd_takes_bgp_down_at_once(lab: Lab, kind: str, family: Family) -> None:
    sart_ns, peer_ns = lab.namespace("sart"), lab.namespace(kind)
    link = lab.link(sart_ns, peer_ns)
    ours, theirs = (link.a.ipv4, link.b.ipv4) if family == "ipv4" else (link.a.ipv6, link.b.ipv6)
    router = lab.start(
        BFD_PEERS[kind](
            peer_ns,
            BgpConfig(
                router_id=link.b.ipv4,
                local_as=PEER_AS,
                neighbors=(neighbor(ours, SART_AS, hold_time=90, bfd=(300, 300, 3)),),
            ),
        )
    )
    config = SpeakerConfig(
        asn=SART_AS,
        router_id=IPAddress(link.a.ipv4),
        neighbors=(
            NeighborConfig(
                address=IPAddress(theirs),
                asn=PEER_AS,
                hold_time=90,
                bfd=BfdConfig(min_rx=300, min_tx=300, multiplier=3),
            ),
        ),
    )
    sart = SpeakerThread(sart_ns, config).start()
    peer = IPAddress(theirs)
    try:

        def bfd_state() -> SessionState | None:
            return sart.call(lambda s: s.bfd.state(peer) if s.bfd else None)

        def bgp_state() -> State:
            return sart.call(lambda s: s.neighbors[peer].state)

        eventually(lambda: bfd_state() is SessionState.UP, 30, "BFD Up in sart")
        eventually(lambda: bgp_state() is State.ESTABLISHED, 30, "BGP Established")
        eventually(lambda: router.bfd_states() == {ours: "up"}, 10, f"BFD Up in {kind}")

        # The Poll Sequences to 300 ms are over: the peer's detection time is 900 ms.
        def detection_time() -> float | None:
            return sart.call(lambda s: s.bfd.session(peer).variables.detection_time)

        eventually(lambda: abs((detection_time() or 0) - 0.9) < 1e-6, 10, "fast intervals")

        cut = time.monotonic()
        cut_link(sart_ns, link.a.ifname, "-A", family)
        down = eventually(
            lambda: bgp_state() is not State.ESTABLISHED, 5, "BGP down", interval=0.005
        )
        detected = down - cut
        print(f"sart detected the cut and took BGP down in {detected * 1000:.0f} ms")
        assert detected < 1.0
        assert bfd_state() is SessionState.DOWN
        last_error = sart.call(lambda s: s.neighbors[peer].stats.last_error)
        assert "BFD session down" in last_error
        eventually(lambda: router.bfd_states() != {ours: "up"}, 5, f"BFD down in {kind}")
        router.wait_not_established(ours, timeout=5)  # its BGP session follows its BFD

        cut_link(sart_ns, link.a.ifname, "-D", family)
        eventually(lambda: bfd_state() is SessionState.UP, 30, "BFD Up again")
        eventually(lambda: bgp_state() is State.ESTABLISHED, 60, "BGP Established again")
        eventually(lambda: router.bfd_states() == {ours: "up"}, 10, f"BFD Up again in {kind}")
    finally:
        sart.stop()
