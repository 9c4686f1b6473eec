"""OPEN messages (RFC 4271 4.2) with capabilities (RFC 5492) and the RFC 9072 extended
optional parameters length."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from netaddr import IPAddress

from sart.bgp.codes import (
    BGP_VERSION,
    HEADER_LENGTH,
    MIN_HOLD_TIME,
    CapabilityCode,
    ErrorCode,
    OpenSubcode,
    OptionalParameterType,
)
from sart.bgp.errors import BgpDecodeError
from sart.bgp.messages import (
    AddPathCapability,
    AddPathFamily,
    Capability,
    EnhancedRouteRefreshCapability,
    ExtendedMessageCapability,
    ExtendedNextHopCapability,
    ExtendedNextHopEntry,
    FourOctetAsCapability,
    FqdnCapability,
    GracefulRestartCapability,
    GracefulRestartFamily,
    LongLivedGracefulRestartCapability,
    LongLivedGracefulRestartFamily,
    MultiprotocolCapability,
    Open,
    RoleCapability,
    RouteRefreshCapability,
    UnknownCapability,
)
from sart.errors import BgpUsageError

_FIXED_HEADER = 10  # version, my AS, hold time, BGP identifier, parameters length
_CAPABILITIES = OptionalParameterType.CAPABILITIES
_EXTENDED = OptionalParameterType.EXTENDED_LENGTH


def _open_error(reason: str, subcode: int, offset: int, data: bytes = b"") -> BgpDecodeError:
    return BgpDecodeError(reason, ErrorCode.OPEN_MESSAGE, subcode, data, offset=offset)


def decode_open(data: bytes) -> Open:
    """An OPEN from its whole message (header included)."""
    pos = HEADER_LENGTH
    if len(data) < pos + _FIXED_HEADER:
        raise BgpDecodeError(
            f"an OPEN needs at least 29 octets, this one has {len(data)}",
            ErrorCode.MESSAGE_HEADER,
            2,
            len(data).to_bytes(2, "big"),
            offset=16,
        )
    version, my_as, hold_time, bgp_id, params_length = struct.unpack_from(">BHHIB", data, pos)
    if version != BGP_VERSION:
        raise _open_error(
            f"version {version} is not supported, only {BGP_VERSION}",
            OpenSubcode.UNSUPPORTED_VERSION_NUMBER,
            pos,
            BGP_VERSION.to_bytes(2, "big"),
        )
    if my_as == 0:
        raise _open_error("my AS is 0 (RFC 7607)", OpenSubcode.BAD_PEER_AS, pos + 1)
    if hold_time in (1, 2):
        raise _open_error(
            f"hold time {hold_time} s: it must be 0 or at least {MIN_HOLD_TIME} s",
            OpenSubcode.UNACCEPTABLE_HOLD_TIME,
            pos + 3,
        )
    if bgp_id == 0:
        raise _open_error("BGP identifier is 0.0.0.0", OpenSubcode.BAD_BGP_IDENTIFIER, pos + 5)
    pos += _FIXED_HEADER
    extended = params_length == 255 and len(data) > pos and data[pos] == _EXTENDED
    if extended:
        if len(data) < pos + 3:
            raise _open_error(
                "extended optional parameters length is cut short", OpenSubcode.UNSPECIFIC, pos
            )
        params_length = (data[pos + 1] << 8) | data[pos + 2]
        pos += 3
    if pos + params_length != len(data):
        raise _open_error(
            f"optional parameters length {params_length} does not match the "
            f"{len(data) - pos} octets that follow",
            OpenSubcode.UNSPECIFIC,
            pos - (3 if extended else 1),
        )
    capabilities: list[Capability] = []
    layout: list[int] = []
    plain_size = 0  # what the parameters would take in the RFC 4271 format
    header_size = 3 if extended else 2
    while pos < len(data):
        if pos + header_size > len(data):
            raise _open_error("optional parameter header is cut short", OpenSubcode.UNSPECIFIC, pos)
        param_type = data[pos]
        param_length = (data[pos + 1] << 8) | data[pos + 2] if extended else data[pos + 1]
        start = pos + header_size
        stop = start + param_length
        if stop > len(data):
            raise _open_error(
                f"optional parameter is {param_length} octets, only {len(data) - start} are left",
                OpenSubcode.UNSPECIFIC,
                pos,
            )
        if param_type != _CAPABILITIES:
            raise _open_error(
                f"optional parameter type {param_type} is not supported "
                "(only capabilities, type 2)",
                OpenSubcode.UNSUPPORTED_OPTIONAL_PARAMETER,
                pos,
            )
        found = _decode_capabilities(data, start, stop)
        capabilities.extend(found)
        layout.append(len(found))
        plain_size += 2 + param_length
        pos = stop
    four_octet = next((c for c in capabilities if type(c) is FourOctetAsCapability), None)
    if four_octet is not None and four_octet.asn == 0:
        raise _open_error("4-octet AS capability says AS 0 (RFC 7607)", OpenSubcode.BAD_PEER_AS, 0)
    return Open(
        version=version,
        my_as=my_as,
        hold_time=hold_time,
        bgp_id=IPAddress(bgp_id, 4),
        capabilities=tuple(capabilities),
        parameter_layout=None if all(count == 1 for count in layout) else tuple(layout),
        extended_parameters=extended and plain_size <= 255,
    )


def _decode_capabilities(data: bytes, pos: int, end: int) -> list[Capability]:
    found: list[Capability] = []
    while pos < end:
        if pos + 2 > end:
            raise _open_error("capability header is cut short", OpenSubcode.UNSPECIFIC, pos)
        code = data[pos]
        length = data[pos + 1]
        start = pos + 2
        stop = start + length
        if stop > end:
            raise _open_error(
                f"capability {code} is {length} octets, "
                f"only {end - start} are left in its parameter",
                OpenSubcode.UNSPECIFIC,
                pos,
            )
        decoder = _DECODERS.get(code)
        value = data[start:stop]
        if decoder is None:
            found.append(UnknownCapability(code, value))
        else:
            try:
                found.append(decoder(value))
            except (ValueError, struct.error, IndexError, UnicodeDecodeError) as error:
                # The decoders below unpack with struct and check lengths; any of these
                # means the value does not have the shape its capability code promises.
                raise _open_error(
                    f"capability {CapabilityCode(code).name} is malformed: {error}",
                    OpenSubcode.UNSPECIFIC,
                    pos,
                    data[pos:stop],
                ) from None
        pos = stop
    return found


def _length(value: bytes, *allowed: int) -> None:
    if len(value) not in allowed:
        raise ValueError(f"{len(value)} octets, expected {' or '.join(map(str, allowed))}")


def _records(value: bytes, size: int, start: int = 0) -> range:
    if (len(value) - start) % size:
        raise ValueError(
            f"{len(value) - start} octets is not a whole number of {size}-octet entries"
        )
    return range(start, len(value), size)


def _no_value(kind: Callable[[], Capability]) -> Callable[[bytes], Capability]:
    def decode(value: bytes) -> Capability:
        _length(value, 0)
        return kind()

    return decode


def _multiprotocol(value: bytes) -> Capability:
    _length(value, 4)
    afi, _reserved, safi = struct.unpack(">HBB", value)
    return MultiprotocolCapability(afi, safi)


def _extended_next_hop(value: bytes) -> Capability:
    entries = (
        ExtendedNextHopEntry(*struct.unpack_from(">HHH", value, i)) for i in _records(value, 6)
    )
    return ExtendedNextHopCapability(tuple(entries))


def _role(value: bytes) -> Capability:
    _length(value, 1)
    return RoleCapability(value[0])


def _graceful_restart(value: bytes) -> Capability:
    if len(value) < 2:
        raise ValueError(f"{len(value)} octets, expected at least 2")
    head = int.from_bytes(value[:2], "big")
    families = tuple(
        GracefulRestartFamily(*struct.unpack_from(">HBB", value, i)) for i in _records(value, 4, 2)
    )
    return GracefulRestartCapability(head >> 12, head & 0x0FFF, families)


def _four_octet_as(value: bytes) -> Capability:
    _length(value, 4)
    return FourOctetAsCapability(int.from_bytes(value, "big"))


def _add_path(value: bytes) -> Capability:
    families = (AddPathFamily(*struct.unpack_from(">HBB", value, i)) for i in _records(value, 4))
    return AddPathCapability(tuple(families))


def _long_lived_graceful_restart(value: bytes) -> Capability:
    families = []
    for i in _records(value, 7):
        afi, safi, flags = struct.unpack_from(">HBB", value, i)
        stale_time = int.from_bytes(value[i + 4 : i + 7], "big")
        families.append(LongLivedGracefulRestartFamily(afi, safi, flags, stale_time))
    return LongLivedGracefulRestartCapability(tuple(families))


def _fqdn(value: bytes) -> Capability:
    host_end = 1 + value[0]
    domain_end = host_end + 1 + value[host_end]
    _length(value, domain_end)
    hostname = value[1:host_end].decode("utf-8")
    domain = value[host_end + 1 : domain_end].decode("utf-8")
    return FqdnCapability(hostname, domain)


_DECODERS: dict[int, Callable[[bytes], Capability]] = {
    CapabilityCode.MULTIPROTOCOL: _multiprotocol,
    CapabilityCode.ROUTE_REFRESH: _no_value(RouteRefreshCapability),
    CapabilityCode.EXTENDED_NEXT_HOP: _extended_next_hop,
    CapabilityCode.EXTENDED_MESSAGE: _no_value(ExtendedMessageCapability),
    CapabilityCode.ROLE: _role,
    CapabilityCode.GRACEFUL_RESTART: _graceful_restart,
    CapabilityCode.FOUR_OCTET_AS: _four_octet_as,
    CapabilityCode.ADD_PATH: _add_path,
    CapabilityCode.ENHANCED_ROUTE_REFRESH: _no_value(EnhancedRouteRefreshCapability),
    CapabilityCode.LONG_LIVED_GRACEFUL_RESTART: _long_lived_graceful_restart,
    CapabilityCode.FQDN: _fqdn,
}


# --- encoding ------------------------------------------------------------------------------


def _short_text(text: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) > 255:
        raise BgpUsageError(f"FQDN capability text is {len(raw)} octets, over 255")
    return bytes((len(raw),)) + raw


_ENCODERS: dict[type[Any], Callable[[Any], bytes]] = {
    MultiprotocolCapability: lambda c: struct.pack(">HBB", c.afi, 0, c.safi),
    RouteRefreshCapability: lambda c: b"",
    ExtendedNextHopCapability: lambda c: b"".join(
        struct.pack(">HHH", e.afi, e.safi, e.next_hop_afi) for e in c.entries
    ),
    ExtendedMessageCapability: lambda c: b"",
    RoleCapability: lambda c: bytes((c.role,)),
    GracefulRestartCapability: lambda c: (
        struct.pack(">H", (c.restart_flags << 12) | c.restart_time)
        + b"".join(struct.pack(">HBB", f.afi, f.safi, f.flags) for f in c.families)
    ),
    FourOctetAsCapability: lambda c: struct.pack(">I", c.asn),
    AddPathCapability: lambda c: b"".join(
        struct.pack(">HBB", f.afi, f.safi, f.send_receive) for f in c.families
    ),
    EnhancedRouteRefreshCapability: lambda c: b"",
    LongLivedGracefulRestartCapability: lambda c: b"".join(
        struct.pack(">HBB", f.afi, f.safi, f.flags) + f.stale_time.to_bytes(3, "big")
        for f in c.families
    ),
    FqdnCapability: lambda c: _short_text(c.hostname) + _short_text(c.domain),
    UnknownCapability: lambda c: c.data,
}


def _encode_capability(capability: Capability) -> bytes:
    value = _ENCODERS[type(capability)](capability)
    if len(value) > 255:
        raise BgpUsageError(f"{type(capability).__name__} is {len(value)} octets, over 255")
    if type(capability) is GracefulRestartCapability and (
        capability.restart_flags > 0xF or capability.restart_time > 0xFFF
    ):
        raise BgpUsageError("graceful restart: flags take 4 bits and the restart time 12 bits")
    return bytes((capability.code, len(value))) + value


def encode_open(message: Open) -> bytes:
    """The body of an OPEN (what follows the header)."""
    layout = message.parameter_layout
    if layout is None:
        layout = (1,) * len(message.capabilities)
    if sum(layout) != len(message.capabilities):
        raise BgpUsageError(
            f"parameter layout {layout} holds {sum(layout)} capabilities, "
            f"the OPEN has {len(message.capabilities)}"
        )
    encoded = [_encode_capability(capability) for capability in message.capabilities]
    values = []
    index = 0
    for count in layout:
        values.append(b"".join(encoded[index : index + count]))
        index += count
    plain_size = sum(2 + len(value) for value in values)
    if message.extended_parameters or plain_size > 255:
        params = b"".join(struct.pack(">BH", _CAPABILITIES, len(v)) + v for v in values)
        if len(params) > 0xFFFF:
            raise BgpUsageError(f"optional parameters take {len(params)} octets, over 65535")
        lengths = struct.pack(">BBH", 255, _EXTENDED, len(params))
    else:
        params = b"".join(bytes((_CAPABILITIES, len(v))) + v for v in values)
        lengths = bytes((len(params),))
    fixed = struct.pack(
        ">BHHI", message.version, message.my_as, message.hold_time, int(message.bgp_id)
    )
    return fixed + lengths + params
