"""sart's speaker against real FRR, BIRD and GoBGP, each in its own network namespace.

The sart side is the library's `Speaker` on a thread that entered its namespace
(`sart.testing.speaker_thread`), so the test reads its RIB directly; the last test runs the
`sartd bgp` executable with a config file instead. Every scenario runs against all three.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from netaddr import IPAddress, IPNetwork

from sart.bgp.config import NeighborConfig, PathAttributesConfig, SpeakerConfig
from sart.bgp.fsm import State
from sart.testing.netns import Link, Namespace
from sart.testing.peers import BgpConfig, Bird, Frr, GoBgp, Lab, Peer, neighbor
from sart.testing.speaker_thread import SpeakerThread
from sartd_process import Sartd
from waiting import eventually

KINDS: dict[str, type[Peer]] = {"frr": Frr, "bird": Bird, "gobgp": GoBgp}
SART_AS, PEER_AS = 65100, 65200
ANYCAST = "10.0.100.10/32"


def sart_config(link: Link, peer_as: int, **neighbor_options: object) -> SpeakerConfig:
    """sart at the `a` end of the link, one IPv4 and one IPv6 session to the `b` end."""
    options = {"hold_time": 9, **neighbor_options}
    return SpeakerConfig(
        asn=SART_AS,
        router_id=IPAddress(link.a.ipv4),
        connect_retry_time=1,
        neighbors=(
            NeighborConfig(address=IPAddress(link.b.ipv4), asn=peer_as, **options),  # type: ignore[arg-type]
            NeighborConfig(address=IPAddress(link.b.ipv6), asn=peer_as, **options),  # type: ignore[arg-type]
        ),
    )


def peer_config(link: Link, local_as: int, *routes: str, **options: object) -> BgpConfig:
    return BgpConfig(
        router_id=link.b.ipv4,
        local_as=local_as,
        neighbors=(
            neighbor(link.a.ipv4, SART_AS, **options),
            neighbor(link.a.ipv6, SART_AS, **options),
        ),
        routes=routes,
    )


class Pair:
    """sart and one peer daemon on either end of a veth link."""

    def __init__(self, lab: Lab, kind: str) -> None:
        self.lab = lab
        self.kind = kind
        self.sart_ns: Namespace = lab.namespace("sart")
        self.peer_ns: Namespace = lab.namespace(kind)
        self.link = lab.link(self.sart_ns, self.peer_ns)
        self.sart: SpeakerThread | None = None
        self.peer: Peer | None = None

    def start(
        self,
        *,
        peer_as: int = PEER_AS,
        routes: tuple[str, ...] = (),
        sart_options: dict[str, object] | None = None,
        peer_options: dict[str, object] | None = None,
        sart_peer_as: int | None = None,
    ) -> tuple[SpeakerThread, Peer]:
        config = peer_config(self.link, peer_as, *routes, **(peer_options or {}))
        self.peer = self.lab.start(KINDS[self.kind](self.peer_ns, config))
        sart = sart_config(self.link, sart_peer_as or peer_as, **(sart_options or {}))
        self.sart = SpeakerThread(self.sart_ns, sart).start()
        return self.sart, self.peer

    def established(self) -> bool:
        assert self.sart is not None and self.peer is not None
        states = self.sart.states()
        return all(s is State.ESTABLISHED for s in states.values()) and all(
            self.peer.neighbor_state(a) == "established"
            for a in (self.link.a.ipv4, self.link.a.ipv6)
        )

    def close(self) -> None:
        if self.sart is not None:
            self.sart.stop()


@pytest.fixture(params=list(KINDS))
def pair(request: pytest.FixtureRequest, lab: Lab) -> Iterator[Pair]:
    made = Pair(lab, request.param)
    yield made
    made.close()


def test_ebgp_routes_both_ways_and_withdraw(pair: Pair) -> None:
    sart, peer = pair.start(routes=("10.20.0.0/24", "2001:db8:20::/48"))
    eventually(pair.established, what="both sessions established")
    sart.call(
        lambda s: s.announce(
            [IPNetwork("10.10.0.0/24"), IPNetwork("2001:db8:10::/48")],
            PathAttributesConfig(communities=(SART_AS << 16 | 1,)),
        )
    )
    assert peer.wait_route("10.10.0.0/24") == [pair.link.a.ipv4]
    assert peer.wait_route("2001:db8:10::/48") == [pair.link.a.ipv6]
    eventually(lambda: "10.20.0.0/24" in sart.routes() and "2001:db8:20::/48" in sart.routes())
    routes = sart.routes()
    assert routes["10.20.0.0/24"] == [pair.link.b.ipv4]
    assert routes["2001:db8:20::/48"] == [pair.link.b.ipv6]
    sart.call(lambda s: s.withdraw([IPNetwork("10.10.0.0/24")]))
    peer.wait_no_route("10.10.0.0/24")
    peer.withdraw("10.20.0.0/24")
    eventually(lambda: "10.20.0.0/24" not in sart.routes(), what="peer's withdraw seen")
    assert "2001:db8:20::/48" in sart.routes()


def test_ibgp_session_and_route(pair: Pair) -> None:
    sart, peer = pair.start(peer_as=SART_AS, routes=("10.21.0.0/24",))
    eventually(pair.established, what="iBGP sessions established")
    sart.call(lambda s: s.announce([IPNetwork("10.11.0.0/24")]))
    assert peer.wait_route("10.11.0.0/24") == [pair.link.a.ipv4]
    eventually(lambda: "10.21.0.0/24" in sart.routes())


def test_peer_restart_brings_the_session_back(pair: Pair) -> None:
    sart, peer = pair.start(routes=("10.22.0.0/24",))
    eventually(pair.established)
    eventually(lambda: "10.22.0.0/24" in sart.routes())
    address = IPAddress(pair.link.b.ipv4)
    sessions = sart.call(lambda s: s.neighbors[address].stats.established_count)
    peer.restart()
    eventually(
        lambda: sart.call(lambda s: s.neighbors[address].stats.established_count) > sessions,
        what="a new session after the restart",
    )
    eventually(pair.established, what="both sessions back")
    eventually(lambda: "10.22.0.0/24" in sart.routes(), what="routes back")


def test_frozen_peer_trips_our_hold_timer(pair: Pair) -> None:
    sart, peer = pair.start(
        routes=("10.23.0.0/24",), sart_options={"hold_time": 3}, peer_options={"hold_time": 3}
    )
    eventually(pair.established)
    eventually(lambda: "10.23.0.0/24" in sart.routes())
    peer.freeze()
    try:
        eventually(lambda: all(s is not State.ESTABLISHED for s in sart.states().values()), 10)
        errors = sart.call(lambda s: [n.stats.last_error for n in s.neighbors.values()])
        assert errors == ["sent NOTIFICATION HOLD_TIMER_EXPIRED"] * 2
        assert "10.23.0.0/24" not in sart.routes()
    finally:
        peer.thaw()


def test_wrong_peer_as_gets_bad_peer_as(pair: Pair) -> None:
    sart, peer = pair.start(sart_peer_as=PEER_AS + 1)  # we expect the wrong AS
    address = pair.link.a.ipv4
    ours = IPAddress(pair.link.b.ipv4)
    eventually(
        lambda: (
            sart.call(lambda s: s.neighbors[ours].stats.last_error)
            == "sent NOTIFICATION OPEN_MESSAGE / BAD_PEER_AS"
        )
    )
    if isinstance(peer, GoBgp):
        # GoBGP counts the NOTIFICATIONs it gets but keeps no code, in its API or its log.
        def told() -> bool:
            state = peer.gobgp_json("neighbor", address)["state"]
            return int(state["messages"]["received"].get("notification", 0)) >= 1
    else:

        def told() -> bool:
            error = peer.last_error(address)
            return error is not None and (error.code, error.subcode) == (2, 2)

    eventually(told, what="the peer got OPEN Message Error / Bad Peer AS from sart")
    assert sart.states()[pair.link.b.ipv4] is not State.ESTABLISHED


def test_graceful_restart_keeps_routes_across_a_peer_restart(pair: Pair) -> None:
    sart, peer = pair.start(routes=("10.24.0.0/24",), peer_options={"graceful_restart": True})
    eventually(pair.established)
    eventually(lambda: "10.24.0.0/24" in sart.routes())
    seen_while_down: list[bool] = []

    def check() -> None:
        eventually(lambda: sart.states()[pair.link.b.ipv4] is not State.ESTABLISHED, 15)
        seen_while_down.append("10.24.0.0/24" in sart.routes())

    peer.restart(graceful=True, while_down=check)
    assert seen_while_down == [True]  # kept, stale, while the peer was away
    eventually(pair.established, what="session back")
    # Its End-of-RIB swept what it did not announce again: the route it did is still there.
    eventually(lambda: not sart.call(lambda speaker: speaker.rib._stale), what="End-of-RIB")
    assert "10.24.0.0/24" in sart.routes()


@pytest.mark.parametrize("kind", list(KINDS))
def test_anycast_from_two_sart_speakers_is_ecmp(lab: Lab, kind: str) -> None:
    line = lab.line3()
    router_config = BgpConfig(
        router_id=line.left_link.a.ipv4,
        local_as=PEER_AS,
        neighbors=(
            neighbor(line.left_link.b.ipv4, SART_AS + 1),
            neighbor(line.right_link.b.ipv4, SART_AS + 2),
        ),
        max_paths=4,
    )
    router = lab.start(KINDS[kind](line.router, router_config))
    speakers = []
    for offset, (ns, link) in enumerate(
        ((line.left, line.left_link), (line.right, line.right_link)), 1
    ):
        config = SpeakerConfig(
            asn=SART_AS + offset,
            router_id=IPAddress(link.b.ipv4),
            connect_retry_time=1,
            neighbors=(NeighborConfig(address=IPAddress(link.a.ipv4), asn=PEER_AS, hold_time=9),),
        )
        speakers.append(SpeakerThread(ns, config).start())
    try:
        for speaker in speakers:
            speaker.call(lambda s: s.announce([IPNetwork(ANYCAST)]))
        hops = {line.left_link.b.ipv4, line.right_link.b.ipv4}
        assert set(router.wait_route(ANYCAST, nexthops=hops)) == hops
        if kind == "frr":  # zebra installs it: one kernel route, two next hops
            eventually(lambda: set(line.router.kernel_nexthops(ANYCAST)) == hops, 15)
    finally:
        for speaker in speakers:
            speaker.stop()


@pytest.mark.parametrize("kind", list(KINDS))
def test_sartd_executable_announces_its_configured_paths(
    lab: Lab, kind: str, tmp_path: Path
) -> None:
    sart_ns, peer_ns = lab.namespace("sartd"), lab.namespace(kind)
    link = lab.link(sart_ns, peer_ns)
    peer = lab.start(
        KINDS[kind](
            peer_ns,
            BgpConfig(
                router_id=link.b.ipv4,
                local_as=PEER_AS,
                neighbors=(neighbor(link.a.ipv4, SART_AS),),
            ),
        )
    )
    config = tmp_path / "bgp.yaml"
    config.write_text(
        yaml.safe_dump(
            {  # the original sart's format
                "asn": SART_AS,
                "router_id": link.a.ipv4,
                "neighbors": [{"asn": PEER_AS, "router_id": link.b.ipv4, "address": link.b.ipv4}],
                "paths": [{"prefixes": ["10.30.0.0/24"], "attributes": {"origin": 0}}],
            }
        )
    )
    command = [sys.executable, "-m", "sart.cli.sartd", "bgp", "-f", str(config), "--format", "json"]
    daemon = sart_ns.popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert peer.wait_route("10.30.0.0/24") == [link.a.ipv4]
    finally:
        daemon.terminate()
        _, stderr = daemon.communicate(timeout=15)
    assert daemon.returncode == 0
    assert b'"message": "speaker stopped"' in stderr
    peer.wait_not_established(link.a.ipv4)
    error = peer.last_error(link.a.ipv4)
    assert error is not None and (error.code, error.subcode) == (6, 2)  # Cease / Admin Shutdown


def test_cli_against_frr(lab: Lab, tmp_path: Path) -> None:
    """Issue 6's proof: a path added with `sart` reaches FRR; FRR's route shows in
    `sart bgp global rib get`; the neighbor's Adj-RIBs read back through the API."""
    sart_ns, link, frr = lab.frr_beside_sart(PEER_AS, SART_AS, routes=("10.40.0.0/24",))
    sartd = Sartd(sart_ns, SART_AS, link.a.ipv4, tmp_path)
    sart = sartd.cli
    try:
        sart("bgp", "neighbor", "add", link.b.ipv4, str(PEER_AS), "--hold-time", "9")
        sart("bgp", "global", "rib", "add", "10.41.0.0/24", "--community", f"{SART_AS}:41")
        assert frr.wait_route("10.41.0.0/24") == [link.a.ipv4]
        eventually(lambda: "10.40.0.0/24" in sart("bgp", "global", "rib", "get"))
        row = next(
            line for line in sart("bgp", "global", "rib", "get").splitlines() if "10.40.0.0" in line
        )
        assert row.split()[:4] == ["*>", "10.40.0.0/24", link.b.ipv4, str(PEER_AS)]
        received = json.loads(sart("bgp", "neighbor", "rib", link.b.ipv4, "in", "--format", "json"))
        assert [p["prefix"] for p in received] == ["10.40.0.0/24"]
        sent = json.loads(sart("bgp", "neighbor", "rib", link.b.ipv4, "out", "--format", "json"))
        assert [(p["prefix"], p["as_path"]) for p in sent] == [("10.41.0.0/24", str(SART_AS))]
        state = json.loads(sart("bgp", "neighbor", "get", link.b.ipv4, "--format", "json"))
        assert state["state"] == "SESSION_STATE_ESTABLISHED" and state["prefixes_received"] == "1"
        sart("bgp", "global", "rib", "del", "10.41.0.0/24")
        frr.wait_no_route("10.41.0.0/24")
    finally:
        sartd.stop()
