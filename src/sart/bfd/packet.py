"""The BFD control packet (RFC 5880 4.1): bytes in, `ControlPacket` out, and back.

`decode_packet` applies the reception checks of RFC 5880 6.8.6 that need only the packet
(version, length, detect multiplier, multipoint bit, discriminators); the checks that need a
session (which discriminator is ours, authentication in use) are the session's. Anything
else a peer can send raises `BfdDecodeError`, the only exception the decoder raises.
"""

from __future__ import annotations

import enum
import struct

import attrs

from sart.errors import SartError

VERSION = 1
HEADER_LENGTH = 24  # the mandatory section
_HEADER = struct.Struct("!BBBBIIIII")
_U32 = 2**32 - 1


class BfdDecodeError(SartError):
    """A datagram that is no valid BFD control packet: RFC 5880 6.8.6 says discard it."""


class SessionState(enum.IntEnum):
    """The Sta field (RFC 5880 4.1), also the session's state (6.2)."""

    ADMIN_DOWN = 0  # RFC 5880 4.1: AdminDown
    DOWN = 1  # RFC 5880 4.1: Down
    INIT = 2  # RFC 5880 4.1: Init
    UP = 3  # RFC 5880 4.1: Up


class Diagnostic(enum.IntEnum):
    """The Diag field (RFC 5880 4.1): why the session last left Up."""

    NONE = 0  # No Diagnostic
    CONTROL_DETECTION_TIME_EXPIRED = 1  # RFC 5880 6.8.4
    ECHO_FUNCTION_FAILED = 2  # RFC 5880 6.8.5
    NEIGHBOR_SIGNALED_SESSION_DOWN = 3  # RFC 5880 6.8.6
    FORWARDING_PLANE_RESET = 4  # RFC 5880 4.1
    PATH_DOWN = 5  # RFC 5880 4.1
    CONCATENATED_PATH_DOWN = 6  # RFC 5880 4.1
    ADMINISTRATIVELY_DOWN = 7  # RFC 5880 6.8.16
    REVERSE_CONCATENATED_PATH_DOWN = 8  # RFC 5880 4.1


def _u32(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not 0 <= value <= _U32:
        raise ValueError(f"{attribute.name} {value} does not fit 32 bits")


def _u8(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not 0 <= value <= 255:
        raise ValueError(f"{attribute.name} {value} does not fit 8 bits")


@attrs.frozen
class Authentication:
    """The optional authentication section (RFC 5880 4.2), kept as bytes: sart does not
    authenticate, so a packet carrying one is discarded by the session (6.8.6)."""

    auth_type: int = attrs.field(validator=_u8)
    data: bytes = b""  # after Auth Type and Auth Len

    def __attrs_post_init__(self) -> None:
        if len(self.data) > 253:
            raise ValueError("authentication section longer than 255 bytes")


@attrs.frozen(kw_only=True)
class ControlPacket:
    """One BFD control packet (RFC 5880 4.1). Intervals in microseconds, as on the wire."""

    diagnostic: int = attrs.field(default=0, validator=attrs.validators.in_(range(32)))
    state: SessionState = SessionState.DOWN
    poll: bool = False
    final: bool = False
    control_plane_independent: bool = False
    demand: bool = False
    multipoint: bool = False
    detect_mult: int = attrs.field(default=3, validator=_u8)
    my_discriminator: int = attrs.field(validator=_u32)
    your_discriminator: int = attrs.field(default=0, validator=_u32)
    desired_min_tx: int = attrs.field(default=1_000_000, validator=_u32)
    required_min_rx: int = attrs.field(default=1_000_000, validator=_u32)
    required_min_echo_rx: int = attrs.field(default=0, validator=_u32)
    authentication: Authentication | None = None


def encode_packet(packet: ControlPacket) -> bytes:
    auth = b""
    if packet.authentication is not None:
        a = packet.authentication
        auth = bytes((a.auth_type, len(a.data) + 2)) + a.data
    flags = (
        packet.poll << 5
        | packet.final << 4
        | packet.control_plane_independent << 3
        | (packet.authentication is not None) << 2
        | packet.demand << 1
        | packet.multipoint
    )
    return (
        _HEADER.pack(
            VERSION << 5 | packet.diagnostic,
            packet.state << 6 | flags,
            packet.detect_mult,
            HEADER_LENGTH + len(auth),
            packet.my_discriminator,
            packet.your_discriminator,
            packet.desired_min_tx,
            packet.required_min_rx,
            packet.required_min_echo_rx,
        )
        + auth
    )


def decode_packet(data: bytes | bytearray | memoryview) -> ControlPacket:
    """The packet in one UDP payload, checked as RFC 5880 6.8.6 says for any session."""
    data = bytes(data)
    if len(data) < HEADER_LENGTH:
        raise BfdDecodeError(f"{len(data)} bytes, shorter than a control packet")
    vers_diag, sta_flags, mult, length, my, your, tx, rx, echo = _HEADER.unpack_from(data)
    if vers_diag >> 5 != VERSION:
        raise BfdDecodeError(f"version {vers_diag >> 5}, not {VERSION}")
    has_auth = bool(sta_flags & 0x04)
    if length < HEADER_LENGTH + (2 if has_auth else 0):
        raise BfdDecodeError(f"length {length} too short")
    if length > len(data):
        raise BfdDecodeError(f"length {length} beyond the {len(data)} bytes received")
    if mult == 0:
        raise BfdDecodeError("detect multiplier 0")
    if sta_flags & 0x01:
        raise BfdDecodeError("multipoint bit set")
    if my == 0:
        raise BfdDecodeError("my discriminator 0")
    state = SessionState(sta_flags >> 6)
    if your == 0 and state not in (SessionState.DOWN, SessionState.ADMIN_DOWN):
        raise BfdDecodeError(f"your discriminator 0 in state {state.name}")
    poll, final = bool(sta_flags & 0x20), bool(sta_flags & 0x10)
    if poll and final:
        raise BfdDecodeError("poll and final both set")  # RFC 5880 6.5: never both
    authentication = None
    if has_auth:
        auth_type, auth_len = data[HEADER_LENGTH], data[HEADER_LENGTH + 1]
        if auth_len < 2 or HEADER_LENGTH + auth_len != length:
            raise BfdDecodeError(f"auth len {auth_len} does not fit length {length}")
        authentication = Authentication(auth_type, data[HEADER_LENGTH + 2 : length])
    elif length != HEADER_LENGTH:
        raise BfdDecodeError(f"length {length} without an authentication section")
    return ControlPacket(
        diagnostic=vers_diag & 0x1F,
        state=state,
        poll=poll,
        final=final,
        control_plane_independent=bool(sta_flags & 0x08),
        demand=bool(sta_flags & 0x02),
        multipoint=False,
        detect_mult=mult,
        my_discriminator=my,
        your_discriminator=your,
        desired_min_tx=tx,
        required_min_rx=rx,
        required_min_echo_rx=echo,
        authentication=authentication,
    )
