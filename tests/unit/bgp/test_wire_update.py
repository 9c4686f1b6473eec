"""UPDATE: families, End-of-RIB, 4-octet AS in both directions, add-path, extended next hop,
extended length and messages, unknown attributes, and RFC 7606 verdicts."""

from __future__ import annotations

import pytest
from netaddr import IPAddress, IPNetwork

from sart.bgp.as4 import effective_aggregator, effective_as_path
from sart.bgp.codes import AS_TRANS, AttrFlag, ErrorHandling, UpdateSubcode
from sart.bgp.context import SessionContext
from sart.bgp.errors import BgpDecodeError
from sart.bgp.messages import (
    IPV4_UNICAST,
    IPV6_UNICAST,
    Aggregator,
    As4Aggregator,
    As4Path,
    AsPath,
    Communities,
    Family,
    LargeCommunities,
    LargeCommunity,
    MpReachNlri,
    MpUnreachNlri,
    NextHop,
    Origin,
    PathAttribute,
    UnknownAttribute,
    Update,
)
from sart.bgp.wire import decode_message, encode_message
from sart.errors import BgpUsageError

FOUR = SessionContext(four_octet_as=True)
TWO = SessionContext()
BASE: tuple[PathAttribute, ...] = (
    Origin(0),
    AsPath.from_asns(65001),
    NextHop(IPAddress("192.0.2.1")),
)


def _roundtrip(update: Update, ctx: SessionContext = FOUR) -> Update:
    decoded = decode_message(encode_message(update, ctx), ctx)
    assert isinstance(decoded, Update)
    return decoded


def _error(update_or_wire: Update | bytes, ctx: SessionContext = FOUR) -> BgpDecodeError:
    wire = (
        update_or_wire if isinstance(update_or_wire, bytes) else encode_message(update_or_wire, ctx)
    )
    with pytest.raises(BgpDecodeError) as caught:
        decode_message(wire, ctx)
    return caught.value


@pytest.mark.parametrize(
    "family", [IPV4_UNICAST, IPV6_UNICAST, Family(1, 2), Family(2, 2), Family(25, 70)]
)
def test_end_of_rib_of_every_family(family: Family) -> None:
    marker = Update.end_of_rib(family)
    assert _roundtrip(marker).end_of_rib_family == family


def test_an_update_with_routes_is_no_end_of_rib() -> None:
    assert Update(attributes=BASE, nlri=(IPNetwork("10.0.0.0/8"),)).end_of_rib_family is None
    assert Update(withdrawn=(IPNetwork("10.0.0.0/8"),)).end_of_rib_family is None


def test_ipv6_with_global_and_link_local_next_hops() -> None:
    reach = MpReachNlri(
        2,
        1,
        (IPAddress("2001:db8::1"), IPAddress("fe80::1")),
        (IPNetwork("2001:db8:1::/48"), IPNetwork("::/0"), IPNetwork("2001:db8::1/128")),
    )
    update = Update(attributes=(*BASE[:2], reach))
    assert _roundtrip(update) == update


def test_host_bits_past_the_prefix_length_are_cleared() -> None:
    update = Update(attributes=BASE, nlri=(IPNetwork("10.1.2.3/20"),))
    assert _roundtrip(update).nlri == (IPNetwork("10.1.0.0/20"),)


def test_four_octet_path_on_a_two_octet_session_travels_as_as_trans_and_as4_path() -> None:
    path = AsPath.from_asns(65001, 4200000000, 70000)
    aggregator = Aggregator(4200000000, IPAddress("192.0.2.9"))
    update = Update(
        attributes=(Origin(0), path, NextHop(IPAddress("192.0.2.1")), aggregator),
        nlri=(IPNetwork("10.0.0.0/8"),),
    )
    decoded = _roundtrip(update, TWO)
    sent_path = decoded.get(AsPath)
    assert sent_path is not None and list(sent_path.asns()) == [65001, AS_TRANS, AS_TRANS]
    assert decoded.get(As4Path) == As4Path.from_asns(65001, 4200000000, 70000)
    assert decoded.get(Aggregator) == Aggregator(AS_TRANS, IPAddress("192.0.2.9"))
    assert list(effective_as_path(decoded.attributes).asns()) == [65001, 4200000000, 70000]
    assert effective_aggregator(decoded.attributes) == aggregator


def test_as4_path_longer_than_as_path_is_ignored() -> None:
    attributes = (AsPath.from_asns(100), As4Path.from_asns(655200, 655201))
    assert effective_as_path(attributes) == AsPath.from_asns(100)


def test_real_two_octet_aggregator_makes_as4_attributes_ignored() -> None:
    attributes = (
        AsPath.from_asns(100, AS_TRANS),
        Aggregator(100, IPAddress("192.0.2.1")),
        As4Path.from_asns(655200),
        As4Aggregator(655200, IPAddress("192.0.2.1")),
    )
    assert effective_as_path(attributes) == attributes[0]
    assert effective_aggregator(attributes) == attributes[1]


def test_as4_path_on_a_four_octet_session_is_discarded() -> None:
    update = Update(
        attributes=(*BASE, As4Path.from_asns(4200000000)), nlri=(IPNetwork("10.0.0.0/8"),)
    )
    error = _error(update)
    assert error.handling is ErrorHandling.ATTRIBUTE_DISCARD
    assert error.recovered == Update(attributes=BASE, nlri=(IPNetwork("10.0.0.0/8"),))


def test_confederation_segments_in_as4_path_are_dropped() -> None:
    # AS_CONFED_SEQUENCE(70000) AS_SEQUENCE(70001), sent raw as type 17
    value = bytes((3, 1)) + (70000).to_bytes(4, "big") + bytes((2, 1)) + (70001).to_bytes(4, "big")
    update = Update(
        attributes=(*BASE, UnknownAttribute(17, value)),
        nlri=(IPNetwork("10.0.0.0/8"),),
    )
    decoded = decode_message(encode_message(update, TWO), TWO)
    assert isinstance(decoded, Update)
    assert decoded.get(As4Path) == As4Path.from_asns(70001)


def test_add_path_identifiers_per_family() -> None:
    ctx = SessionContext(four_octet_as=True, add_path=frozenset({IPV4_UNICAST, IPV6_UNICAST}))
    update = Update(
        withdrawn=(IPNetwork("10.9.0.0/16"),),
        attributes=(
            *BASE,
            MpReachNlri(2, 1, (IPAddress("2001:db8::1"),), (IPNetwork("2001:db8::/32"),), (7,)),
        ),
        nlri=(IPNetwork("10.0.0.0/8"), IPNetwork("10.0.0.0/8")),
        withdrawn_path_ids=(1,),
        nlri_path_ids=(2, 3),
    )
    assert _roundtrip(update, ctx) == update
    with pytest.raises(BgpUsageError, match="path id"):
        encode_message(update, FOUR)


def test_ipv6_next_hop_for_ipv4_routes_needs_extended_next_hop() -> None:
    reach = MpReachNlri(1, 1, (IPAddress("2001:db8::1"),), (IPNetwork("10.0.0.0/8"),))
    update = Update(attributes=(*BASE[:2], reach))
    ctx = SessionContext(four_octet_as=True, extended_next_hop=frozenset({IPV4_UNICAST}))
    assert _roundtrip(update, ctx) == update
    error = _error(update)
    assert error.handling is ErrorHandling.SESSION_RESET
    assert error.subcode == UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR
    assert "extended next hop" in error.reason


def test_long_attributes_get_the_extended_length_flag() -> None:
    communities = Communities(tuple(range(1, 101)))
    update = Update(attributes=(*BASE, communities), nlri=(IPNetwork("10.0.0.0/8"),))
    decoded = _roundtrip(update)
    got = decoded.get(Communities)
    assert got is not None and got.values == communities.values
    assert got.flags == communities.flags | AttrFlag.EXTENDED_LENGTH


def test_extended_length_flag_on_a_short_attribute_is_kept() -> None:
    origin = Origin(2, flags=0x50)
    update = Update(attributes=(origin, *BASE[1:]), nlri=(IPNetwork("10.0.0.0/8"),))
    wire = encode_message(update, FOUR)
    assert wire[23:27] == bytes((0x50, 1, 0, 1))
    assert _roundtrip(update) == update


def test_unknown_optional_transitive_attribute_is_carried_and_propagated_as_partial() -> None:
    unknown = UnknownAttribute(99, b"\x01\x02\x03")
    update = Update(attributes=(*BASE, unknown), nlri=(IPNetwork("10.0.0.0/8"),))
    assert _roundtrip(update) == update
    assert unknown.propagated() == UnknownAttribute(99, b"\x01\x02\x03", flags=0xE0)
    assert UnknownAttribute(98, b"", flags=0x80).propagated() is None


def test_unrecognised_well_known_attribute_resets_the_session() -> None:
    update = Update(attributes=(*BASE, UnknownAttribute(99, b"\x01", flags=0x40)))
    error = _error(update)
    assert (error.subcode, error.handling) == (
        UpdateSubcode.UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE,
        ErrorHandling.SESSION_RESET,
    )
    assert error.data == bytes((0x40, 99, 1, 1))


def test_two_mp_reach_attributes_reset_the_session() -> None:
    reach = MpReachNlri(2, 1, (IPAddress("2001:db8::1"),), (IPNetwork("2001:db8::/32"),))
    wire = bytearray(encode_message(Update(attributes=(*BASE[:2], reach)), FOUR))
    attribute = encode_message(Update(attributes=(reach,)), FOUR)[23:]
    wire += attribute
    wire[16:18] = len(wire).to_bytes(2, "big")
    wire[21:23] = (int.from_bytes(wire[21:23], "big") + len(attribute)).to_bytes(2, "big")
    error = _error(bytes(wire))
    assert error.handling is ErrorHandling.SESSION_RESET
    assert error.subcode == UpdateSubcode.MALFORMED_ATTRIBUTE_LIST


def test_malformed_attribute_in_an_update_without_routes_resets_the_session() -> None:
    # RFC 7606 5.2: a withdraw-only UPDATE cannot be treated-as-withdraw.
    wire = bytearray(
        encode_message(Update(withdrawn=(IPNetwork("10.0.0.0/8"),), attributes=(Origin(0),)), FOUR)
    )
    wire[-1] = 7  # ORIGIN 7
    error = _error(bytes(wire))
    assert error.handling is ErrorHandling.SESSION_RESET
    assert error.subcode == UpdateSubcode.INVALID_ORIGIN_ATTRIBUTE


def test_attribute_running_past_the_attribute_field_is_treat_as_withdraw() -> None:
    update = Update(attributes=BASE, nlri=(IPNetwork("10.0.0.0/8"),))
    wire = bytearray(encode_message(update, FOUR))
    wire[23 + 2] = 40  # ORIGIN claims 40 octets
    error = _error(bytes(wire))
    assert error.handling is ErrorHandling.TREAT_AS_WITHDRAW
    assert error.recovered == Update(withdrawn=(IPNetwork("10.0.0.0/8"),))


def test_mp_routes_are_withdrawn_too_when_treated_as_withdraw() -> None:
    reach = MpReachNlri(2, 1, (IPAddress("2001:db8::1"),), (IPNetwork("2001:db8::/32"),))
    update = Update(attributes=(Origin(0), reach, LargeCommunities((LargeCommunity(1, 2, 3),))))
    wire = bytearray(encode_message(update, FOUR))
    wire[-13] = 11  # LARGE_COMMUNITY length 11: not a multiple of 12
    wire = wire[:-1]
    wire[16:18] = len(wire).to_bytes(2, "big")
    wire[21:23] = (int.from_bytes(wire[21:23], "big") - 1).to_bytes(2, "big")
    error = _error(bytes(wire))
    assert error.handling is ErrorHandling.TREAT_AS_WITHDRAW
    assert error.recovered == Update(
        attributes=(MpUnreachNlri(2, 1, (IPNetwork("2001:db8::/32"),)),)
    )


def test_messages_over_4096_octets_need_extended_messages() -> None:
    prefixes = tuple(IPNetwork(f"10.{i // 256}.{i % 256}.0/24") for i in range(1200))
    update = Update(attributes=BASE, nlri=prefixes)
    with pytest.raises(BgpUsageError, match="4096"):
        encode_message(update, FOUR)
    ctx = SessionContext(four_octet_as=True, extended_message=True)
    wire = encode_message(update, ctx)
    assert len(wire) > 4096
    assert decode_message(wire, ctx) == update
    assert _error(wire).subcode == 2  # Bad Message Length without the capability


@pytest.mark.parametrize(
    ("update", "match"),
    [
        (Update(attributes=(AsPath.from_asns(2**32),)), "AS path 4294967296 .* 4 octets"),
        (Update(nlri=(IPNetwork("2001:db8::/32"),)), "IPv4"),
        (Update(attributes=(NextHop(IPAddress("2001:db8::1")),)), "IPv4"),
        (Update(nlri=(IPNetwork("10.0.0.0/8"),), nlri_path_ids=(1,)), "add-path"),
    ],
)
def test_encoding_what_the_wire_cannot_carry_is_a_usage_error(update: Update, match: str) -> None:
    with pytest.raises(BgpUsageError, match=match):
        encode_message(update, FOUR)


def test_an_attribute_type_twice_is_refused_by_the_encoder() -> None:
    with pytest.raises(BgpUsageError, match="at most once"):
        encode_message(Update(attributes=(Origin(0), Origin(1))), FOUR)
