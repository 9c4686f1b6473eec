"""BMP export (RFC 7854) end to end: a real `sartd bgp` peers with a real FRR in the lab and
reports to a collector socket this test runs in sartd's namespace, while Wireshark's tshark
captures the collector's traffic on that namespace's loopback; tshark's BMP dissector then
reads the capture."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from sart.testing.netns import Link, listening_socket
from sart.testing.peers import BgpConfig, Frr, Lab, neighbor
from sart.testing.tshark import Capture, dissect

SART_AS, FRR_AS = 65100, 4_200_000_200  # a 4-octet AS on FRR's side
PORT = 11019
FRR_ROUTES = ("10.50.0.0/24", "10.51.0.0/24")
INITIATION, PEER_UP, ROUTE_MONITORING, STATISTICS, PEER_DOWN, TERMINATION = 4, 3, 0, 1, 2, 5


class Collector:
    """Accepts one BMP connection and reads it to the end, noting each message's type."""

    def __init__(self, listener: socket.socket) -> None:
        self.listener = listener
        self.kinds: list[int] = []
        self.closed = threading.Event()
        self._thread = threading.Thread(target=self._read, name="bmp-collector", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        connection, _ = self.listener.accept()
        with connection:
            data = b""
            while chunk := connection.recv(65536):
                data += chunk
                while len(data) >= 6:
                    _, length, kind = struct.unpack_from("!BIB", data)
                    if len(data) < length:
                        break
                    self.kinds.append(kind)
                    data = data[length:]
        self.closed.set()

    def routes_after_second_peer_up(self) -> bool:
        """A second Peer Up, then the routes and an End-of-RIB (two Route Monitorings)."""
        kinds = list(self.kinds)
        if kinds.count(PEER_UP) < 2:
            return False
        second = kinds.index(PEER_UP, kinds.index(PEER_UP) + 1)
        return kinds[second:].count(ROUTE_MONITORING) >= 2

    def stats_after_routes(self) -> bool:
        """A Stats Report came after the routes and an End-of-RIB (two Route Monitorings)."""
        kinds = list(self.kinds)
        if kinds.count(ROUTE_MONITORING) < 2:
            return False
        last = len(kinds) - 1 - kinds[::-1].index(ROUTE_MONITORING)
        return STATISTICS in kinds[last:]


def eventually(check: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not in {timeout} s: {what}"
        time.sleep(0.05)


def sartd_command(tmp_path: Path, link: Link, peer: str | None = None) -> list[str]:
    """`sartd bgp` at the `a` end of the link, peering with FRR at the `b` end (its IPv4
    address, or `peer`), reporting to a collector on 127.0.0.1:PORT in its namespace every
    second."""
    config = tmp_path / "bgp.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "asn": SART_AS,
                "router_id": link.a.ipv4,
                "neighbors": [{"address": peer or link.b.ipv4, "asn": FRR_AS, "hold_time": 9}],
                "bmp": [{"address": "127.0.0.1", "port": PORT, "statistics_interval": 1}],
            }
        )
    )
    api = f"unix:{tmp_path / 'api.sock'}"
    return [sys.executable, "-m", "sart.cli.sartd", "bgp", "-f", str(config),
            "--metrics-address", "", "--api-address", api]  # fmt: skip


def test_sartd_reports_an_frr_session_to_a_bmp_collector(lab: Lab, tmp_path: Path) -> None:
    sart_ns, link, frr = lab.frr_beside_sart(FRR_AS, SART_AS, routes=FRR_ROUTES)
    listener = listening_socket(sart_ns, "127.0.0.1", PORT)
    pcap = tmp_path / "bmp.pcap"
    command = sartd_command(tmp_path, link)
    with listener, Capture(sart_ns, "lo", PORT, pcap) as capture:
        collector = Collector(listener)
        daemon = sart_ns.popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            frr.wait_established(link.a.ipv4)
            eventually(collector.stats_after_routes, "a Stats Report after FRR's routes")
            bgp = ("configure terminal", f"router bgp {FRR_AS}")
            frr.vtysh(*bgp, f"neighbor {link.a.ipv4} shutdown")  # a Cease to sartd
            eventually(lambda: PEER_DOWN in collector.kinds, "a Peer Down")
            frr.vtysh(*bgp, f"no neighbor {link.a.ipv4} shutdown")
            eventually(lambda: collector.kinds.count(PEER_UP) == 2, "a second Peer Up")
            frr.stop()  # FRR goes: its connection closes
            eventually(lambda: collector.kinds.count(PEER_DOWN) == 2, "a second Peer Down")
        finally:
            daemon.terminate()
            _, stderr = daemon.communicate(timeout=15)
        assert daemon.returncode == 0, stderr.decode()
        assert collector.closed.wait(10)
        capture.wait_for(f"tcp.srcport == {PORT} && tcp.flags.fin == 1")  # the collector's end
    seen = dissect(pcap, PORT)
    assert seen.problems == []
    kinds = [m.kind for m in seen.messages]
    assert kinds == collector.kinds  # tshark saw every message the collector read
    assert kinds[0] == INITIATION and kinds[-1] == TERMINATION
    up, _ = [m for m in seen.messages if m.kind == PEER_UP]
    assert up.value("bmp.peer.ip.addr") == link.b.ipv4
    assert up.value("bmp.peer.asn") == str(FRR_AS)
    assert up.value("bmp.peer.id") == link.b.ipv4
    assert up.value("bmp.peer.up.ip.addr") == link.a.ipv4
    assert up.values("bgp.open.identifier") == [link.a.ipv4, link.b.ipv4]  # sent, received
    monitored = [m for m in seen.messages if m.kind == ROUTE_MONITORING]
    assert {p for m in monitored for p in m.prefixes} == set(FRR_ROUTES)
    assert all(m.value("bmp.peer.flags.as_path") == "0" for m in monitored)  # 4-octet ASNs
    assert any(str(FRR_AS) in m.values("bgp.update.path_attribute.as_path_segment.as4")
               for m in monitored)  # fmt: skip
    last_stats = [m for m in seen.messages if m.kind == STATISTICS][-1]  # FRR's routes all in
    assert last_stats.value("bmp.stats.data.routes_adj_rib_in") == str(len(FRR_ROUTES))
    assert last_stats.value("bmp.stats.data.routes_per_adj_rib_in.afi") == "1"
    shutdown, stopped = [m for m in seen.messages if m.kind == PEER_DOWN]
    assert shutdown.value("bmp.peer.down.reason") == "3"  # FRR closed with a NOTIFICATION:
    assert shutdown.value("bgp.notify.major_error") == "6"  # Cease /
    assert shutdown.value("bgp.notify.minor_error_cease") == "2"  # Administrative Shutdown
    assert stopped.value("bmp.peer.down.reason") == "4"  # closed with no NOTIFICATION


MON_AS = 65300


def test_sart_and_frr_report_the_same_events_alike(lab: Lab, tmp_path: Path) -> None:
    """FRR's own BMP export (bgpd -M bmp) next to sart's: both peer with the same FRR router,
    which then shuts both sessions down (Cease), brings them back, and stops; tshark reads
    both streams the same way."""
    sart_ns, mon_ns, peer_ns = (lab.namespace(r) for r in ("sartd", "frrmon", "peer"))
    to_sart, to_mon = lab.link(sart_ns, peer_ns), lab.link(mon_ns, peer_ns)
    peer = lab.start(
        Frr(
            peer_ns,
            BgpConfig(
                router_id=to_sart.b.ipv4,
                local_as=FRR_AS,
                neighbors=(neighbor(to_sart.a.ipv4, SART_AS), neighbor(to_mon.a.ipv4, MON_AS)),
                routes=FRR_ROUTES,
            ),
        )
    )
    mon = lab.start(
        Frr(
            mon_ns,
            BgpConfig(
                router_id=to_mon.a.ipv4,
                local_as=MON_AS,
                neighbors=(neighbor(to_mon.b.ipv4, FRR_AS),),
            ),
            modules=("bmp",),
        )
    )
    command = sartd_command(tmp_path, to_sart)
    sart_pcap, mon_pcap = tmp_path / "sart.pcap", tmp_path / "frr.pcap"
    with (
        listening_socket(sart_ns, "127.0.0.1", PORT) as sart_listener,
        listening_socket(mon_ns, "127.0.0.1", PORT) as mon_listener,
        Capture(sart_ns, "lo", PORT, sart_pcap) as sart_capture,
        Capture(mon_ns, "lo", PORT, mon_pcap) as mon_capture,
    ):
        sart_collector, mon_collector = Collector(sart_listener), Collector(mon_listener)
        mon.vtysh("configure terminal", f"router bgp {MON_AS}", "bmp targets collector",
                  f"bmp connect 127.0.0.1 port {PORT} min-retry 100 max-retry 1000",
                  "bmp monitor ipv4 unicast pre-policy", "bmp stats interval 1000")  # fmt: skip
        daemon = sart_ns.popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        collectors = (sart_collector, mon_collector)
        try:
            for address in (to_sart.a.ipv4, to_mon.a.ipv4):
                peer.wait_established(address)
            for collector in collectors:
                eventually(collector.stats_after_routes, "a Stats Report after the routes")
            bgp = ("configure terminal", f"router bgp {FRR_AS}")
            for address in (to_sart.a.ipv4, to_mon.a.ipv4):
                peer.vtysh(*bgp, f"neighbor {address} shutdown")
            for collector in collectors:
                eventually(lambda c=collector: PEER_DOWN in c.kinds, "a Peer Down")  # type: ignore[misc]
            for address in (to_sart.a.ipv4, to_mon.a.ipv4):
                peer.vtysh(*bgp, f"no neighbor {address} shutdown")
            for collector in collectors:
                eventually(lambda c=collector: c.routes_after_second_peer_up(), "routes again")  # type: ignore[misc]
            peer.stop()
            for collector in collectors:
                eventually(lambda c=collector: c.kinds.count(PEER_DOWN) == 2, "a Peer Down again")  # type: ignore[misc]
        finally:
            daemon.terminate()
            daemon.communicate(timeout=15)
            mon.stop()
        for collector, capture in ((sart_collector, sart_capture), (mon_collector, mon_capture)):
            assert collector.closed.wait(10)
            capture.wait_for(f"tcp.srcport == {PORT} && tcp.flags.fin == 1")
    sart, frr = dissect(sart_pcap, PORT), dissect(mon_pcap, PORT)
    assert sart.problems == []
    announced = {}
    for name, seen in (("sart", sart), ("frr", frr)):
        assert seen.messages[0].kind == INITIATION
        ups = [m for m in seen.messages if m.kind == PEER_UP]
        assert [(m.value("bmp.peer.asn"), m.value("bmp.peer.id")) for m in ups] == [
            (str(FRR_AS), to_sart.b.ipv4)
        ] * 2
        downs = [m for m in seen.messages if m.kind == PEER_DOWN]
        assert [m.value("bmp.peer.down.reason") for m in downs] == ["3", "4"]
        assert downs[0].value("bgp.notify.minor_error_cease") == "2"
        second_up = seen.messages.index(ups[1])
        again = [m for m in seen.messages[second_up:] if m.kind == ROUTE_MONITORING]
        reported = {p for m in again for p in [*m.prefixes, *m.withdrawn]}
        assert reported == set(FRR_ROUTES)
        announced[name] = {p for m in again for p in m.prefixes}
    # What differs: sart forwards the routes the peer sent again as announcements; FRR 8.4
    # (bmp monitor ipv4 unicast pre-policy) reported them as withdrawn.
    assert announced == {"sart": set(FRR_ROUTES), "frr": set()}


def test_an_ipv6_session_is_reported_with_the_v_flag(lab: Lab, tmp_path: Path) -> None:
    """A session over IPv6 carrying IPv6 routes: the per-peer header's V flag and IPv6
    addresses, the routes in MP_REACH_NLRI, the IPv6 family's stat, as tshark reads them."""
    sart_ns, link, _ = lab.frr_beside_sart(FRR_AS, SART_AS, routes=("2001:db8:50::/48",), ipv6=True)
    command = sartd_command(tmp_path, link, peer=link.b.ipv6)
    pcap = tmp_path / "bmp.pcap"
    with (
        listening_socket(sart_ns, "127.0.0.1", PORT) as listener,
        Capture(sart_ns, "lo", PORT, pcap) as capture,
    ):
        collector = Collector(listener)
        daemon = sart_ns.popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            eventually(collector.stats_after_routes, "a Stats Report after FRR's routes")
        finally:
            daemon.terminate()
            _, stderr = daemon.communicate(timeout=15)
        assert daemon.returncode == 0, stderr.decode()
        assert collector.closed.wait(10)
        capture.wait_for(f"tcp.srcport == {PORT} && tcp.flags.fin == 1")
    seen = dissect(pcap, PORT)
    assert seen.problems == []
    (up,) = [m for m in seen.messages if m.kind == PEER_UP]
    assert up.value("bmp.peer.flags.ipv6") == "1"
    assert up.value("bmp.peer.ipv6.addr") == link.b.ipv6
    assert up.value("bmp.peer.up.ipv6.addr") == link.a.ipv6
    monitored = [m for m in seen.messages if m.kind == ROUTE_MONITORING]
    assert {p for m in monitored for p in m.prefixes} == {"2001:db8:50::/48"}
    stats = [m for m in seen.messages if m.kind == STATISTICS][-1]
    families = stats.values("bmp.stats.data.routes_per_adj_rib_in.afi")
    counts = stats.values("bmp.stats.data.routes_per_adj_rib_in")
    assert dict(zip(families, counts, strict=True))["2"] == "1"  # AFI 2: one IPv6 route
