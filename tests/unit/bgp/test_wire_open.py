"""OPEN: capabilities, optional parameter layouts (RFC 5492, RFC 9072) and OPEN errors."""

from __future__ import annotations

import pytest
from netaddr import IPAddress

from sart.bgp.codes import ErrorCode, OpenSubcode
from sart.bgp.errors import BgpDecodeError
from sart.bgp.messages import (
    AddPathCapability,
    AddPathFamily,
    FourOctetAsCapability,
    FqdnCapability,
    GracefulRestartCapability,
    GracefulRestartFamily,
    MultiprotocolCapability,
    Open,
    RoleCapability,
    RouteRefreshCapability,
    UnknownCapability,
)
from sart.bgp.wire import decode_message, encode_message
from sart.errors import BgpUsageError

ROUTER = IPAddress("192.0.2.1")


def _open(**fields: object) -> Open:
    base: dict[str, object] = {"my_as": 65001, "hold_time": 90, "bgp_id": ROUTER}
    base.update(fields)
    return Open(**base)  # type: ignore[arg-type]


def test_one_capability_per_parameter_is_the_default_layout() -> None:
    message = _open(capabilities=(MultiprotocolCapability(1, 1), RouteRefreshCapability()))
    wire = encode_message(message)
    # two optional parameters of type 2: lengths 6 and 2
    assert wire[28] == 12 and wire[29:31] == b"\x02\x06" and wire[37:39] == b"\x02\x02"
    assert decode_message(wire) == message


def test_grouped_capabilities_keep_their_layout() -> None:
    message = _open(
        capabilities=(MultiprotocolCapability(1, 1), RouteRefreshCapability()),
        parameter_layout=(2,),
    )
    assert decode_message(encode_message(message)) == message


def test_parameters_over_255_octets_use_the_rfc_9072_format() -> None:
    names = tuple(FqdnCapability(f"host{i}", "example.net") for i in range(20))
    message = _open(capabilities=names)
    wire = encode_message(message)
    assert wire[28:30] == b"\xff\xff"  # non-extended length 255, type 255
    decoded = decode_message(wire)
    assert decoded == message  # the extended format was needed, so it is not marked
    assert isinstance(decoded, Open) and not decoded.extended_parameters


def test_rfc_9072_format_can_be_forced_and_is_remembered() -> None:
    message = _open(capabilities=(RouteRefreshCapability(),), extended_parameters=True)
    wire = encode_message(message)
    assert wire[28:32] == b"\xff\xff\x00\x05"  # type 2, 2-octet length, 2-octet capability
    assert decode_message(wire) == message


def test_asn_of_the_speaker_comes_from_the_four_octet_capability() -> None:
    message = _open(my_as=23456, capabilities=(FourOctetAsCapability(4200000000),))
    assert message.asn == 4200000000
    assert _open().asn == 65001


def test_capability_values_round_trip() -> None:
    capabilities = (
        GracefulRestartCapability(8, 120, (GracefulRestartFamily(1, 1, 0x80),)),
        AddPathCapability((AddPathFamily(1, 1, 3), AddPathFamily(2, 1, 1))),
        RoleCapability(3),
        UnknownCapability(200, b"\x01\x02"),
    )
    message = _open(capabilities=capabilities)
    assert decode_message(encode_message(message)) == message
    assert message.capability(RoleCapability) == RoleCapability(3)
    assert message.capability(FqdnCapability) is None


def _corrupt(wire: bytes, offset: int, value: bytes) -> bytes:
    return wire[:offset] + value + wire[offset + len(value) :]


@pytest.mark.parametrize(
    ("capability_bytes", "why"),
    [
        (b"\x01\x03\x00\x01\x00", "multiprotocol of 3 octets"),
        (b"\x41\x02\x00\x01", "4-octet AS of 2 octets"),
        (b"\x02\x01\x00", "route refresh with a value"),
        (b"\x45\x03\x00\x01\x01", "add-path entry cut short"),
        (b"\x49\x03\x05ab", "FQDN host name longer than the value"),
    ],
)
def test_malformed_capability_is_an_open_error(capability_bytes: bytes, why: str) -> None:
    wire = encode_message(_open(capabilities=(UnknownCapability(99, b""),)))
    body = wire[:28] + bytes((2 + len(capability_bytes), 2, len(capability_bytes)))
    message = body + capability_bytes
    message = message[:16] + len(message).to_bytes(2, "big") + message[18:]
    with pytest.raises(BgpDecodeError) as caught:
        decode_message(message)
    assert caught.value.code == ErrorCode.OPEN_MESSAGE, why
    assert caught.value.subcode == OpenSubcode.UNSPECIFIC


def test_four_octet_as_zero_is_a_bad_peer_as() -> None:
    wire = encode_message(_open(capabilities=(FourOctetAsCapability(0),)))
    with pytest.raises(BgpDecodeError) as caught:
        decode_message(wire)
    assert (caught.value.code, caught.value.subcode) == (2, OpenSubcode.BAD_PEER_AS)


@pytest.mark.parametrize("hold_time", [0, 3, 65535])
def test_every_legal_hold_time_decodes(hold_time: int) -> None:
    message = _open(hold_time=hold_time)
    assert decode_message(encode_message(message)) == message


def test_parameters_length_that_disagrees_with_the_message_is_an_open_error() -> None:
    wire = encode_message(_open(capabilities=(RouteRefreshCapability(),)))
    with pytest.raises(BgpDecodeError) as caught:
        decode_message(_corrupt(wire, 28, b"\x05"))
    assert caught.value.code == ErrorCode.OPEN_MESSAGE
    assert caught.value.offset == 28


def test_encoding_what_the_wire_cannot_carry_is_a_usage_error() -> None:
    with pytest.raises(BgpUsageError, match=r"Open|OPEN"):
        encode_message(_open(my_as=70000))
    with pytest.raises(BgpUsageError, match="layout"):
        encode_message(_open(capabilities=(RouteRefreshCapability(),), parameter_layout=(2,)))
    with pytest.raises(BgpUsageError, match="FQDN"):
        encode_message(_open(capabilities=(FqdnCapability("x" * 300),)))
