"""The decision process of RFC 4271 9.1.2.2, step by step, and the Loc-RIB changes."""

from __future__ import annotations

from netaddr import IPAddress, IPNetwork

from sart.bgp.messages import (
    AsPath,
    LocalPref,
    MpReachNlri,
    MpUnreachNlri,
    MultiExitDisc,
    NextHop,
    Origin,
    OriginatorId,
    PathAttribute,
    Update,
)
from sart.bgp.prefixes import prefix_key
from sart.bgp.rib import Change, Path, Rib, Source, best_path, multipath

PREFIX = IPNetwork("203.0.113.10/32")


def _source(n: int, asn: int = 65000, *, internal: bool = False) -> Source:
    return Source(IPAddress(f"10.0.0.{n}"), asn, IPAddress(f"192.0.2.{n}"), internal)


def _path(source: Source, *attributes: PathAttribute, asns: tuple[int, ...] = (65000,)) -> Path:
    return Path.to(
        PREFIX,
        source,
        source.address,
        (Origin(0), AsPath.from_asns(*asns), *attributes),
    )


def test_higher_local_pref_wins() -> None:
    low = _path(_source(1), LocalPref(50))
    high = _path(_source(2), LocalPref(200), asns=(65000, 65001, 65002))
    assert best_path([low, high]) is high


def test_shorter_as_path_then_lower_origin() -> None:
    long = _path(_source(1), asns=(65000, 65001))
    short = _path(_source(2))
    assert best_path([long, short]) is short
    incomplete = Path(PREFIX, _source(3), None, (Origin(2), AsPath.from_asns(65000)))
    assert best_path([incomplete, short]) is short


def test_med_only_counts_between_paths_from_the_same_neighbour_as() -> None:
    a = _path(_source(1), MultiExitDisc(50), asns=(65001,))
    b = _path(_source(2), MultiExitDisc(10), asns=(65001,))
    assert best_path([a, b]) is b
    other_as = _path(_source(0), MultiExitDisc(500), asns=(65002,))
    # other_as is not compared on MED; it wins the later tie-break on router id
    assert best_path([a, b, other_as]) is other_as


def test_ebgp_over_ibgp_then_router_id_then_originator() -> None:
    ibgp = _path(_source(1, internal=True))
    ebgp = _path(_source(2))
    assert best_path([ibgp, ebgp]) is ebgp
    reflected = _path(_source(1), OriginatorId(IPAddress("192.0.2.200")))
    assert best_path([reflected, ebgp]) is ebgp


def test_locally_originated_paths_win() -> None:
    local = Path(PREFIX, Source(None, 65000, IPAddress("192.0.2.99")), None, (Origin(2), AsPath()))
    assert best_path([_path(_source(1), LocalPref(1000)), local]) is local


def test_multipath_keeps_equal_paths_for_ecmp() -> None:
    a, b = _path(_source(1), asns=(65001,)), _path(_source(2), asns=(65001,))
    c = _path(_source(3), asns=(65002,))
    worse = _path(_source(4), asns=(65001, 65009))
    best = best_path([a, b, c, worse])
    assert best is a
    assert multipath([a, b, c, worse], a) == (a, b)
    assert multipath([a, b, c, worse], a, relax_as=True) == (a, b, c)


def test_rib_reports_changes_and_withdraws() -> None:
    rib = Rib(multipath=True)
    peer1, peer2 = _source(1, 65001), _source(2, 65001)
    update = Update(
        attributes=(Origin(0), AsPath.from_asns(65001), NextHop(IPAddress("10.0.0.1"))),
        nlri=(PREFIX,),
    )
    (change,) = rib.apply_update(peer1, update)
    assert change.before == () and len(change.after) == 1
    (change,) = rib.apply_update(peer2, attr_next_hop(update, "10.0.0.2"))
    assert [p.next_hop for p in change.after] == [IPAddress("10.0.0.1"), IPAddress("10.0.0.2")]
    assert rib.apply_update(peer1, update) == []  # nothing changed
    (change,) = rib.apply_update(peer1, Update(withdrawn=(PREFIX,)))
    assert [p.source for p in change.after] == [peer2]
    (change,) = rib.drop_source(peer2)
    assert change == Change(prefix_key(PREFIX), change.before, ())
    assert len(rib) == 0
    assert rib.apply_update(peer1, Update(withdrawn=(PREFIX,))) == []  # never announced


def attr_next_hop(update: Update, address: str) -> Update:
    attributes = tuple(
        NextHop(IPAddress(address)) if isinstance(a, NextHop) else a for a in update.attributes
    )
    return Update(attributes=attributes, nlri=update.nlri)


def test_mp_families_go_in_and_out() -> None:
    rib = Rib()
    peer = _source(1, 65001)
    prefix = IPNetwork("2001:db8::/48")
    reach = MpReachNlri(2, 1, (IPAddress("2001:db8::1"),), (prefix,))
    rib.apply_update(peer, Update(attributes=(Origin(0), AsPath.from_asns(65001), reach)))
    assert rib.lookup(prefix)[0].next_hop == IPAddress("2001:db8::1")
    rib.apply_update(peer, Update(attributes=(MpUnreachNlri(2, 1, (prefix,)),)))
    assert rib.lookup(prefix) == ()


def test_a_path_through_our_own_as_is_a_loop_and_withdraws() -> None:
    rib = Rib(local_asn=65000)
    peer = _source(1, 65001)
    good = Update(
        attributes=(Origin(0), AsPath.from_asns(65001), NextHop(IPAddress("10.0.0.1"))),
        nlri=(PREFIX,),
    )
    rib.apply_update(peer, good)
    looped = Update(
        attributes=(Origin(0), AsPath.from_asns(65001, 65000), NextHop(IPAddress("10.0.0.1"))),
        nlri=(PREFIX,),
    )
    (change,) = rib.apply_update(peer, looped)
    assert change.after == ()


def test_local_pref_from_an_external_peer_is_ignored() -> None:
    rib = Rib()
    update = Update(
        attributes=(
            Origin(0),
            AsPath.from_asns(65001),
            NextHop(IPAddress("10.0.0.1")),
            LocalPref(1000),
        ),
        nlri=(PREFIX,),
    )
    rib.apply_update(_source(1, 65001), update)
    rib.apply_update(_source(2, 65000, internal=True), update)
    paths = {p.source.internal: p for p in rib.paths_from(_source(1, 65001))}
    assert paths[False].local_pref == 100
    (internal,) = rib.paths_from(_source(2, 65000, internal=True))
    assert internal.local_pref == 1000


def test_graceful_restart_keeps_stale_paths_until_end_of_rib() -> None:
    rib = Rib()
    peer = _source(1, 65001)
    other = IPNetwork("198.51.100.0/24")
    attributes = (Origin(0), AsPath.from_asns(65001), NextHop(IPAddress("10.0.0.1")))
    rib.apply_update(peer, Update(attributes=attributes, nlri=(PREFIX, other)))
    rib.mark_stale(peer)
    assert rib.lookup(PREFIX) and rib.lookup(other)  # still in use while the peer restarts
    rib.apply_update(peer, Update(attributes=attributes, nlri=(PREFIX,)))  # announced again
    (change,) = rib.sweep_stale(peer)  # End-of-RIB
    assert change.prefix == other and change.after == ()
    assert rib.lookup(PREFIX)
