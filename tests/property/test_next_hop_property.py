"""Next-hop checks (RFC 4271 6.3) against a reference written with netaddr's own networks, and
the RIB holding exactly the routes with a usable next hop."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import given
from netaddr import IPAddress, IPNetwork

from sart.bgp.messages import AsPath, NextHop, Origin, Update
from sart.bgp.rib import Ignored, Rib, Source, next_hop_problem

BAD_V4 = [IPNetwork(n) for n in ("0.0.0.0/8", "127.0.0.0/8", "224.0.0.0/4", "240.0.0.0/4")]
BAD_V6 = [IPNetwork(n) for n in ("::/128", "::1/128", "ff00::/8")]
OURS = IPAddress("192.0.2.1")
PEER = Source(IPAddress("192.0.2.2"), 65002, IPAddress("192.0.2.2"))

# Addresses near every boundary, and anywhere.
v4 = st.one_of(
    st.integers(0, 2**32 - 1),
    st.sampled_from([0, 2**24, 127 << 24, 128 << 24, 224 << 24, 240 << 24, 2**32 - 1]).flatmap(
        lambda edge: st.integers(max(edge - 2, 0), min(edge + 2, 2**32 - 1))
    ),
).map(lambda value: IPAddress(value, 4))
v6 = st.one_of(
    st.integers(0, 2**128 - 1), st.integers(0, 3), st.integers(0xFF << 120, 2**128 - 1)
).map(lambda value: IPAddress(value, 6))


def usable(address: IPAddress) -> bool:
    bad = BAD_V4 if address.version == 4 else BAD_V6
    return address != OURS and not any(address in network for network in bad)


@given(st.one_of(v4, v6))
def test_refused_exactly_the_unusable_addresses(address: IPAddress) -> None:
    assert (next_hop_problem(address, {OURS}) is None) == usable(address)


@given(
    st.lists(st.tuples(st.integers(0, 255), st.one_of(v4, st.just(OURS))), min_size=1, max_size=20)
)
def test_the_rib_holds_the_last_usable_announcement_of_each_prefix(
    announcements: list[tuple[int, IPAddress]],
) -> None:
    rib = Rib(local_asn=65000)
    model: dict[IPNetwork, IPAddress] = {}
    ignored_count = 0
    for third, hop in announcements:
        prefix = IPNetwork(f"10.0.{third}.0/24")
        update = Update(
            attributes=(Origin(0), AsPath.from_asns(65002), NextHop(hop)), nlri=(prefix,)
        )
        ignored: list[Ignored] = []
        rib.apply_update(PEER, update, local_addresses={OURS}, ignored=ignored)
        ignored_count += sum(len(i.prefixes) for i in ignored)
        if usable(hop):
            model[prefix] = hop
        else:
            model.pop(prefix, None)  # the newer, unusable route replaced the older one
    assert {p: paths[0].next_hop for p, paths in rib} == model
    assert ignored_count == sum(1 for _, hop in announcements if not usable(hop))
