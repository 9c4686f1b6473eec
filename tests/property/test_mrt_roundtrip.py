"""decode_table_dump(table_dump(RIB)) gives back every path: its prefix, its peer, its path id,
when it was learned, its attributes and next hop; a truncated dump is an MrtDecodeError or its first
records."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from netaddr import IPAddress, IPNetwork

from sart.bgp.context import SessionContext
from sart.bgp.messages import AsPath, PathAttribute
from sart.bgp.mrt import decode_table_dump, peer_address, table_dump
from sart.bgp.rib import Path, Rib, Source
from sart.errors import MrtDecodeError
from strategies import (
    as_paths,
    communities,
    ipv4_addresses,
    ipv6_addresses,
    large_communities,
    local_prefs,
    multi_exit_discs,
    origins,
    prefixes,
)

FOUR = SessionContext(four_octet_as=True)
COLLECTOR = IPAddress("192.0.2.1")


@st.composite
def sources(draw: st.DrawFn) -> Source:
    if draw(st.booleans()):
        return Source(None, draw(st.integers(1, 2**32 - 1)), draw(ipv4_addresses()))
    address = draw(st.one_of(ipv4_addresses(nonzero=True), ipv6_addresses()))
    return Source(address, draw(st.integers(1, 2**32 - 1)), draw(ipv4_addresses()))


@st.composite
def paths(draw: st.DrawFn, source: Source) -> Path:
    prefix: IPNetwork = draw(st.one_of(prefixes(4), prefixes(6)))
    hop = None
    if draw(st.booleans()):
        hop = draw(ipv4_addresses(nonzero=True) if prefix.version == 4 else ipv6_addresses())
    attributes: list[PathAttribute] = [draw(origins(FOUR)), draw(as_paths(FOUR))]
    for optional in (multi_exit_discs, local_prefs, communities, large_communities):
        if draw(st.booleans()):
            attributes.append(draw(optional(FOUR)))
    learned = draw(st.floats(0, 2**31, allow_nan=False))
    path_id = draw(st.sampled_from((0, 0, 1, 2**32 - 1)))
    return Path.to(prefix, source, hop, tuple(attributes), path_id, learned)


@st.composite
def ribs(draw: st.DrawFn) -> Rib:
    rib = Rib()
    for source in draw(st.lists(sources(), min_size=1, max_size=4, unique=True)):
        rib.announce(draw(st.lists(paths(source), max_size=8)))
    return rib


def _unspecified(prefix: IPNetwork) -> IPAddress:
    return IPAddress(0, prefix.version)


@given(ribs())
def test_a_dump_decodes_to_the_paths_it_was_made_of(rib: Rib) -> None:
    sources = rib.sources()
    data = b"".join(
        table_dump(rib.candidate_entries(), sources, collector_id=COLLECTOR, timestamp=7)
    )
    table, records = decode_table_dump(data)
    assert table.collector_id == COLLECTOR
    assert [(p.address, p.asn, p.router_id) for p in table.peers] == [
        (peer_address(s), s.asn, s.router_id) for s in sources
    ]
    assert [r.sequence for r in records] == list(range(len(records)))
    decoded = {
        (r.prefix, sources[e.peer_index], e.path_id, e.originated, e.attributes, e.next_hop)
        for r in records
        for e in r.entries
    }
    expected = {
        (
            path.prefix,
            path.source,
            path.path_id,
            int(path.learned),
            tuple(sorted(path.attributes, key=lambda a: a.type_code)),
            path.next_hop or _unspecified(path.prefix),
        )
        for _, candidates in rib.candidate_entries()
        for path in candidates
    }
    assert decoded == expected


@given(ribs(), st.data())
def test_a_cut_dump_is_an_mrt_decode_error_or_its_first_records(
    rib: Rib, data: st.DataObject
) -> None:
    """Cut inside a record: MrtDecodeError, never another error. Cut between two: the
    records before the cut, a valid file of its own."""
    whole = b"".join(
        table_dump(rib.candidate_entries(), rib.sources(), collector_id=COLLECTOR, timestamp=7)
    )
    _, records = decode_table_dump(whole)
    cut = data.draw(st.integers(0, len(whole) - 1))
    try:
        _, first = decode_table_dump(whole[:cut])
    except MrtDecodeError as error:
        assert 0 <= error.offset <= cut
    else:
        assert first == records[: len(first)] and len(first) < len(records)


def test_as_path_is_kept_in_four_octets() -> None:
    source = Source(IPAddress("10.0.0.1"), 65001, IPAddress("10.0.0.1"))
    path = Path.to(IPNetwork("10.1.0.0/16"), source, None, (AsPath.from_asns(4200000000),))
    rib = Rib()
    rib.announce([path])
    _, (record,) = decode_table_dump(
        b"".join(table_dump(rib.entries(), [source], collector_id=COLLECTOR, timestamp=7))
    )
    assert record.entries[0].attributes == (AsPath.from_asns(4200000000),)
