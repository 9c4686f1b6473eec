"""NOTIFICATION, KEEPALIVE and ROUTE-REFRESH (RFC 2918, RFC 7313, RFC 9003), and headers."""

from __future__ import annotations

import pytest

from sart.bgp.codes import CeaseSubcode, ErrorCode, RouteRefreshSubtype
from sart.bgp.errors import BgpDecodeError
from sart.bgp.messages import Keepalive, Notification, RouteRefresh
from sart.bgp.wire import decode_message, decode_stream, encode_message


@pytest.mark.parametrize(
    "subtype",
    [
        RouteRefreshSubtype.NORMAL,
        RouteRefreshSubtype.BEGIN_OF_ROUTE_REFRESH,
        RouteRefreshSubtype.END_OF_ROUTE_REFRESH,
    ],
)
def test_route_refresh_subtypes(subtype: int) -> None:
    message = RouteRefresh(2, 1, subtype)
    wire = encode_message(message)
    assert len(wire) == 23
    assert decode_message(wire) == message


def test_route_refresh_with_orf_entries_keeps_them() -> None:
    message = RouteRefresh(1, 1, 0, b"\x01\x40\x00\x00")
    assert decode_message(encode_message(message)) == message


def test_enhanced_route_refresh_marker_of_the_wrong_length() -> None:
    wire = encode_message(RouteRefresh(1, 1, 1, b"\x00"))
    with pytest.raises(BgpDecodeError) as caught:
        decode_message(wire)
    assert (caught.value.code, caught.value.subcode) == (ErrorCode.ROUTE_REFRESH_MESSAGE, 1)
    assert caught.value.data == wire


def test_shutdown_communication_is_read() -> None:
    text = b"maintenance, back at 14:00"
    message = Notification(
        ErrorCode.CEASE, CeaseSubcode.ADMINISTRATIVE_SHUTDOWN, bytes((len(text),)) + text
    )
    decoded = decode_message(encode_message(message))
    assert isinstance(decoded, Notification)
    assert decoded.shutdown_message == "maintenance, back at 14:00"
    assert decoded.description == "CEASE / ADMINISTRATIVE_SHUTDOWN"


def test_unknown_error_codes_are_kept_and_described_by_number() -> None:
    message = Notification(42, 7, b"\x00")
    assert decode_message(encode_message(message)) == message
    assert message.description == "42 / 7"


def test_decode_stream_reports_offsets() -> None:
    keepalive = encode_message(Keepalive())
    refresh = encode_message(RouteRefresh(1, 1))
    assert list(decode_stream(keepalive + refresh + keepalive)) == [
        (0, Keepalive()),
        (19, RouteRefresh(1, 1)),
        (42, Keepalive()),
    ]


def test_decode_stream_with_a_cut_message_says_where() -> None:
    with pytest.raises(BgpDecodeError, match="not complete") as caught:
        list(decode_stream(encode_message(Keepalive()) + b"\xff" * 17))
    assert caught.value.offset == 19


def test_decode_stream_error_offsets_count_from_the_stream_start() -> None:
    bad = bytearray(encode_message(RouteRefresh(1, 1, 2)))
    bad[16:18] = (24).to_bytes(2, "big")
    bad += b"\x00"
    with pytest.raises(BgpDecodeError) as caught:
        list(decode_stream(encode_message(Keepalive()) + bytes(bad)))
    assert caught.value.offset == 19 + 16


@pytest.mark.parametrize("size", [0, 1, 18])
def test_fewer_octets_than_a_header(size: int) -> None:
    with pytest.raises(BgpDecodeError) as caught:
        decode_message(b"\xff" * size)
    assert (caught.value.code, caught.value.subcode) == (1, 2)


def test_length_field_must_match_the_message() -> None:
    wire = encode_message(Keepalive()) + b"\x00"
    with pytest.raises(BgpDecodeError, match="length field says 19"):
        decode_message(wire)
