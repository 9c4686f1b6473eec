"""BFD detection time: how long after a link is cut sart's BFD session goes Down, against FRR's
bfdd doing the same, on the same kind of veth in the same run.

Two pairs in network namespaces, each over its own veth: sart's speaker (in this process, as
tests/interop/test_bfd.py runs it) with FRR, and FRR with FRR. Both run BFD at the same
intervals (300 ms, multiplier 3: detection at 900 ms after the last packet) under a BGP
session, as a router would. The pairs are cut in turn, `--cuts` times each: iptables DROP in
and out of the detecting side's interface (its carrier stays up, as behind a failed switch),
the clock read just before. The detecting side is then polled every millisecond until its
BFD session has left Up: sart's through its event loop, FRR's through a connection to
bfdd's vty socket (what vtysh talks to; about 50 us a query, where running vtysh takes
about 50 ms). The link is restored and the next cut waits for both sessions Up again and
for the intervals to be back at 300 ms.

    python benchmarks/bfd.py [--cuts 20] [--interval 300] [--multiplier 3]

Needs root and FRR (scripts/setup). Exits 1 if a cut was not detected within
multiplier x interval + 100 ms.
"""

from __future__ import annotations

import argparse
import json
import math
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
from netaddr import IPAddress

from sart.bfd.packet import SessionState
from sart.bgp.config import BfdConfig, NeighborConfig, SpeakerConfig
from sart.bgp.fsm import State
from sart.testing.netns import Namespace
from sart.testing.peers import BgpConfig, Frr, Lab, neighbor
from sart.testing.speaker_thread import SpeakerThread

SART_AS, FRR_AS, FRR_B_AS = 65100, 65200, 65300
POLL = 0.001  # seconds between two reads of the detecting side's state
SETTLE = 2.0  # seconds after Up again: the Poll Sequence back to the fast intervals is over


def cut_link(ns: Namespace, ifname: str, op: str) -> None:
    """As tests/interop/test_bfd.py: drop everything in and out of `ifname` (-A), or stop
    dropping (-D)."""
    ns.run(["iptables", op, "INPUT", "-i", ifname, "-j", "DROP"])
    ns.run(["iptables", op, "OUTPUT", "-o", ifname, "-j", "DROP"])


def percentile(values: list[float], p: float) -> float:
    """Nearest rank."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] if ordered else math.nan


class BfddVty:
    """One connection to bfdd's vty socket, speaking vtysh's framing: a command ends with a
    NUL, a reply with three NULs and a status byte."""

    def __init__(self, path: Path) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.connect(str(path))
        self.command("enable")

    def command(self, text: str) -> str:
        self._sock.sendall(text.encode() + b"\0")
        reply = b""
        while len(reply) < 4 or reply[-4:-1] != b"\0\0\0":
            chunk = self._sock.recv(65536)
            if not chunk:
                raise ConnectionError("bfdd closed its vty")
            reply += chunk
        if reply[-1] != 0:
            raise RuntimeError(f"bfdd: {text!r}: {reply[:-4].decode(errors='replace')}")
        return reply[:-4].decode()

    def status(self) -> str:
        """The first peer's status ("up", "down", "init"), "" for none."""
        peers: list[dict[str, Any]] = json.loads(self.command("show bfd peers json") or "[]")
        return str(peers[0]["status"]) if peers else ""

    def close(self) -> None:
        self._sock.close()


@attrs.define
class Report:
    interval: int
    multiplier: int
    sart: list[float] = attrs.field(factory=list)  # seconds from cut to BFD Down
    frr: list[float] = attrs.field(factory=list)
    sart_bgp_lag: list[float] = attrs.field(factory=list)  # BFD Down to BGP not Established
    cut_seconds: list[float] = attrs.field(factory=list)  # the two iptables commands
    failure: str = ""


def _wait(check: Callable[[], bool], timeout: float, what: str) -> float:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not in {timeout:g} s: {what}")
        time.sleep(POLL)
    return time.monotonic()


def run(cuts: int = 20, interval: int = 300, multiplier: int = 3) -> Report:
    report = Report(interval=interval, multiplier=multiplier)
    bfd = (interval, interval, multiplier)
    with Lab("bench-bfd") as lab:
        sart_ns, frr_ns = lab.namespace("sart"), lab.namespace("frr")
        frr_a_ns, frr_b_ns = lab.namespace("frra"), lab.namespace("frrb")
        sart_link, frr_link = lab.link(sart_ns, frr_ns), lab.link(frr_a_ns, frr_b_ns)

        def frr(ns: Namespace, router_id: str, asn: int, peer: str, peer_as: int) -> Frr:
            peers = (neighbor(peer, peer_as, hold_time=90, bfd=bfd),)
            return lab.start(Frr(ns, BgpConfig(router_id=router_id, local_as=asn, neighbors=peers)))

        sart_peer = frr(frr_ns, sart_link.b.ipv4, FRR_AS, sart_link.a.ipv4, SART_AS)
        frr_a = frr(frr_a_ns, frr_link.a.ipv4, FRR_AS, frr_link.b.ipv4, FRR_B_AS)
        frr_b = frr(frr_b_ns, frr_link.b.ipv4, FRR_B_AS, frr_link.a.ipv4, FRR_AS)
        peer = IPAddress(sart_link.b.ipv4)
        config = SpeakerConfig(
            asn=SART_AS,
            router_id=IPAddress(sart_link.a.ipv4),
            neighbors=(
                NeighborConfig(
                    address=peer,
                    asn=FRR_AS,
                    hold_time=90,
                    bfd=BfdConfig(min_rx=interval, min_tx=interval, multiplier=multiplier),
                ),
            ),
        )
        sart = SpeakerThread(sart_ns, config).start()
        vtys = [BfddVty(f._dir() / "bfdd.vty") for f in (frr_a, frr_b, sart_peer)]
        frr_a_vty = vtys[0]
        detection = multiplier * interval / 1000

        def sart_state() -> tuple[SessionState | None, State]:
            return sart.call(
                lambda s: (s.bfd.state(peer) if s.bfd else None, s.neighbors[peer].state)
            )

        def sart_fast() -> bool:
            session = sart.call(lambda s: s.bfd.session(peer) if s.bfd else None)
            seconds = session.variables.detection_time if session is not None else None
            return seconds is not None and abs(seconds - detection) < 1e-6

        def all_up() -> bool:
            return sart_state()[0] is SessionState.UP and all(v.status() == "up" for v in vtys)

        def measure_sart() -> None:
            cut = time.monotonic()
            cut_link(sart_ns, sart_link.a.ifname, "-A")
            report.cut_seconds.append(time.monotonic() - cut)
            try:
                down = _wait(lambda: sart_state()[0] is not SessionState.UP, 5, "sart: BFD Down")
                bgp = _wait(lambda: sart_state()[1] is not State.ESTABLISHED, 5, "sart: BGP down")
                report.sart.append(down - cut)
                report.sart_bgp_lag.append(bgp - down)
            finally:
                cut_link(sart_ns, sart_link.a.ifname, "-D")

        def measure_frr() -> None:
            cut = time.monotonic()
            cut_link(frr_a_ns, frr_link.a.ifname, "-A")
            report.cut_seconds.append(time.monotonic() - cut)
            try:
                down = _wait(lambda: frr_a_vty.status() != "up", 5, "FRR: BFD Down")
                report.frr.append(down - cut)
            finally:
                cut_link(frr_a_ns, frr_link.a.ifname, "-D")

        try:
            for number in range(cuts):
                for measure in (measure_sart, measure_frr):  # in turn: noise falls on both
                    _wait(all_up, 60, "every BFD session Up")
                    time.sleep(SETTLE)
                    _wait(sart_fast, 10, f"sart's detection time at {detection:g} s")
                    measure()
                print(
                    f"  cut {number + 1:>3}: sart {report.sart[-1] * 1000:6.1f} ms,"
                    f" FRR {report.frr[-1] * 1000:6.1f} ms",
                    flush=True,
                )
        except (TimeoutError, ConnectionError, RuntimeError) as error:
            report.failure = str(error)
        finally:
            for vty in vtys:
                vty.close()
            sart.stop()
    return report


def print_report(report: Report) -> bool:
    bound = report.multiplier * report.interval / 1000 + 0.1
    print(
        f"BFD {report.interval} ms x {report.multiplier} (detection {report.multiplier} x"
        f" {report.interval} ms after the last packet), veth + iptables DROP, cuts:"
        f" sart {len(report.sart)}, FRR {len(report.frr)}"
    )
    rows = (("sart <-> FRR", report.sart), ("FRR <-> FRR", report.frr))
    for name, values in rows:
        print(
            f"  {name:<13} p50 {percentile(values, 50) * 1000:6.1f} ms,"
            f" p99 {percentile(values, 99) * 1000:6.1f} ms,"
            f" min {min(values, default=math.nan) * 1000:6.1f} ms,"
            f" max {max(values, default=math.nan) * 1000:6.1f} ms"
        )
    for p in (50, 99):
        ratio = percentile(report.sart, p) / percentile(report.frr, p)
        print(f"  sart / FRR at p{p}: {ratio:.2f}")
    print(
        f"  sart: BGP down {max(report.sart_bgp_lag, default=0) * 1000:.1f} ms at most after"
        f" BFD Down; the cut itself (two iptables runs) took p50"
        f" {percentile(report.cut_seconds, 50) * 1000:.1f} ms, counted in both"
    )
    if report.failure:
        print(f"  failure: {report.failure}")
    ok = not report.failure and bool(report.sart) and bool(report.frr)
    ok = ok and max(report.sart + report.frr) < bound
    print(f"result: {'pass' if ok else 'FAIL'} (every cut detected within {bound * 1000:.0f} ms)")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cuts", type=int, default=20, help="link cuts per pair")
    parser.add_argument("--interval", type=int, default=300, help="min rx = min tx, ms")
    parser.add_argument("--multiplier", type=int, default=3)
    args = parser.parse_args()
    report = run(args.cuts, args.interval, args.multiplier)
    sys.exit(0 if print_report(report) else 1)


if __name__ == "__main__":
    main()
