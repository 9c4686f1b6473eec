"""BFD (RFC 5880/5881) between sartd's speaker and FRR's bfdd over a veth: the session comes
Up on both sides, and a cut of the link (iptables DROP both ways) is detected within
multiplier x interval (3 x 300 ms < 1 s) with the BGP session taken down at once, where the
hold timer alone (90 s) would keep it Established."""

from __future__ import annotations

import time

from netaddr import IPAddress

from sart.bfd.packet import SessionState
from sart.bgp.config import BfdConfig, NeighborConfig, SpeakerConfig
from sart.bgp.fsm import State
from sart.testing.netns import Namespace
from sart.testing.peers import BgpConfig, Frr, Lab, neighbor
from sart.testing.speaker_thread import SpeakerThread

SART_AS, PEER_AS = 65100, 65200


def eventually(check: object, timeout: float, what: str) -> float:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"not in {timeout} s: {what}")
        time.sleep(0.005)
    return time.monotonic()


def cut_link(ns: Namespace, ifname: str, op: str) -> None:
    """Drop everything in and out of `ifname` (-A), or stop dropping (-D): the link is cut
    with its carrier up, as a failed switch between the two would (no netem here)."""
    ns.run(["iptables", op, "INPUT", "-i", ifname, "-j", "DROP"])
    ns.run(["iptables", op, "OUTPUT", "-o", ifname, "-j", "DROP"])


def test_bfd_with_frr_takes_bgp_down_at_once(lab: Lab) -> None:
    sart_ns, frr_ns = lab.namespace("sart"), lab.namespace("frr")
    link = lab.link(sart_ns, frr_ns)
    frr = lab.start(
        Frr(
            frr_ns,
            BgpConfig(
                router_id=link.b.ipv4,
                local_as=PEER_AS,
                neighbors=(neighbor(link.a.ipv4, SART_AS, hold_time=90, bfd=(300, 300, 3)),),
            ),
        )
    )
    config = SpeakerConfig(
        asn=SART_AS,
        router_id=IPAddress(link.a.ipv4),
        neighbors=(
            NeighborConfig(
                address=IPAddress(link.b.ipv4),
                asn=PEER_AS,
                hold_time=90,
                bfd=BfdConfig(min_rx=300, min_tx=300, multiplier=3),
            ),
        ),
    )
    sart = SpeakerThread(sart_ns, config).start()
    peer = IPAddress(link.b.ipv4)
    try:

        def bfd_state() -> SessionState | None:
            return sart.call(lambda s: s.bfd.state(peer) if s.bfd else None)

        def bgp_state() -> State:
            return sart.call(lambda s: s.neighbors[peer].state)

        eventually(lambda: bfd_state() is SessionState.UP, 30, "BFD Up in sart")
        eventually(lambda: bgp_state() is State.ESTABLISHED, 30, "BGP Established")
        frr_peers = frr.vtysh_json("show bfd peers json")
        assert [p["status"] for p in frr_peers] == ["up"], frr_peers

        # The Poll Sequences to 300 ms are over: FRR's detection time is 900 ms.
        def detection_time() -> float | None:
            return sart.call(lambda s: s.bfd.session(peer).variables.detection_time)

        eventually(
            lambda: abs((detection_time() or 0) - 0.9) < 1e-6,
            10,
            "fast intervals",
        )

        cut = time.monotonic()
        cut_link(sart_ns, link.a.ifname, "-A")
        down = eventually(lambda: bgp_state() is not State.ESTABLISHED, 5, "BGP down")
        detected = down - cut
        print(f"sart detected the cut and took BGP down in {detected * 1000:.0f} ms")
        assert detected < 1.0
        assert bfd_state() is SessionState.DOWN
        last_error = sart.call(lambda s: s.neighbors[peer].stats.last_error)
        assert "BFD session down" in last_error

        cut_link(sart_ns, link.a.ifname, "-D")
        eventually(lambda: bfd_state() is SessionState.UP, 30, "BFD Up again")
        eventually(lambda: bgp_state() is State.ESTABLISHED, 60, "BGP Established again")
    finally:
        sart.stop()
