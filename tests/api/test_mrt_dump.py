"""MRT end to end: a real `sartd bgp` fed routes by a peer on loopback, its tables dumped with
`sart bgp rib dump --mrt` and its `--mrt-updates` log, each read back with bgpdump."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from netaddr import IPAddress, IPNetwork

from sart.bgp.codes import Afi, Safi
from sart.bgp.messages import (
    IPV4_UNICAST,
    IPV6_UNICAST,
    AsPath,
    Communities,
    MpReachNlri,
    NextHop,
    Origin,
    Update,
)
from sart.testing import bgpdump
from sart.testing.loopback_bgp import Feeder, SartdBgp
from sart.testing.peers import wait_for

DAEMON = "127.0.0.61"
PEER = "127.0.0.62"
PEER_AS = 4200000001  # 4-octet: the dump must keep it whole
V6_HOP = "2001:db8::62"
V4 = [IPNetwork(f"10.{i}.0.0/16") for i in range(1, 41)]
V6 = [IPNetwork(f"2001:db8:{i:x}::/48") for i in range(1, 21)]
GONE = V4[-1]  # withdrawn after the table


def _as_path(index: int) -> tuple[int, ...]:
    return (PEER_AS, 64600 + index % 7, 4200000100 + index)


def _updates() -> list[Update]:
    updates = []
    for index, prefix in enumerate(V4):
        attributes = (
            Origin(0),
            AsPath.from_asns(*_as_path(index)),
            NextHop(IPAddress(PEER)),
            Communities((65010 << 16 | index,)),
        )
        updates.append(Update(attributes=attributes, nlri=(prefix,)))
    for index, prefix in enumerate(V6):
        reach = MpReachNlri(Afi.IPV6, Safi.UNICAST, (IPAddress(V6_HOP),), (prefix,))
        updates.append(Update(attributes=(Origin(1), AsPath.from_asns(*_as_path(index)), reach)))
    updates += [Update.end_of_rib(IPV4_UNICAST), Update.end_of_rib(IPV6_UNICAST)]
    updates.append(Update(withdrawn=(GONE,)))
    return updates


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[SartdBgp]:
    config = {
        "asn": 65010,
        "router_id": "10.0.0.61",
        "neighbors": [{"address": PEER, "asn": PEER_AS, "passive": True}],
        "paths": [{"prefixes": ["10.200.0.0/24", "2001:db8:200::/64"]}],
    }
    flags = ("--mrt-updates", str(tmp_path / "updates.mrt"))
    with SartdBgp(tmp_path, DAEMON, config, flags) as made:
        yield made


def _fed(daemon: SartdBgp) -> Feeder:
    feeder = Feeder(DAEMON, daemon.port, source=PEER, asn=PEER_AS)
    feeder.send(_updates())

    def complete() -> bool:
        return daemon.prefixes() == (len(V4), len(V6) + 1)

    wait_for(complete, timeout=30, what="the peer's routes in the Loc-RIB")
    return feeder


def _expected_v4() -> set[tuple[str, str, str, str, str]]:
    return {
        (str(p), PEER, " ".join(map(str, _as_path(i))), PEER, f"65010:{i}")
        for i, p in enumerate(V4)
        if p != GONE
    }


def _expected_v6() -> set[tuple[str, str, str, str, str]]:
    return {(str(p), PEER, " ".join(map(str, _as_path(i))), V6_HOP, "") for i, p in enumerate(V6)}


def _rows(routes: tuple[bgpdump.Route, ...]) -> set[tuple[str, str, str, str, str]]:
    return {(r.prefix, r.peer, r.as_path, r.next_hop, r.communities) for r in routes}


def test_rib_dumps_read_back_by_bgpdump(daemon: SartdBgp, tmp_path: Path) -> None:
    feeder = _fed(daemon)
    try:
        loc = tmp_path / "loc.mrt"
        said = daemon.sart("bgp", "rib", "dump", "--mrt", str(loc)).stdout
        assert said.startswith(f"{loc}: ") and "octets in" in said
        read = bgpdump.read(loc)
        assert read.errors == ""
        ours = {
            ("10.200.0.0/24", "0.0.0.0", "", "0.0.0.0", ""),
            ("2001:db8:200::/64", "0.0.0.0", "", "::", ""),
        }
        assert _rows(read.routes) == _expected_v4() | _expected_v6() | ours
        assert {r.peer_as for r in read.routes if r.peer == PEER} == {PEER_AS}
        assert {r.origin for r in read.routes if r.prefix in {str(p) for p in V6}} == {"EGP"}

        one = tmp_path / "in-v6.mrt"
        daemon.sart(
            "bgp", "rib", "dump", "--mrt", str(one), "--table", "in", "--neighbor", PEER,
            "-a", "ipv6",
        )  # fmt: skip
        assert _rows(bgpdump.read(one).routes) == _expected_v6()

        wrong = daemon.sart(
            "bgp", "rib", "dump", "--mrt", str(one), "--neighbor", PEER, check=False
        )
        assert wrong.returncode == 2 and "--neighbor needs --table in" in wrong.stderr
        unknown = daemon.sart(
            "bgp", "rib", "dump", "--mrt", str(one), "--table", "in", "--neighbor", "127.0.0.9",
            check=False,
        )  # fmt: skip
        assert unknown.returncode == 1 and "no neighbor 127.0.0.9" in unknown.stderr
    finally:
        feeder.close()


def test_updates_log_reads_back_by_bgpdump(daemon: SartdBgp, tmp_path: Path) -> None:
    feeder = _fed(daemon)
    feeder.close()
    wait_for(
        lambda: "Established" not in daemon.sart("bgp", "neighbor", "get", PEER).stdout,
        timeout=20,
        what="the session to end",
    )
    read = bgpdump.read(tmp_path / "updates.mrt")
    assert read.errors == ""
    announced = {r for r in read.routes if r.kind == "A"}
    assert _rows(tuple(announced)) == _expected_v4() | _expected_v6() | {
        (str(GONE), PEER, " ".join(map(str, _as_path(len(V4) - 1))), PEER, f"65010:{len(V4) - 1}")
    }
    assert [(r.prefix, r.peer) for r in read.routes if r.kind == "W"] == [(str(GONE), PEER)]
    states = [(s.peer, s.peer_as, s.new) for s in read.states]
    assert (PEER, PEER_AS, 6) in states  # Established
    assert states[-1][2] in (1, 3)  # back to Idle or Active once the peer left
