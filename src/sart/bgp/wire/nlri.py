"""Prefixes on the wire: a length octet, then as many octets as the length needs (RFC 4271
4.3, RFC 4760 5), each optionally preceded by a 4-octet path identifier (RFC 7911 3).

This is the hottest loop of the codec, so it indexes bytes directly instead of going through
a reader object.
"""

from __future__ import annotations

from collections.abc import Sequence

from netaddr import IPNetwork

from sart.bgp.codes import ErrorCode, UpdateSubcode
from sart.bgp.errors import BgpDecodeError
from sart.bgp.prefixes import Prefixes, network
from sart.errors import BgpUsageError

_MASKS = {
    4: tuple((0xFFFFFFFF << (32 - length)) & 0xFFFFFFFF for length in range(33)),
    6: tuple(((1 << 128) - 1 << (128 - length)) & ((1 << 128) - 1) for length in range(129)),
}
_WIDTH = {4: 32, 6: 128}


def decode_prefixes(
    data: bytes,
    pos: int,
    end: int,
    version: int,
    add_path: bool,
    *,
    field: str,
    subcode: int = UpdateSubcode.INVALID_NETWORK_FIELD,
) -> tuple[Sequence[IPNetwork], tuple[int, ...]]:
    """The prefixes (and path ids, if add_path) in data[pos:end]. Host bits past the prefix
    length are cleared, as RFC 4271 says they are irrelevant. Without path ids the field is
    checked here and handed out as `Prefixes`, which makes the networks when asked."""
    if pos == end:
        return (), ()
    width = _WIDTH[version]
    if not add_path:
        start = pos
        count = 0
        while pos < end:
            pos = _prefix_end(data, pos, end, width, field, subcode)
            count += 1
        return Prefixes(data[start:end], version, count), ()
    masks = _MASKS[version]
    prefixes: list[IPNetwork] = []
    path_ids: list[int] = []
    append = prefixes.append
    from_bytes = int.from_bytes
    while pos < end:
        if pos + 4 >= end:
            raise _overrun(field, pos, end, subcode)
        path_ids.append(from_bytes(data[pos : pos + 4], "big"))
        pos += 4
        length = data[pos]
        stop = _prefix_end(data, pos, end, width, field, subcode)
        value = from_bytes(data[pos + 1 : stop], "big") << (width + 8 - ((stop - pos) << 3))
        append(network(value & masks[length], length, version))
        pos = stop
    return tuple(prefixes), tuple(path_ids)


def _prefix_end(data: bytes, pos: int, end: int, width: int, field: str, subcode: int) -> int:
    """Where the prefix at data[pos] ends, after checking its length against the IP width
    and the field's end."""
    length = data[pos]
    if length > width:
        raise BgpDecodeError(
            f"{field}: prefix length {length} is longer than {width} bits",
            ErrorCode.UPDATE_MESSAGE,
            subcode,
            offset=pos,
        )
    stop = pos + 1 + ((length + 7) >> 3)
    if stop > end:
        raise _overrun(field, pos, end, subcode)
    return stop


def _overrun(field: str, pos: int, end: int, subcode: int) -> BgpDecodeError:
    return BgpDecodeError(
        f"{field}: prefix runs past the end of the field (byte {end})",
        ErrorCode.UPDATE_MESSAGE,
        subcode,
        offset=pos,
    )


def encode_prefixes(
    prefixes: Sequence[IPNetwork], path_ids: tuple[int, ...], version: int, add_path: bool
) -> bytes:
    """The wire form of prefixes of one IP version; path ids are written iff add_path."""
    if add_path != bool(path_ids) and prefixes:
        if add_path:
            raise BgpUsageError(
                "add-path is negotiated for this family: every prefix needs a path id"
            )
        raise BgpUsageError("path ids given, but add-path is not negotiated for this family")
    if add_path and len(path_ids) != len(prefixes):
        raise BgpUsageError(f"{len(prefixes)} prefixes but {len(path_ids)} path ids")
    if type(prefixes) is Prefixes and not add_path and prefixes.version == version:
        return prefixes.wire()  # as decoded: already in wire form
    width = _WIDTH[version]
    masks = _MASKS[version]
    out = bytearray()
    for index, prefix in enumerate(prefixes):
        if prefix.version != version:
            raise BgpUsageError(f"{prefix} is not an IPv{version} prefix")
        if add_path:
            out += path_ids[index].to_bytes(4, "big")
        length = prefix.prefixlen
        size = (length + 7) >> 3
        out.append(length)
        out += ((prefix.value & masks[length]) >> (width - (size << 3))).to_bytes(size, "big")
    return bytes(out)
