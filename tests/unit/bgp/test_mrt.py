"""The MRT encoder (sart.bgp.mrt), read back by bgpdump, the independent reader."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from netaddr import IPAddress, IPNetwork

from sart.bgp.codes import AS_TRANS
from sart.bgp.context import SessionContext
from sart.bgp.fsm import State
from sart.bgp.messages import (
    IPV4_UNICAST,
    As4Path,
    AsPath,
    Communities,
    LocalPref,
    MultiExitDisc,
    NextHop,
    Origin,
    Update,
)
from sart.bgp.mrt import (
    encode_bgp4mp_message,
    encode_bgp4mp_state_change,
    table_dump,
)
from sart.bgp.rib import Path as RibPath
from sart.bgp.rib import Rib, Source
from sart.bgp.wire import encode_message
from sart.errors import BgpUsageError
from sart.testing import bgpdump

V4_PEER = Source(IPAddress("10.0.0.1"), 65001, IPAddress("1.1.1.1"))
V6_PEER = Source(IPAddress("2001:db8::2"), 4200000000, IPAddress("2.2.2.2"))
OURS = Source(None, 65000, IPAddress("9.9.9.9"))
COLLECTOR = IPAddress("9.9.9.9")


OWN = (Origin(0), AsPath())  # one tuple for our paths of both versions, as the speaker has


def _rib() -> Rib:
    rib = Rib(multipath=True)
    v4 = (
        Origin(0),
        AsPath.from_asns(65001, 4200000001),
        NextHop(IPAddress("10.0.0.1")),
        MultiExitDisc(5),
        Communities((65001 << 16 | 7,)),
    )
    v6 = (Origin(1), AsPath.from_asns(4200000000, 65009), LocalPref(50))
    rib.announce(
        [
            RibPath.to(IPNetwork("192.0.2.0/24"), V4_PEER, IPAddress("10.0.0.1"), v4),
            RibPath.to(IPNetwork("2001:db8:1::/48"), V6_PEER, IPAddress("2001:db8::2"), v6),
            RibPath.to(IPNetwork("198.51.100.0/25"), OURS, None, OWN),
            RibPath.to(IPNetwork("2001:db8:2::/64"), OURS, None, OWN),
            RibPath.to(IPNetwork("203.0.113.0/24"), OURS, None, OWN),
            RibPath.to(IPNetwork("203.0.113.0/24"), V4_PEER, IPAddress("10.0.0.1"), v4),
        ]
    )
    return rib


def _dump(tmp_path: Path, data: bytes) -> bgpdump.Dump:
    file = tmp_path / "dump.mrt"
    file.write_bytes(data)
    read = bgpdump.read(file)
    assert read.errors == ""
    return read


def test_loc_rib_dump_reads_back_with_every_attribute(tmp_path: Path) -> None:
    rib = _rib()
    chunks = table_dump(rib.entries(), rib.sources(), collector_id=COLLECTOR, timestamp=17)
    routes = {(r.prefix, r.peer): r for r in _dump(tmp_path, b"".join(chunks)).routes}
    assert set(routes) == {
        ("192.0.2.0/24", "10.0.0.1"),
        ("2001:db8:1::/48", "2001:db8::2"),
        ("198.51.100.0/25", "0.0.0.0"),
        ("2001:db8:2::/64", "0.0.0.0"),
        ("203.0.113.0/24", "0.0.0.0"),  # the best path only: ours
    }
    v4 = routes["192.0.2.0/24", "10.0.0.1"]
    assert (v4.kind, v4.peer_as, v4.as_path, v4.origin) == ("B", 65001, "65001 4200000001", "IGP")
    assert (v4.next_hop, v4.med, v4.communities) == ("10.0.0.1", 5, "65001:7")
    v6 = routes["2001:db8:1::/48", "2001:db8::2"]
    assert (v6.peer_as, v6.as_path, v6.origin) == (4200000000, "4200000000 65009", "EGP")
    assert (v6.next_hop, v6.local_pref) == ("2001:db8::2", 50)
    assert routes["2001:db8:2::/64", "0.0.0.0"].next_hop == "::"  # ours: the unspecified address
    assert routes["198.51.100.0/25", "0.0.0.0"].peer_as == 65000


def test_adj_ribs_in_hold_every_path_of_a_prefix(tmp_path: Path) -> None:
    rib = _rib()
    chunks = table_dump(
        rib.candidate_entries(), rib.sources(), collector_id=COLLECTOR, timestamp=17
    )
    read = _dump(tmp_path, b"".join(chunks))
    assert sorted(r.peer for r in read.routes if r.prefix == "203.0.113.0/24") == [
        "0.0.0.0",
        "10.0.0.1",
    ]
    assert len(read.routes) == 6


def test_a_two_octet_peer_s_path_is_written_as_it_really_was(tmp_path: Path) -> None:
    """AS_PATH with AS_TRANS and the real path in AS4_PATH (RFC 6793): the entry holds the
    real path in 4 octets and no AS4_PATH."""
    rib = Rib()
    attributes = (
        Origin(0),
        AsPath.from_asns(65001, AS_TRANS),
        NextHop(IPAddress("10.0.0.1")),
        As4Path.from_asns(4200000001),
    )
    rib.announce(
        [RibPath.to(IPNetwork("192.0.2.0/24"), V4_PEER, IPAddress("10.0.0.1"), attributes)]
    )
    chunks = table_dump(rib.entries(), rib.sources(), collector_id=COLLECTOR, timestamp=17)
    (route,) = _dump(tmp_path, b"".join(chunks)).routes
    assert route.as_path == "65001 4200000001"


def test_a_dump_comes_in_chunks_and_numbers_its_records(tmp_path: Path) -> None:
    rib = Rib()
    peer_path = (Origin(0), AsPath.from_asns(65001), NextHop(IPAddress("10.0.0.1")))
    prefixes = [IPNetwork(((10 << 24) + (i << 8), 24), 4) for i in range(3000)]
    rib.announce([RibPath.to(p, V4_PEER, IPAddress("10.0.0.1"), peer_path) for p in prefixes])
    chunks = list(
        table_dump(
            rib.entries(), rib.sources(), collector_id=COLLECTOR, timestamp=17, chunk_size=4096
        )
    )
    assert len(chunks) > 10 and all(len(c) < 4096 + 100 for c in chunks)
    read = _dump(tmp_path, b"".join(chunks))
    assert {r.prefix for r in read.routes} == {str(p) for p in prefixes}
    data = b"".join(chunks)
    # After the peer index table: RIB_IPV4_UNICAST records numbered from 0.
    _, _, _, length = struct.unpack_from(">IHHI", data)
    first = 12 + length
    second = first + 12 + struct.unpack_from(">I", data, first + 8)[0]
    assert struct.unpack_from(">I", data, first + 12)[0] == 0
    assert struct.unpack_from(">I", data, second + 12)[0] == 1


def test_a_path_from_an_unknown_source_is_refused() -> None:
    rib = _rib()
    with pytest.raises(BgpUsageError, match="not a peer"):
        list(table_dump(rib.entries(), [OURS], collector_id=COLLECTOR, timestamp=17))


def test_bgp4mp_records_read_back(tmp_path: Path) -> None:
    update = Update(
        attributes=(
            Origin(0),
            AsPath.from_asns(4200000000, 65002),
            NextHop(IPAddress("10.0.0.1")),
            Communities((65002 << 16 | 1,)),
        ),
        nlri=(IPNetwork("192.0.2.0/24"), IPNetwork("192.0.2.128/25")),
        withdrawn=(IPNetwork("198.51.100.0/24"),),
    )
    four = SessionContext(four_octet_as=True)
    session = {
        "peer_asn": 4200000000,
        "local_asn": 65000,
        "peer": IPAddress("10.0.0.1"),
        "local": IPAddress("10.0.0.2"),
    }
    records = [
        encode_bgp4mp_state_change(20, State.OPEN_CONFIRM, State.ESTABLISHED, **session),
        encode_bgp4mp_message(21, encode_message(update, four), **session),
    ]
    two = Update(
        attributes=(Origin(0), AsPath.from_asns(65003), NextHop(IPAddress("10.0.0.3"))),
        nlri=(IPNetwork("203.0.113.0/24"),),
    )
    records.append(
        encode_bgp4mp_message(
            22,
            encode_message(two),
            peer_asn=65003,
            local_asn=65000,
            peer=IPAddress("10.0.0.3"),
            local=None,
            as4=False,
        )
    )
    read = _dump(tmp_path, b"".join(records))
    assert [(s.peer, s.peer_as, s.old, s.new) for s in read.states] == [
        ("10.0.0.1", 4200000000, 5, 6)
    ]
    assert [(r.kind, r.prefix, r.as_path) for r in read.routes] == [
        ("W", "198.51.100.0/24", ""),
        ("A", "192.0.2.0/24", "4200000000 65002"),
        ("A", "192.0.2.128/25", "4200000000 65002"),
        ("A", "203.0.113.0/24", "65003"),
    ]
    assert read.routes[1].communities == "65002:1"


def test_bgp4mp_refuses_what_its_fields_cannot_hold() -> None:
    with pytest.raises(BgpUsageError, match="different families"):
        encode_bgp4mp_message(
            0, b"", peer_asn=1, local_asn=2, peer=IPAddress("10.0.0.1"), local=IPAddress("::1")
        )
    with pytest.raises(BgpUsageError, match="does not fit 2 octets"):
        encode_bgp4mp_message(
            0, b"", peer_asn=70000, local_asn=2, peer=IPAddress("10.0.0.1"), local=None, as4=False
        )


def test_paths_with_identifiers_go_in_rfc_8050_records(tmp_path: Path) -> None:
    rib = Rib()
    hop = (Origin(0), AsPath.from_asns(65001), NextHop(IPAddress("10.0.0.1")))
    other = (Origin(0), AsPath.from_asns(65001, 65002), NextHop(IPAddress("10.0.0.9")))
    prefix = IPNetwork("192.0.2.0/24")
    rib.announce(
        [
            RibPath.to(prefix, V4_PEER, IPAddress("10.0.0.1"), hop, 1),
            RibPath.to(prefix, V4_PEER, IPAddress("10.0.0.9"), other, 2),
            RibPath.to(IPNetwork("198.51.100.0/24"), V4_PEER, IPAddress("10.0.0.1"), hop),
        ]
    )
    chunks = table_dump(
        rib.candidate_entries(), rib.sources(), collector_id=COLLECTOR, timestamp=17
    )
    read = _dump(tmp_path, b"".join(chunks))
    assert sorted((r.prefix, r.path_id, r.as_path, r.next_hop) for r in read.routes) == [
        ("192.0.2.0/24", 1, "65001", "10.0.0.1"),
        ("192.0.2.0/24", 2, "65001 65002", "10.0.0.9"),
        ("198.51.100.0/24", 0, "65001", "10.0.0.1"),
    ]


def test_an_add_path_session_s_updates_go_in_rfc_8050_records(tmp_path: Path) -> None:
    add_path = SessionContext(four_octet_as=True, add_path=frozenset({IPV4_UNICAST}))
    update = Update(
        attributes=(Origin(0), AsPath.from_asns(65001), NextHop(IPAddress("10.0.0.1"))),
        nlri=(IPNetwork("192.0.2.0/24"), IPNetwork("192.0.2.0/24")),
        nlri_path_ids=(1, 2),
        withdrawn=(IPNetwork("198.51.100.0/24"),),
        withdrawn_path_ids=(7,),
    )
    record = encode_bgp4mp_message(
        21,
        encode_message(update, add_path),
        peer_asn=65001,
        local_asn=65000,
        peer=IPAddress("10.0.0.1"),
        local=IPAddress("10.0.0.2"),
        add_path=True,
    )
    read = _dump(tmp_path, record)
    assert [(r.kind, r.prefix, r.path_id, r.as_path) for r in read.routes] == [
        ("W", "198.51.100.0/24", 7, ""),
        ("A", "192.0.2.0/24", 1, "65001"),
        ("A", "192.0.2.0/24", 2, "65001"),
    ]
