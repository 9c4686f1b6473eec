"""Two OPENs make a session: times, families, contexts per direction, and refusals."""

from __future__ import annotations

import pytest
from netaddr import IPAddress

from sart.bgp.codes import OpenSubcode
from sart.bgp.errors import BgpDecodeError
from sart.bgp.messages import (
    IPV4_UNICAST,
    IPV6_UNICAST,
    AddPathCapability,
    AddPathFamily,
    Capability,
    ExtendedMessageCapability,
    ExtendedNextHopCapability,
    ExtendedNextHopEntry,
    FourOctetAsCapability,
    MultiprotocolCapability,
    Open,
    RouteRefreshCapability,
)
from sart.bgp.negotiation import negotiate
from sart.bgp.wire import decode_message
from testdata import read_capture


def _open(asn: int, router: str, *capabilities: Capability, hold: int = 90) -> Open:
    my_as = asn if asn <= 0xFFFF else 23456
    return Open(
        my_as=my_as,
        hold_time=hold,
        bgp_id=IPAddress(router),
        capabilities=(FourOctetAsCapability(asn), *capabilities),
    )


def test_times_families_and_contexts() -> None:
    local = _open(
        65001,
        "10.0.0.1",
        MultiprotocolCapability(1, 1),
        MultiprotocolCapability(2, 1),
        RouteRefreshCapability(),
        ExtendedMessageCapability(),
        AddPathCapability((AddPathFamily(1, 1, 3), AddPathFamily(2, 1, 1))),
        ExtendedNextHopCapability((ExtendedNextHopEntry(1, 1, 2),)),
        hold=90,
    )
    remote = _open(
        4200000000,
        "10.0.0.2",
        MultiprotocolCapability(1, 1),
        MultiprotocolCapability(2, 1),
        ExtendedMessageCapability(),
        AddPathCapability((AddPathFamily(1, 1, 2), AddPathFamily(2, 1, 2))),
        ExtendedNextHopCapability((ExtendedNextHopEntry(1, 1, 2),)),
        hold=30,
    )
    result = negotiate(local, remote, peer_asn=4200000000)
    assert (result.hold_time, result.keepalive_time) == (30, 10)
    assert result.families == {IPV4_UNICAST, IPV6_UNICAST}
    assert result.receive.four_octet_as and result.receive.extended_message
    assert result.receive.add_path == {IPV4_UNICAST, IPV6_UNICAST}  # they send, we receive
    assert result.send.add_path == frozenset()  # they only send
    assert result.receive.extended_next_hop == {IPV4_UNICAST}
    assert not result.route_refresh  # only one side announced it


@pytest.mark.parametrize(
    ("ours", "theirs", "keepalive", "expected"),
    [
        (90, 90, None, (90, 30)),  # a third of the hold time
        (90, 90, 10, (90, 10)),  # ours, shorter
        (90, 9, 10, (9, 3)),  # the peer lowered the hold time: a third of it, shorter
        (90, 0, 10, (0, 0)),  # hold time 0: no KEEPALIVE at all (the FSM arms no timer)
    ],
)
def test_keepalive_time_is_ours_or_a_third_of_the_hold_time_whichever_is_shorter(
    ours: int, theirs: int, keepalive: int | None, expected: tuple[int, int]
) -> None:
    result = negotiate(
        _open(65001, "10.0.0.1", hold=ours),
        _open(65002, "10.0.0.2", hold=theirs),
        keepalive_time=keepalive,
    )
    assert (result.hold_time, result.keepalive_time) == expected


def test_no_multiprotocol_capability_means_ipv4_unicast() -> None:
    result = negotiate(_open(65001, "10.0.0.1"), _open(65002, "10.0.0.2"))
    assert result.families == {IPV4_UNICAST}


def test_two_octet_peer_gets_a_two_octet_context() -> None:
    remote = decode_message(read_capture("messages/open-2bytes-asn"))
    assert isinstance(remote, Open)
    result = negotiate(_open(65001, "10.0.0.1"), remote, peer_asn=65100)
    assert not result.receive.four_octet_as and not result.send.four_octet_as
    assert result.route_refresh is False


def test_wrong_peer_as_is_bad_peer_as_with_its_as_as_data() -> None:
    with pytest.raises(BgpDecodeError) as caught:
        negotiate(_open(65001, "10.0.0.1"), _open(65200, "10.0.0.2"), peer_asn=65002)
    assert (caught.value.code, caught.value.subcode) == (2, OpenSubcode.BAD_PEER_AS)
    assert caught.value.data == bytes.fromhex("feb0")


def test_ibgp_peer_with_our_identifier_is_refused() -> None:
    with pytest.raises(BgpDecodeError) as caught:
        negotiate(_open(65001, "10.0.0.1"), _open(65001, "10.0.0.1"))
    assert caught.value.subcode == OpenSubcode.BAD_BGP_IDENTIFIER


def test_as_trans_without_the_capability_is_refused() -> None:
    remote = Open(my_as=23456, hold_time=90, bgp_id=IPAddress("10.0.0.2"))
    with pytest.raises(BgpDecodeError, match="AS_TRANS"):
        negotiate(_open(65001, "10.0.0.1"), remote)
