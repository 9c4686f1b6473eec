"""The BFD control packet codec (RFC 5880 4.1): encode/decode round trips, and whatever a
datagram holds, decode_packet answers with a packet or a BfdDecodeError, nothing else."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from sart.bfd.packet import (
    Authentication,
    BfdDecodeError,
    ControlPacket,
    SessionState,
    decode_packet,
    encode_packet,
)

U32 = st.integers(0, 2**32 - 1)


@st.composite
def packets(draw: st.DrawFn) -> ControlPacket:
    state = draw(st.sampled_from(SessionState))
    poll = draw(st.booleans())
    your = draw(U32 if state in (SessionState.DOWN, SessionState.ADMIN_DOWN) else U32.filter(bool))
    return ControlPacket(
        diagnostic=draw(st.integers(0, 31)),
        state=state,
        poll=poll,
        final=draw(st.booleans()) and not poll,
        control_plane_independent=draw(st.booleans()),
        demand=draw(st.booleans()),
        detect_mult=draw(st.integers(1, 255)),
        my_discriminator=draw(st.integers(1, 2**32 - 1)),
        your_discriminator=your,
        desired_min_tx=draw(U32),
        required_min_rx=draw(U32),
        required_min_echo_rx=draw(U32),
        authentication=draw(
            st.none() | st.builds(Authentication, st.integers(0, 255), st.binary(max_size=30))
        ),
    )


@given(packets())
def test_round_trip(packet: ControlPacket) -> None:
    assert decode_packet(encode_packet(packet)) == packet


@given(packets(), st.binary(max_size=8))
def test_trailing_bytes_after_length_are_ignored(packet: ControlPacket, tail: bytes) -> None:
    """RFC 5880 6.8.6 only discards a Length beyond the payload, not one short of it."""
    assert decode_packet(encode_packet(packet) + tail) == packet


def _decode_or_error(data: bytes) -> None:
    try:
        packet = decode_packet(data)
    except BfdDecodeError:
        return
    assert decode_packet(encode_packet(packet)) == packet


@given(st.binary(max_size=64))
@example(b"")
@example(bytes.fromhex("20c0031800000001000000000000000000000000000000"))
def test_junk_only_raises_decode_error(data: bytes) -> None:
    _decode_or_error(data)


@given(packets(), st.data())
def test_mutated_packets_only_raise_decode_error(
    packet: ControlPacket, data: st.DataObject
) -> None:
    raw = bytearray(encode_packet(packet))
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(raw) - 1))
        raw[index] = data.draw(st.integers(0, 255))
    _decode_or_error(bytes(raw))


def _raw(**fields: int) -> bytearray:
    return bytearray(encode_packet(ControlPacket(my_discriminator=1, **fields)))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("mutate", "why"),
    [
        (lambda b: b.__setitem__(0, 2 << 5), "version"),
        (lambda b: b.__setitem__(3, 23), "too short"),
        (lambda b: b.__setitem__(3, 30), "beyond"),
        (lambda b: b.__setitem__(2, 0), "multiplier"),
        (lambda b: b.__setitem__(1, b[1] | 1), "multipoint"),
        (lambda b: b.__setitem__(slice(4, 8), bytes(4)), "my discriminator"),
        (lambda b: b.__setitem__(1, 3 << 6), "your discriminator 0"),
        (lambda b: b.__setitem__(1, b[1] | 0x30), "poll and final"),
        (lambda b: b.__setitem__(1, b[1] | 0x04), "too short"),
    ],
)
def test_rfc5880_6_8_6_discards(mutate: object, why: str) -> None:
    raw = _raw()
    mutate(raw)  # type: ignore[operator]
    with pytest.raises(BfdDecodeError, match=why):
        decode_packet(bytes(raw))


def test_wire_layout() -> None:
    """RFC 5880 4.1, byte by byte: Vers 1, Up with Poll, mult 3, length 24, the intervals."""
    packet = ControlPacket(
        diagnostic=1,
        state=SessionState.UP,
        poll=True,
        detect_mult=3,
        my_discriminator=0x01020304,
        your_discriminator=0x05060708,
        desired_min_tx=300_000,
        required_min_rx=300_000,
    )
    assert encode_packet(packet).hex() == (
        "21e00318" "01020304" "05060708" "000493e0" "000493e0" "00000000"
    )  # fmt: skip
