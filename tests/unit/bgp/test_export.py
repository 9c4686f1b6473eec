"""What goes out to each kind of peer, and UPDATE packing."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import given
from netaddr import IPAddress, IPNetwork

from sart.bgp.codes import WellKnownCommunity
from sart.bgp.context import SessionContext
from sart.bgp.export import AdjRibOut, Peer, export, pack_updates, withdraw_updates
from sart.bgp.messages import (
    AsPath,
    Communities,
    LocalPref,
    MpReachNlri,
    MpUnreachNlri,
    MultiExitDisc,
    NextHop,
    Origin,
    UnknownAttribute,
    Update,
)
from sart.bgp.prefixes import prefix_key
from sart.bgp.rib import Path, Source
from sart.bgp.wire import decode_message, encode_message

PREFIX = IPNetwork("203.0.113.10/32")
EBGP = Peer(asn=65100, internal=False, local_asn=65001, local_address=IPAddress("10.0.0.1"))
IBGP = Peer(asn=65001, internal=True, local_asn=65001, local_address=IPAddress("10.0.0.1"))
LOCAL = Source(None, 65001, IPAddress("10.0.0.1"))
FROM_EBGP = Source(IPAddress("10.9.0.1"), 65009, IPAddress("10.9.0.1"))
FROM_IBGP = Source(IPAddress("10.0.0.2"), 65001, IPAddress("10.0.0.2"), internal=True)


def _path(source: Source, *extra: object, asns: tuple[int, ...] = ()) -> Path:
    attributes = (Origin(0), AsPath.from_asns(*asns), *extra)
    return Path.to(PREFIX, source, None, attributes)  # type: ignore[arg-type]


def test_local_route_to_ebgp_gets_our_as_and_keeps_its_med() -> None:
    out = export(_path(LOCAL, MultiExitDisc(5), LocalPref(300)), EBGP)
    assert out == (Origin(0), AsPath.from_asns(65001), MultiExitDisc(5))


def test_learned_route_to_ebgp_drops_med_and_local_pref_and_prepends() -> None:
    path = _path(FROM_EBGP, MultiExitDisc(5), asns=(65009, 65010))
    assert export(path, EBGP) == (Origin(0), AsPath.from_asns(65001, 65009, 65010))


def test_route_to_ibgp_keeps_the_path_and_gets_a_local_pref() -> None:
    assert export(_path(FROM_EBGP, asns=(65009,)), IBGP) == (
        Origin(0),
        AsPath.from_asns(65009),
        LocalPref(100),
    )


def test_what_is_never_sent() -> None:
    assert export(_path(FROM_IBGP), IBGP) is None  # iBGP to iBGP
    no_export = Communities((WellKnownCommunity.NO_EXPORT,))
    assert export(_path(LOCAL, no_export), EBGP) is None
    assert export(_path(LOCAL, no_export), IBGP) is not None
    no_advertise = Communities((WellKnownCommunity.NO_ADVERTISE,))
    assert export(_path(LOCAL, no_advertise), IBGP) is None
    assert export(_path(FROM_EBGP, asns=(65009, 65100)), EBGP) is None  # the peer's AS: a loop
    back = Peer(
        asn=65009,
        internal=False,
        local_asn=65001,
        local_address=IPAddress("10.0.0.1"),
        address=IPAddress("10.9.0.1"),
    )
    assert export(_path(FROM_EBGP, asns=(65009,)), back) is None


def test_unknown_transitive_attributes_go_on_as_partial() -> None:
    path = _path(LOCAL, UnknownAttribute(99, b"x"), UnknownAttribute(98, b"y", flags=0x80))
    out = export(path, EBGP)
    assert out is not None
    assert UnknownAttribute(99, b"x", flags=0xE0) in out
    assert all(getattr(a, "type_code", None) != 98 for a in out)


def test_packing_shares_attributes_and_fits_the_message_size() -> None:
    ctx = SessionContext(four_octet_as=True)
    attributes = (Origin(0), AsPath.from_asns(65001))
    hop = IPAddress("10.0.0.1")
    routes = [(IPNetwork(f"10.{i // 256}.{i % 256}.0/24"), attributes, hop) for i in range(3000)]
    updates = pack_updates(routes, ctx)
    assert len(updates) == 3  # 4 octets a /24: about 1,000 per 4096-octet message
    assert all(len(encode_message(u, ctx)) <= 4096 for u in updates)
    assert [p for u in updates for p in u.nlri] == [r[0] for r in routes]
    assert all(u.get(NextHop) == NextHop(hop) for u in updates)


@given(
    st.lists(
        st.builds(
            lambda value, length: IPNetwork((value << 64, length), 6).cidr,
            st.integers(0, 2**64 - 1),
            st.integers(0, 128),
        ),
        max_size=600,
    ),
    st.booleans(),
)
def test_every_packed_update_fits_and_carries_each_prefix_once(
    prefixes: list[IPNetwork], withdraw: bool
) -> None:
    ctx = SessionContext(four_octet_as=True)
    hop = IPAddress("2001:db8::1")
    if withdraw:
        updates = withdraw_updates(prefixes, ctx)
    else:
        attributes = (Origin(0), AsPath.from_asns(65001))
        updates = pack_updates([(p, attributes, hop) for p in prefixes], ctx)
    carried = []
    for update in updates:
        wire = encode_message(update, ctx)
        assert len(wire) <= 4096
        decoded = decode_message(wire, ctx)
        assert isinstance(decoded, Update)
        for attribute in decoded.attributes:
            if isinstance(attribute, MpReachNlri):
                carried += attribute.nlri
            elif isinstance(attribute, MpUnreachNlri):
                carried += attribute.withdrawn
    assert carried == prefixes


def _adj_out(peer: Peer, versions: frozenset[int] = frozenset({4, 6})) -> AdjRibOut:
    hops = {4: IPAddress("10.0.0.1"), 6: IPAddress("2001:db8::1")}
    return AdjRibOut(peer, SessionContext(), versions, hops)


def test_adj_rib_out_sends_changes_only_and_withdraws_what_it_sent() -> None:
    out = _adj_out(EBGP)
    path = _path(LOCAL)
    first = out.sync([(prefix_key(PREFIX), path)])
    assert [u.nlri for u in first] == [(PREFIX,)]
    assert first[0].get(NextHop) == NextHop(IPAddress("10.0.0.1"))
    assert out.sync([(prefix_key(PREFIX), path)]) == []  # nothing changed: nothing sent
    assert out.sync([(prefix_key(PREFIX), None)]) == [Update(withdrawn=(PREFIX,))]
    assert (
        out.sync([(prefix_key(PREFIX), None)]) == []
    )  # never withdraws what the peer does not have
    assert len(out) == 0


def test_adj_rib_out_next_hops() -> None:
    learned = Path(PREFIX, FROM_EBGP, IPAddress("10.9.0.1"), (Origin(0), AsPath.from_asns(65009)))
    ibgp, ebgp = _adj_out(IBGP), _adj_out(EBGP)
    # RFC 4271 5.1.3: kept towards iBGP, ours towards eBGP
    assert ibgp.sync([(prefix_key(PREFIX), learned)])[0].get(NextHop) == NextHop(
        IPAddress("10.9.0.1")
    )
    assert ebgp.sync([(prefix_key(PREFIX), learned)])[0].get(NextHop) == NextHop(
        IPAddress("10.0.0.1")
    )
    v6 = IPNetwork("2001:db8:5::/48")
    reach = ebgp.sync([(prefix_key(v6), Path.to(v6, LOCAL, None, (Origin(0), AsPath())))])[0].get(
        MpReachNlri
    )
    assert reach is not None and reach.next_hops == (IPAddress("2001:db8::1"),)
    # our own path with a next hop of its own keeps it (third-party next hop, RFC 4271 5.1.3)
    third = Path(PREFIX, LOCAL, IPAddress("10.0.0.99"), (Origin(0), AsPath()))
    assert ebgp.sync([(prefix_key(PREFIX), third)])[0].get(NextHop) == NextHop(
        IPAddress("10.0.0.99")
    )


def test_adj_rib_out_skips_families_not_negotiated_and_unexportable_paths() -> None:
    out = _adj_out(EBGP, frozenset({4}))
    v6 = IPNetwork("2001:db8:5::/48")
    assert out.sync([(prefix_key(v6), Path.to(v6, LOCAL, None, (Origin(0), AsPath())))]) == []
    no_export = _path(FROM_EBGP, Communities((WellKnownCommunity.NO_EXPORT,)), asns=(65009,))
    assert out.sync([(prefix_key(PREFIX), no_export)]) == []
    no_v6_hop = AdjRibOut(EBGP, SessionContext(), frozenset({4, 6}), {4: IPAddress("10.0.0.1")})
    assert no_v6_hop.sync([(prefix_key(v6), Path.to(v6, LOCAL, None, (Origin(0), AsPath())))]) == []
