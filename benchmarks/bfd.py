"""BFD detection time: how long after a link is cut sart's BFD session goes Down, against FRR's
bfdd and BIRD's `protocol bfd` doing the same, on the same kind of veth in the same run.

Five pairs in network namespaces, each over its own veth: sart's speaker (in this process, as
tests/interop/test_bfd.py runs it) with FRR over IPv4, with FRR over IPv6 and with BIRD over
IPv4; FRR with FRR and BIRD with BIRD. All run BFD at the same intervals (300 ms, multiplier 3:
detection at 900 ms after the last packet) under a BGP session, as a router would. The pairs
are cut in turn, `--cuts` times each: iptables (ip6tables) DROP in and out of the detecting
side's interface (its carrier stays up, as behind a failed switch), the clock read just
before. The detecting side is then polled every millisecond until its BFD session has left
Up: sart's through its event loop, FRR's through a connection to bfdd's vty socket (what
vtysh talks to; about 50 us a query, where running vtysh takes about 50 ms), BIRD's through
its control socket (what birdc talks to). The link is restored and the next cut waits for
every session Up again and for the intervals to be back at 300 ms. Each sart pair is
compared with the pair of the daemon it talks to: sart <-> FRR with FRR <-> FRR, sart <->
BIRD with BIRD <-> BIRD.

    python benchmarks/bfd.py [--cuts 20] [--interval 300] [--multiplier 3]

Needs root, FRR and BIRD (scripts/setup). Exits 1 if a cut was not detected within
multiplier x interval + 100 ms.
"""

from __future__ import annotations

import argparse
import json
import math
import re
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
from sart.testing.netns import Link, Namespace
from sart.testing.peers import (
    BgpConfig,
    Bird,
    Family,
    Frr,
    Lab,
    Peer,
    neighbor,
    parse_bird_bfd_sessions,
)
from sart.testing.speaker_thread import SpeakerThread

SART_AS, ROUTER_AS, ROUTER_B_AS = 65100, 65200, 65300
POLL = 0.001  # seconds between two reads of the detecting side's state
SETTLE = 2.0  # seconds after Up again: the Poll Sequence back to the fast intervals is over
SART_FRR, FRR_FRR, SART_FRR_V6 = "sart <-> FRR", "FRR <-> FRR", "sart <-> FRR, IPv6"
SART_BIRD, BIRD_BIRD = "sart <-> BIRD", "BIRD <-> BIRD"
PAIRS = (SART_FRR, FRR_FRR, SART_FRR_V6, SART_BIRD, BIRD_BIRD)  # cut in this order
# Each sart pair and the pair of the daemon it talks to, measured the same way.
COMPARED = ((SART_FRR, FRR_FRR), (SART_FRR_V6, FRR_FRR), (SART_BIRD, BIRD_BIRD))


def cut_link(ns: Namespace, ifname: str, op: str, family: Family = "ipv4") -> None:
    """As tests/interop/test_bfd.py: drop everything of `family` in and out of `ifname` (-A),
    or stop dropping (-D)."""
    tables = "iptables" if family == "ipv4" else "ip6tables"
    ns.run([tables, op, "INPUT", "-i", ifname, "-j", "DROP"])
    ns.run([tables, op, "OUTPUT", "-o", ifname, "-j", "DROP"])


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

    def states(self) -> dict[str, str]:
        """Each peer's status ("up", "down", "init") by address."""
        peers: list[dict[str, Any]] = json.loads(self.command("show bfd peers json") or "[]")
        return {str(IPAddress(p["peer"])): str(p["status"]) for p in peers}

    def close(self) -> None:
        self._sock.close()


# A reply line of BIRD's control socket: a 4-digit code, then "-" (more follow) or " " (the
# last line), or a single space (continuing the previous code).
_BIRD_REPLY_LINE = re.compile(r"^(?:(\d{4})([- ])| )(.*)$")


class BirdControl:
    """One connection to BIRD's control socket, speaking birdc's protocol: a command is a line,
    the reply lines carry a code, the last one with a space after it."""

    def __init__(self, path: Path) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.connect(str(path))
        self._buffer = b""
        self._reply()  # the greeting

    def _line(self) -> str:
        while b"\n" not in self._buffer:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise ConnectionError("BIRD closed its control socket")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()

    def _reply(self) -> str:
        lines = []
        while True:
            m = _BIRD_REPLY_LINE.match(self._line())
            if m is None:
                raise RuntimeError("BIRD: a reply line without a code")
            code, more, text = m.groups()
            if code is not None and code[0] in "89":
                raise RuntimeError(f"BIRD: {text}")
            lines.append(text)
            if more == " ":
                return "\n".join(lines)

    def states(self) -> dict[str, str]:
        """`show bfd sessions`: each session's state in lower case by address."""
        self._sock.sendall(b"show bfd sessions\n")
        return parse_bird_bfd_sessions(self._reply())

    def close(self) -> None:
        self._sock.close()


@attrs.frozen
class Pair:
    """Two BFD speakers over `link`; the `a` end detects the cut: `detected()` says whether
    its session with the `b` end has left Up, `bgp_down()` whether its BGP session has."""

    name: str
    link: Link
    family: Family
    detected: Callable[[], bool]
    bgp_down: Callable[[], bool] | None = None


@attrs.define
class Report:
    interval: int
    multiplier: int
    detected: dict[str, list[float]] = attrs.field(factory=dict)  # seconds from cut to Down
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


def _address(link: Link, end: str, family: Family) -> str:
    endpoint = link.a if end == "a" else link.b
    return endpoint.ipv4 if family == "ipv4" else endpoint.ipv6


def run(cuts: int = 20, interval: int = 300, multiplier: int = 3) -> Report:
    report = Report(interval=interval, multiplier=multiplier)
    bfd = (interval, interval, multiplier)
    with Lab("bench-bfd") as lab:
        sart_ns = lab.namespace("sart")

        def router(
            kind: type[Peer],
            link: Link,
            end: str,
            asns: tuple[int, int],
            families: tuple[Family, ...] = ("ipv4",),
        ) -> Peer:
            """A router at the `end` of `link` (AS `asns[0]`), with BFD under a BGP session with
            the other end (AS `asns[1]`) over each of `families`."""
            other = "a" if end == "b" else "b"
            peers = tuple(
                neighbor(_address(link, other, f), asns[1], hold_time=90, bfd=bfd) for f in families
            )
            config = BgpConfig(
                router_id=_address(link, end, "ipv4"), local_as=asns[0], neighbors=peers
            )
            endpoint = link.a if end == "a" else link.b
            return lab.start(kind(endpoint.namespace, config))

        sart_frr = lab.link(sart_ns, lab.namespace("frr"))
        sart_bird = lab.link(sart_ns, lab.namespace("bird"))
        frr_frr = lab.link(lab.namespace("frra"), lab.namespace("frrb"))
        bird_bird = lab.link(lab.namespace("birda"), lab.namespace("birdb"))
        frr = router(Frr, sart_frr, "b", (ROUTER_AS, SART_AS), ("ipv4", "ipv6"))
        bird = router(Bird, sart_bird, "b", (ROUTER_AS, SART_AS))
        frr_a = router(Frr, frr_frr, "a", (ROUTER_AS, ROUTER_B_AS))
        frr_b = router(Frr, frr_frr, "b", (ROUTER_B_AS, ROUTER_AS))
        bird_a = router(Bird, bird_bird, "a", (ROUTER_AS, ROUTER_B_AS))
        bird_b = router(Bird, bird_bird, "b", (ROUTER_B_AS, ROUTER_AS))

        sart_peers = {
            SART_FRR: IPAddress(sart_frr.b.ipv4),
            SART_FRR_V6: IPAddress(sart_frr.b.ipv6),
            SART_BIRD: IPAddress(sart_bird.b.ipv4),
        }
        config = SpeakerConfig(
            asn=SART_AS,
            router_id=IPAddress(sart_frr.a.ipv4),
            neighbors=tuple(
                NeighborConfig(
                    address=address,
                    asn=ROUTER_AS,
                    hold_time=90,
                    bfd=BfdConfig(min_rx=interval, min_tx=interval, multiplier=multiplier),
                )
                for address in sart_peers.values()
            ),
        )
        sart = SpeakerThread(sart_ns, config).start()
        vtys = [BfddVty(f._dir() / "bfdd.vty") for f in (frr, frr_a, frr_b)]
        controls = [BirdControl(b._dir() / "bird.ctl") for b in (bird, bird_a, bird_b)]
        detection = multiplier * interval / 1000

        def sart_states() -> dict[IPAddress, tuple[SessionState | None, State]]:
            return sart.call(
                lambda s: {
                    a: (s.bfd.state(a) if s.bfd else None, s.neighbors[a].state)
                    for a in sart_peers.values()
                }
            )

        def sart_fast() -> bool:
            def times(s: Any) -> list[float | None]:
                return [s.bfd.session(a).variables.detection_time for a in sart_peers.values()]

            return all(t is not None and abs(t - detection) < 1e-6 for t in sart.call(times))

        def all_up() -> bool:
            return all(b is SessionState.UP for b, _ in sart_states().values()) and all(
                set(c.states().values()) == {"up"} for c in (*vtys, *controls)
            )

        def sart_pair(name: str, link: Link, family: Family) -> Pair:
            address = sart_peers[name]
            return Pair(
                name,
                link,
                family,
                lambda: sart_states()[address][0] is not SessionState.UP,
                lambda: sart_states()[address][1] is not State.ESTABLISHED,
            )

        def daemon_pair(name: str, link: Link, side: BfddVty | BirdControl) -> Pair:
            address = link.b.ipv4
            return Pair(name, link, "ipv4", lambda: side.states().get(address) != "up")

        pairs = (
            sart_pair(SART_FRR, sart_frr, "ipv4"),
            daemon_pair(FRR_FRR, frr_frr, vtys[1]),
            sart_pair(SART_FRR_V6, sart_frr, "ipv6"),
            sart_pair(SART_BIRD, sart_bird, "ipv4"),
            daemon_pair(BIRD_BIRD, bird_bird, controls[1]),
        )

        def measure(pair: Pair) -> None:
            ns, ifname = pair.link.a.namespace, pair.link.a.ifname
            cut = time.monotonic()
            cut_link(ns, ifname, "-A", pair.family)
            report.cut_seconds.append(time.monotonic() - cut)
            try:
                down = _wait(pair.detected, 5, f"{pair.name}: BFD Down")
                report.detected.setdefault(pair.name, []).append(down - cut)
                if pair.bgp_down is not None:
                    bgp = _wait(pair.bgp_down, 5, f"{pair.name}: BGP down")
                    report.sart_bgp_lag.append(bgp - down)
            finally:
                cut_link(ns, ifname, "-D", pair.family)

        try:
            for number in range(cuts):
                for pair in pairs:  # in turn: noise falls on all
                    _wait(all_up, 60, "every BFD session Up")
                    time.sleep(SETTLE)
                    _wait(sart_fast, 10, f"sart's detection time at {detection:g} s")
                    measure(pair)
                line = ", ".join(
                    f"{p.name} {report.detected[p.name][-1] * 1000:6.1f}" for p in pairs
                )
                print(f"  cut {number + 1:>3} (ms): {line}", flush=True)
        except (TimeoutError, ConnectionError, RuntimeError) as error:
            report.failure = str(error)
        finally:
            for side in (*vtys, *controls):
                side.close()
            sart.stop()
    return report


def print_report(report: Report) -> bool:
    bound = report.multiplier * report.interval / 1000 + 0.1
    counts = ", ".join(f"{name} {len(values)}" for name, values in report.detected.items())
    print(
        f"BFD {report.interval} ms x {report.multiplier} (detection {report.multiplier} x"
        f" {report.interval} ms after the last packet), veth + iptables DROP, cuts: {counts}"
    )
    for name, values in report.detected.items():
        print(
            f"  {name:<19} p50 {percentile(values, 50) * 1000:6.1f} ms,"
            f" p99 {percentile(values, 99) * 1000:6.1f} ms,"
            f" min {min(values, default=math.nan) * 1000:6.1f} ms,"
            f" max {max(values, default=math.nan) * 1000:6.1f} ms"
        )
    for sart_pair, daemon_pair in COMPARED:
        for p in (50, 99):
            ratio = percentile(report.detected.get(sart_pair, []), p) / percentile(
                report.detected.get(daemon_pair, []), p
            )
            print(f"  {sart_pair} / {daemon_pair} at p{p}: {ratio:.2f}")
    print(
        f"  sart: BGP down {max(report.sart_bgp_lag, default=0) * 1000:.1f} ms at most after"
        f" BFD Down; the cut itself (two iptables runs) took p50"
        f" {percentile(report.cut_seconds, 50) * 1000:.1f} ms, counted in all"
    )
    if report.failure:
        print(f"  failure: {report.failure}")
    every = [v for values in report.detected.values() for v in values]
    ok = not report.failure and set(report.detected) == set(PAIRS) and max(every) < bound
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
