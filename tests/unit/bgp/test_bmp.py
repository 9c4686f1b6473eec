"""sart.bgp.bmp: BMP messages (RFC 7854) as octets, and as Wireshark's dissector reads them."""

from __future__ import annotations

import struct
from pathlib import Path

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from netaddr import IPAddress, IPNetwork

from sart.bgp.bmp import (
    PeerDown,
    PeerDownReason,
    PeerHeader,
    Statistic,
    StatType,
    TerminationReason,
    adj_rib_in_updates,
    encode_initiation,
    encode_peer_down,
    encode_peer_header,
    encode_peer_up,
    encode_route_monitoring,
    encode_statistics,
    encode_termination,
    peer_down,
)
from sart.bgp.context import SessionContext
from sart.bgp.messages import (
    IPV4_UNICAST,
    IPV6_UNICAST,
    AsPath,
    AsPathSegment,
    FourOctetAsCapability,
    MpReachNlri,
    MultiExitDisc,
    MultiprotocolCapability,
    NextHop,
    Notification,
    Open,
    Origin,
    Update,
)
from sart.bgp.rib import Rib, Source
from sart.bgp.wire import decode_message, encode_message
from sart.testing.tshark import dissect, write_pcap
from strategies import prefixes

PEER = PeerHeader(
    address=IPAddress("10.0.0.3"),
    asn=4_200_000_001,
    bgp_id=IPAddress("10.0.0.3"),
    timestamp=1_700_000_000.25,
)
PEER6 = PeerHeader(
    address=IPAddress("2001:db8::3"), asn=65010, bgp_id=IPAddress("10.0.0.3"), two_octet_as=True
)
FOUR_OCTET = SessionContext(four_octet_as=True)
SENT = Open(
    my_as=23456,
    hold_time=90,
    bgp_id=IPAddress("10.0.0.2"),
    capabilities=(MultiprotocolCapability(1, 1), FourOctetAsCapability(4_200_000_000)),
)
RECEIVED = Open(
    my_as=23456,
    hold_time=9,
    bgp_id=IPAddress("10.0.0.3"),
    capabilities=(MultiprotocolCapability(1, 1), FourOctetAsCapability(4_200_000_001)),
)


def _update(*nlri: str, asn: int = 4_200_000_001) -> Update:
    return Update(
        attributes=(
            Origin(0),
            AsPath((AsPathSegment(2, (asn,)),)),
            NextHop(IPAddress("10.0.0.3")),
        ),
        nlri=tuple(IPNetwork(p) for p in nlri),
    )


def _peer_up(local_address: str = "10.0.0.2") -> bytes:
    """Our session with PEER from local_address:179, the peer's port 40000."""
    return encode_peer_up(
        PEER,
        local_address=IPAddress(local_address),
        local_port=179,
        remote_port=40000,
        sent_open=SENT,
        received_open=RECEIVED,
    )


def _common(message: bytes) -> tuple[int, int, int]:
    version, length, kind = struct.unpack_from("!BIB", message)
    assert length == len(message)
    return version, length, kind


def test_per_peer_header_layout() -> None:
    header = encode_peer_header(PEER)
    assert len(header) == 42
    kind, flags = header[0], header[1]
    assert (kind, flags) == (0, 0)
    assert header[2:10] == bytes(8)
    assert header[10:26] == bytes(12) + bytes((10, 0, 0, 3))
    asn, bgp_id, seconds, microseconds = struct.unpack_from("!I4sII", header, 26)
    assert (asn, bgp_id, seconds, microseconds) == (
        4_200_000_001,
        bytes((10, 0, 0, 3)),
        1_700_000_000,
        250_000,
    )
    six = encode_peer_header(PEER6)
    assert six[1] == 0x80 | 0x20  # V (IPv6 peer) and A (2-octet AS_PATH)
    assert six[10:26] == IPAddress("2001:db8::3").packed


def test_initiation_carries_sys_descr_and_sys_name() -> None:
    message = encode_initiation("node1", "sart", "hello")
    assert _common(message)[::2] == (3, 4)
    body = message[6:]
    assert body == b"\x00\x01\x00\x04sart" + b"\x00\x02\x00\x05node1" + b"\x00\x00\x00\x05hello"


def test_termination_reason() -> None:
    message = encode_termination(TerminationReason.ADMINISTRATIVELY_CLOSED)
    assert message == bytes((3, 0, 0, 0, 12, 5)) + b"\x00\x01\x00\x02\x00\x00"


def test_peer_up_holds_both_opens_and_the_ports() -> None:
    message = _peer_up()
    assert _common(message)[2] == 3
    body = message[6 + 42 :]
    assert body[:16] == bytes(12) + bytes((10, 0, 0, 2))
    assert struct.unpack_from("!HH", body, 16) == (179, 40000)
    opens = body[20:]
    sent_length = struct.unpack_from("!H", opens, 16)[0]
    assert decode_message(opens[:sent_length]) == SENT
    assert decode_message(opens[sent_length:]) == RECEIVED


def test_peer_up_refuses_addresses_of_two_versions() -> None:
    with pytest.raises(ValueError, match="differ in version"):
        _peer_up("2001:db8::2")


CEASE, HOLD_EXPIRED = Notification(6, 2), Notification(4, 0)


@pytest.mark.parametrize(
    ("sent", "received", "local_close", "expected"),
    [
        (None, CEASE, False, PeerDown(PeerDownReason.REMOTE_NOTIFICATION, CEASE)),
        (HOLD_EXPIRED, None, False, PeerDown(PeerDownReason.LOCAL_NOTIFICATION, HOLD_EXPIRED)),
        (None, None, True, PeerDown(PeerDownReason.LOCAL_NO_NOTIFICATION, fsm_event=18)),
        (None, None, False, PeerDown(PeerDownReason.REMOTE_NO_NOTIFICATION)),
    ],
)
def test_peer_down_reason(
    sent: Notification | None, received: Notification | None, local_close: bool, expected: PeerDown
) -> None:
    assert peer_down(sent=sent, received=received, local_close=local_close) == expected


def test_peer_down_data_per_reason() -> None:
    cease = Notification(6, 2)
    notified = encode_peer_down(PEER, PeerDown(PeerDownReason.REMOTE_NOTIFICATION, cease))
    assert notified[6 + 42] == 3 and notified[6 + 43 :] == encode_message(cease)
    local = encode_peer_down(PEER, PeerDown(PeerDownReason.LOCAL_NO_NOTIFICATION, fsm_event=18))
    assert local[6 + 42 :] == b"\x02\x00\x12"
    remote = encode_peer_down(PEER, PeerDown(PeerDownReason.REMOTE_NO_NOTIFICATION))
    assert remote[6 + 42 :] == b"\x04"
    with pytest.raises(ValueError, match="needs its NOTIFICATION"):
        encode_peer_down(PEER, PeerDown(PeerDownReason.LOCAL_NOTIFICATION))


def test_route_monitoring_in_the_sessions_format() -> None:
    update = _update("10.1.0.0/24")
    message = encode_route_monitoring(PEER, update, FOUR_OCTET)
    assert _common(message)[2] == 0
    assert decode_message(message[6 + 42 :], FOUR_OCTET) == update


def test_statistics_counters_and_gauges() -> None:
    stats = [
        Statistic(StatType.AS_PATH_LOOPS, 2**32 + 5),
        Statistic(StatType.ADJ_RIB_IN_ROUTES, 2**40),
        Statistic(StatType.ADJ_RIB_IN_ROUTES_PER_FAMILY, 7, IPV6_UNICAST),
    ]
    message = encode_statistics(PEER, stats)
    body = message[6 + 42 :]
    assert struct.unpack_from("!I", body)[0] == 3
    assert body[4:] == (
        b"\x00\x04\x00\x04" + struct.pack("!I", 5)
        + b"\x00\x07\x00\x08" + struct.pack("!Q", 2**40)
        + b"\x00\x09\x00\x0b" + struct.pack("!HBQ", 2, 1, 7)
    )  # fmt: skip


def test_a_statistic_has_a_family_only_per_family() -> None:
    with pytest.raises(ValueError, match="types 9 and 10 only"):
        Statistic(StatType.ADJ_RIB_IN_ROUTES, 1, IPV4_UNICAST)
    with pytest.raises(ValueError, match="types 9 and 10 only"):
        Statistic(StatType.ADJ_RIB_IN_ROUTES_PER_FAMILY, 1)


SOURCE = Source(IPAddress("10.0.0.3"), 4_200_000_001, IPAddress("10.0.0.3"))


def _held(rib: Rib) -> set[tuple[int, IPAddress | None, frozenset[object]]]:
    return {(p.key, p.next_hop, frozenset(p.attributes)) for p in rib.paths_from(SOURCE)}


@given(
    st.lists(prefixes(4), max_size=60, unique=True),
    st.lists(prefixes(6), max_size=30, unique=True),
    st.integers(0, 3),
)
def test_adj_rib_in_dump_gives_back_the_routes_held(
    v4: list[IPNetwork], v6: list[IPNetwork], groups: int
) -> None:
    """The UPDATEs of a dump, read by a RIB, hold what the first RIB held from the peer."""
    received = []
    for index, prefix in enumerate(v4):
        attributes = (Origin(0), AsPath((AsPathSegment(2, (65010, 65100 + index % (groups + 1))),)))
        received.append(
            Update(attributes=(*attributes, NextHop(IPAddress("10.0.0.3"))), nlri=(prefix,))
        )
    for index, prefix in enumerate(v6):
        reach = MpReachNlri(2, 1, (IPAddress("2001:db8::3"),), (prefix,))
        received.append(
            Update(attributes=(reach, Origin(2), AsPath(), MultiExitDisc(index % (groups + 1))))
        )
    held = Rib(local_asn=65000)
    held.apply_updates(SOURCE, received)
    updates = adj_rib_in_updates(held.paths_from(SOURCE), FOUR_OCTET)
    again = Rib(local_asn=65000)
    read = [decode_message(encode_message(u, FOUR_OCTET), FOUR_OCTET) for u in updates]
    assert all(type(u) is Update for u in read)
    again.apply_updates(SOURCE, [u for u in read if isinstance(u, Update)])
    assert _held(again) == _held(held)
    if v4 or v6:
        assert len(updates) <= 2 * (groups + 1)  # routes that share attributes share UPDATEs


def test_tshark_reads_every_message(tmp_path: Path) -> None:
    """Wireshark's BMP dissector (Debian's tshark) reads each kind of message as meant, and
    finds nothing malformed."""
    update6 = Update(
        attributes=(
            MpReachNlri(2, 1, (IPAddress("2001:db8::3"),), (IPNetwork("2001:db8:1::/48"),)),
            Origin(0),
            AsPath((AsPathSegment(2, (65010,)),)),
        )
    )
    messages = [
        encode_initiation("node1", "sart test"),
        _peer_up(),
        encode_route_monitoring(PEER, _update("10.1.0.0/24", "10.2.0.0/16"), FOUR_OCTET),
        encode_route_monitoring(attrs.evolve(PEER6, two_octet_as=False), update6, FOUR_OCTET),
        encode_route_monitoring(PEER, Update.end_of_rib(IPV4_UNICAST), FOUR_OCTET),
        encode_statistics(
            PEER,
            [
                Statistic(StatType.ADJ_RIB_IN_ROUTES, 2),
                Statistic(StatType.ADJ_RIB_IN_ROUTES_PER_FAMILY, 2, IPV4_UNICAST),
            ],
        ),
        encode_peer_down(PEER, PeerDown(PeerDownReason.REMOTE_NOTIFICATION, Notification(6, 2))),
        encode_peer_down(PEER6, PeerDown(PeerDownReason.LOCAL_NO_NOTIFICATION, fsm_event=18)),
        encode_termination(TerminationReason.ADMINISTRATIVELY_CLOSED),
    ]
    pcap = tmp_path / "bmp.pcap"
    write_pcap(messages, pcap, 11019)
    seen = dissect(pcap, 11019)
    assert seen.problems == []
    assert [m.kind for m in seen.messages] == [4, 3, 0, 0, 0, 1, 2, 2, 5]
    init, up, rm4, rm6, eor, stats, down, down6, term = seen.messages
    assert init.values("bmp.init.info") == ["sart test", "node1"]
    assert up.value("bmp.peer.ip.addr") == "10.0.0.3"
    assert up.value("bmp.peer.asn") == "4200000001"
    assert up.value("bmp.peer.timestamp.sec") == "1700000000"
    assert up.value("bmp.peer.up.ip.addr") == "10.0.0.2"
    assert (up.value("bmp.peer.up.port.local"), up.value("bmp.peer.up.port.remote")) == (
        "179",
        "40000",
    )
    assert up.values("bgp.open.identifier") == ["10.0.0.2", "10.0.0.3"]
    assert rm4.prefixes == ["10.1.0.0/24", "10.2.0.0/16"]
    assert rm4.values("bgp.update.path_attribute.as_path_segment.as4") == ["4200000001"]
    assert rm6.value("bmp.peer.ipv6.addr") == "2001:db8::3"
    assert rm6.value("bmp.peer.flags.as_path") == "0"
    assert rm6.prefixes == ["2001:db8:1::/48"]
    assert eor.prefixes == [] and eor.value("bgp.length") == "23"
    assert stats.values("bmp.stats.type") == ["7", "9"]
    assert stats.value("bmp.stats.data.routes_adj_rib_in") == "2"
    assert stats.value("bmp.stats.data.routes_per_adj_rib_in") == "2"
    assert down.value("bmp.peer.down.reason") == "3"
    assert (down.value("bgp.notify.major_error"), down.value("bgp.notify.minor_error_cease")) == (
        "6",
        "2",
    )
    assert down6.value("bmp.peer.down.reason") == "2"
    assert term.value("bmp.term.reason") == "0"


def test_tshark_reads_a_two_octet_as_path(tmp_path: Path) -> None:
    """A peer without RFC 6793: the A flag set and ASNs of 2 octets. tshark 4.0 does not read
    the flag (it guesses, and takes a one-ASN path for 4-octet ASNs): told, it agrees."""
    update = _update("10.1.0.0/24", asn=65010)
    pcap = tmp_path / "bmp.pcap"
    write_pcap([encode_route_monitoring(PEER6, update, SessionContext())], pcap, 11019)
    seen = dissect(pcap, 11019, asn_length=2)
    assert seen.problems == []
    (message,) = seen.messages
    assert message.value("bmp.peer.flags.as_path") == "1"
    assert message.values("bgp.update.path_attribute.as_path_segment.as2") == ["65010"]
    assert message.prefixes == ["10.1.0.0/24"]
