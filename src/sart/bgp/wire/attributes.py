"""Path attributes on the wire (RFC 4271 4.3), with RFC 7606 error handling.

`decode_attributes` never stops at the first malformed attribute: RFC 7606 wants the most
severe of all reactions, and treat-as-withdraw needs the NLRI, so it records each problem and
goes on wherever the attribute boundaries are still known.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs
from netaddr import IPAddress, IPNetwork

from sart.bgp.codes import (
    AS_TRANS,
    Afi,
    AsPathSegmentType,
    AttrFlag,
    AttrType,
    ErrorCode,
    ErrorHandling,
    OriginCode,
    Safi,
    UpdateSubcode,
)
from sart.bgp.context import SessionContext
from sart.bgp.errors import BgpDecodeError
from sart.bgp.frozen import builder
from sart.bgp.messages import (
    OPTIONAL,
    OPTIONAL_TRANSITIVE,
    WELL_KNOWN,
    Aggregator,
    As4Aggregator,
    As4Path,
    AsPath,
    AsPathSegment,
    AtomicAggregate,
    ClusterList,
    Communities,
    ExtendedCommunities,
    Family,
    LargeCommunities,
    LargeCommunity,
    LocalPref,
    MpReachNlri,
    MpUnreachNlri,
    MultiExitDisc,
    NextHop,
    Origin,
    OriginatorId,
    PathAttribute,
    UnknownAttribute,
    find,
)
from sart.bgp.wire.nlri import decode_prefixes, encode_prefixes
from sart.errors import BgpUsageError

_EXTENDED_LENGTH = int(AttrFlag.EXTENDED_LENGTH)
_PARTIAL = int(AttrFlag.PARTIAL)
_CATEGORY = OPTIONAL_TRANSITIVE  # the two flag bits that say what kind of attribute it is
_ORIGINS = tuple(OriginCode)
_SEGMENT_TYPES = (None, *AsPathSegmentType)
_PARSED_FAMILIES = frozenset(
    (afi, safi) for afi in (Afi.IPV4, Afi.IPV6) for safi in (Safi.UNICAST, Safi.MULTICAST)
)
_IP_VERSION: dict[int, int] = {Afi.IPV4: 4, Afi.IPV6: 6}

TAW = ErrorHandling.TREAT_AS_WITHDRAW
DISCARD = ErrorHandling.ATTRIBUTE_DISCARD
RESET = ErrorHandling.SESSION_RESET


class _MalformedError(Exception):
    """Raised by one attribute's decoder; the loop turns it into a BgpDecodeError with the
    attribute's RFC 7606 handling and the erroneous attribute as NOTIFICATION data."""

    def __init__(self, reason: str, subcode: int, offset: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.subcode = subcode
        self.offset = offset


_Decoder = Callable[[bytes, int, int, int, SessionContext], PathAttribute]


@attrs.frozen
class _Spec:
    name: str
    category: int  # what the Optional and Transitive bits must say (RFC 4271 5)
    handling: ErrorHandling  # reaction to a malformed one (RFC 7606 7)
    decode: _Decoder
    # Indexed by the flags' top three bits: do Optional, Transitive and Partial fit the type?
    # Partial may only be set on optional transitive attributes (RFC 4271 4.3).
    flags_ok: tuple[bool, ...] = attrs.field(init=False)
    # Whether decoded values are shared between UPDATEs (not the MP attributes: they carry
    # the routes themselves, which hardly ever repeat).
    interned: bool = attrs.field(init=False)

    @flags_ok.default
    def _flags_ok(self) -> tuple[bool, ...]:
        partial_ok = self.category == OPTIONAL_TRANSITIVE
        return tuple(
            (top << 5) & _CATEGORY == self.category and (partial_ok or not (top << 5) & _PARTIAL)
            for top in range(8)
        )

    @interned.default
    def _interned(self) -> bool:
        return self.decode not in (_decode_mp_reach, _decode_mp_unreach)


# --- decoders, one per attribute type ------------------------------------------------------


def _fixed_length(name: str, data: bytes, start: int, end: int, size: int) -> None:
    if end - start != size:
        raise _MalformedError(
            f"{name} is {end - start} octets long, must be {size}",
            UpdateSubcode.ATTRIBUTE_LENGTH_ERROR,
            start,
        )


def _multiple_of(name: str, start: int, end: int, size: int) -> int:
    length = end - start
    if length == 0 or length % size:
        raise _MalformedError(
            f"{name} is {length} octets long, must be a non-zero multiple of {size}",
            UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR,
            start,
        )
    return length // size


def _decode_origin(data: bytes, start: int, end: int, flags: int, _: SessionContext) -> Origin:
    _fixed_length("ORIGIN", data, start, end, 1)
    value = data[start]
    if value > 2:
        raise _MalformedError(
            f"ORIGIN value {value} is not IGP (0), EGP (1) or INCOMPLETE (2)",
            UpdateSubcode.INVALID_ORIGIN_ATTRIBUTE,
            start,
        )
    return Origin(_ORIGINS[value], flags=flags)


_new_segment = builder(AsPathSegment)
_AS_SEQUENCE = AsPathSegmentType.AS_SEQUENCE
_AS_SEQUENCE_CODE = _AS_SEQUENCE.value
_new_as_path = builder(AsPath)
# struct unpackers of a segment's ASNs, by ASN size and then count (a segment holds at most
# 255): indexed, not made on demand, since an AS path is decoded for nearly every UPDATE.
_UNPACK: dict[int, tuple[Callable[[bytes, int], tuple[int, ...]], ...]] = {
    size: tuple(struct.Struct(f">{count}{code}").unpack_from for count in range(256))
    for size, code in ((2, "H"), (4, "I"))
}


def _decode_segments(
    name: str, data: bytes, start: int, end: int, size: int
) -> tuple[AsPathSegment, ...]:
    segments = []
    pos = start
    while pos < end:
        if pos + 2 > end:
            raise _MalformedError(
                f"{name}: segment header is cut short",
                UpdateSubcode.MALFORMED_AS_PATH,
                pos,
            )
        segment_type = data[pos]
        count = data[pos + 1]
        if not 1 <= segment_type <= 4:
            raise _MalformedError(
                f"{name}: segment type {segment_type} is none of AS_SET (1), "
                "AS_SEQUENCE (2), AS_CONFED_SEQUENCE (3), AS_CONFED_SET (4)",
                UpdateSubcode.MALFORMED_AS_PATH,
                pos,
            )
        if count == 0:
            raise _MalformedError(
                f"{name}: segment holds no ASN",
                UpdateSubcode.MALFORMED_AS_PATH,
                pos,
            )
        stop = pos + 2 + count * size
        if stop > end:
            raise _MalformedError(
                f"{name}: segment announces {count} ASNs of {size} octets, "
                f"only {end - pos - 2} octets are left",
                UpdateSubcode.MALFORMED_AS_PATH,
                pos,
            )
        asns = _UNPACK[size][count](data, pos + 2)
        segments.append(_new_segment(_SEGMENT_TYPES[segment_type], asns))
        pos = stop
    return tuple(segments)


def _no_as_zero(
    name: str, asns: Iterable[int], offset: int, subcode: int = UpdateSubcode.MALFORMED_AS_PATH
) -> None:
    if 0 in asns:
        raise _MalformedError(f"{name} holds AS 0 (RFC 7607 2)", subcode, offset)


def _decode_as_path(data: bytes, start: int, end: int, flags: int, ctx: SessionContext) -> AsPath:
    size = 4 if ctx.four_octet_as else 2
    # Most AS_PATHs are one AS_SEQUENCE that fills the attribute: checked and built at once;
    # anything else (and every malformed one) takes the general walk, which says what is wrong.
    if end - start > 2 and data[start] == _AS_SEQUENCE_CODE:
        count = data[start + 1]
        if start + 2 + count * size == end:
            asns = _UNPACK[size][count](data, start + 2)
            if 0 not in asns:
                sequence: AsPath = _new_as_path((_new_segment(_AS_SEQUENCE, asns),), flags)
                return sequence
    segments = _decode_segments("AS_PATH", data, start, end, size)
    for segment in segments:
        _no_as_zero("AS_PATH", segment.asns, start)
    as_path: AsPath = _new_as_path(segments, flags)
    return as_path


def _decode_as4_path(data: bytes, start: int, end: int, flags: int, _: SessionContext) -> As4Path:
    if end - start < 6:
        raise _MalformedError(
            f"AS4_PATH is {end - start} octets long, the least is 6 (RFC 6793 6)",
            UpdateSubcode.MALFORMED_AS_PATH,
            start,
        )
    segments = _decode_segments("AS4_PATH", data, start, end, 4)
    for segment in segments:
        _no_as_zero("AS4_PATH", segment.asns, start)
    # RFC 6793 6: confederation segments in AS4_PATH are dropped, the rest is kept.
    kept = _without_confederations(segments)
    if not kept:
        raise _MalformedError(
            "AS4_PATH holds nothing but confederation segments (RFC 6793 6 drops them)",
            UpdateSubcode.MALFORMED_AS_PATH,
            start,
        )
    return As4Path(kept, flags=flags)


def _decode_next_hop(data: bytes, start: int, end: int, flags: int, _: SessionContext) -> NextHop:
    _fixed_length("NEXT_HOP", data, start, end, 4)
    return NextHop(IPAddress(int.from_bytes(data[start:end], "big"), 4), flags=flags)


def _decode_med(data: bytes, start: int, end: int, flags: int, _: SessionContext) -> MultiExitDisc:
    _fixed_length("MULTI_EXIT_DISC", data, start, end, 4)
    return MultiExitDisc(int.from_bytes(data[start:end], "big"), flags=flags)


def _decode_local_pref(
    data: bytes, start: int, end: int, flags: int, _: SessionContext
) -> LocalPref:
    _fixed_length("LOCAL_PREF", data, start, end, 4)
    return LocalPref(int.from_bytes(data[start:end], "big"), flags=flags)


def _decode_atomic_aggregate(
    data: bytes, start: int, end: int, flags: int, _: SessionContext
) -> AtomicAggregate:
    _fixed_length("ATOMIC_AGGREGATE", data, start, end, 0)
    return AtomicAggregate(flags=flags)


def _aggregator_value(
    name: str, data: bytes, start: int, end: int, size: int
) -> tuple[int, IPAddress]:
    """The AS (of `size` octets) and address of an AGGREGATOR or AS4_AGGREGATOR."""
    _fixed_length(name, data, start, end, size + 4)
    asn = int.from_bytes(data[start : start + size], "big")
    _no_as_zero(name, (asn,), start, UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR)
    return asn, IPAddress(int.from_bytes(data[start + size : end], "big"), 4)


def _decode_aggregator(
    data: bytes, start: int, end: int, flags: int, ctx: SessionContext
) -> Aggregator:
    size = 4 if ctx.four_octet_as else 2
    return Aggregator(*_aggregator_value("AGGREGATOR", data, start, end, size), flags=flags)


def _decode_as4_aggregator(
    data: bytes, start: int, end: int, flags: int, _: SessionContext
) -> As4Aggregator:
    return As4Aggregator(*_aggregator_value("AS4_AGGREGATOR", data, start, end, 4), flags=flags)


def _decode_communities(
    data: bytes, start: int, end: int, flags: int, _: SessionContext
) -> Communities:
    count = _multiple_of("COMMUNITIES", start, end, 4)
    return Communities(struct.unpack_from(f">{count}I", data, start), flags=flags)


def _decode_originator_id(
    data: bytes, start: int, end: int, flags: int, _: SessionContext
) -> OriginatorId:
    _fixed_length("ORIGINATOR_ID", data, start, end, 4)
    return OriginatorId(IPAddress(int.from_bytes(data[start:end], "big"), 4), flags=flags)


def _decode_cluster_list(
    data: bytes, start: int, end: int, flags: int, _: SessionContext
) -> ClusterList:
    count = _multiple_of("CLUSTER_LIST", start, end, 4)
    ids = tuple(IPAddress(value, 4) for value in struct.unpack_from(f">{count}I", data, start))
    return ClusterList(ids, flags=flags)


def _decode_extended_communities(
    data: bytes, start: int, end: int, flags: int, _: SessionContext
) -> ExtendedCommunities:
    count = _multiple_of("EXTENDED_COMMUNITIES", start, end, 8)
    return ExtendedCommunities(struct.unpack_from(f">{count}Q", data, start), flags=flags)


def _decode_large_communities(
    data: bytes, start: int, end: int, flags: int, _: SessionContext
) -> LargeCommunities:
    count = _multiple_of("LARGE_COMMUNITY", start, end, 12)
    words = struct.unpack_from(f">{count * 3}I", data, start)
    values = tuple(LargeCommunity(*words[index : index + 3]) for index in range(0, len(words), 3))
    return LargeCommunities(values, flags=flags)


def _mp_family(name: str, data: bytes, start: int, end: int, minimum: int) -> tuple[int, int]:
    if end - start < minimum:
        raise _MalformedError(
            f"{name} is {end - start} octets long, shorter than its {minimum}-octet header",
            UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR,
            start,
        )
    return int.from_bytes(data[start : start + 2], "big"), data[start + 2]


def _decode_mp_reach(
    data: bytes, start: int, end: int, flags: int, ctx: SessionContext
) -> MpReachNlri | UnknownAttribute:
    afi, safi = _mp_family("MP_REACH_NLRI", data, start, end, 5)
    if (afi, safi) not in _PARSED_FAMILIES:
        return UnknownAttribute(AttrType.MP_REACH_NLRI, data[start:end], flags=flags)
    family = Family(afi, safi)
    hop_length = data[start + 3]
    hops_start = start + 4
    hops_end = hops_start + hop_length
    if hops_end + 1 > end:
        raise _MalformedError(
            f"MP_REACH_NLRI: next hop length {hop_length} runs past the attribute",
            UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR,
            start + 3,
        )
    ipv6_allowed = afi == Afi.IPV6 or family in ctx.extended_next_hop
    if hop_length == 4 and afi == Afi.IPV4:
        next_hops = (IPAddress(int.from_bytes(data[hops_start:hops_end], "big"), 4),)
    elif hop_length in (16, 32) and ipv6_allowed:
        next_hops = tuple(
            IPAddress(int.from_bytes(data[pos : pos + 16], "big"), 6)
            for pos in range(hops_start, hops_end, 16)
        )
    else:
        raise _MalformedError(
            f"MP_REACH_NLRI: a {hop_length}-octet next hop is not valid for {family}"
            + ("" if ipv6_allowed else " (extended next hop was not negotiated)"),
            UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR,
            start + 3,
        )
    # The octet after the next hop is reserved (RFC 4760 3): ignored on receipt.
    prefixes, path_ids = _mp_prefixes(
        "MP_REACH_NLRI", data, hops_end + 1, end, afi, bool(ctx.add_path) and family in ctx.add_path
    )
    return MpReachNlri(afi, safi, next_hops, prefixes, path_ids, flags=flags)


def _decode_mp_unreach(
    data: bytes, start: int, end: int, flags: int, ctx: SessionContext
) -> MpUnreachNlri | UnknownAttribute:
    afi, safi = _mp_family("MP_UNREACH_NLRI", data, start, end, 3)
    if end == start + 3:  # an End-of-RIB marker of any family (RFC 4724 2)
        return MpUnreachNlri(afi, safi, flags=flags)
    if (afi, safi) not in _PARSED_FAMILIES:
        return UnknownAttribute(AttrType.MP_UNREACH_NLRI, data[start:end], flags=flags)
    add_path = bool(ctx.add_path) and Family(afi, safi) in ctx.add_path
    prefixes, path_ids = _mp_prefixes("MP_UNREACH_NLRI", data, start + 3, end, afi, add_path)
    return MpUnreachNlri(afi, safi, prefixes, path_ids, flags=flags)


def _mp_prefixes(
    name: str, data: bytes, start: int, end: int, afi: int, add_path: bool
) -> tuple[Sequence[IPNetwork], tuple[int, ...]]:
    try:
        return decode_prefixes(data, start, end, _IP_VERSION[afi], add_path, field=name)
    except BgpDecodeError as error:
        raise _MalformedError(
            error.reason, UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR, error.offset or start
        ) from None


_SPECS: dict[int, _Spec] = {
    spec_type: _Spec(spec_type.name, category, handling, decode)
    for spec_type, category, handling, decode in (
        (AttrType.ORIGIN, WELL_KNOWN, TAW, _decode_origin),
        (AttrType.AS_PATH, WELL_KNOWN, TAW, _decode_as_path),
        (AttrType.NEXT_HOP, WELL_KNOWN, TAW, _decode_next_hop),
        (AttrType.MULTI_EXIT_DISC, OPTIONAL, TAW, _decode_med),
        (AttrType.LOCAL_PREF, WELL_KNOWN, TAW, _decode_local_pref),
        (AttrType.ATOMIC_AGGREGATE, WELL_KNOWN, DISCARD, _decode_atomic_aggregate),
        (AttrType.AGGREGATOR, OPTIONAL_TRANSITIVE, DISCARD, _decode_aggregator),
        (AttrType.COMMUNITIES, OPTIONAL_TRANSITIVE, TAW, _decode_communities),
        (AttrType.ORIGINATOR_ID, OPTIONAL, TAW, _decode_originator_id),
        (AttrType.CLUSTER_LIST, OPTIONAL, TAW, _decode_cluster_list),
        (AttrType.MP_REACH_NLRI, OPTIONAL, RESET, _decode_mp_reach),
        (AttrType.MP_UNREACH_NLRI, OPTIONAL, RESET, _decode_mp_unreach),
        (AttrType.EXTENDED_COMMUNITIES, OPTIONAL_TRANSITIVE, TAW, _decode_extended_communities),
        (AttrType.AS4_PATH, OPTIONAL_TRANSITIVE, DISCARD, _decode_as4_path),
        (AttrType.AS4_AGGREGATOR, OPTIONAL_TRANSITIVE, DISCARD, _decode_as4_aggregator),
        (AttrType.LARGE_COMMUNITY, OPTIONAL_TRANSITIVE, TAW, _decode_large_communities),
    )
}


def _not_between_four_octet_speakers(
    data: bytes, start: int, end: int, flags: int, _: SessionContext
) -> PathAttribute:
    raise _MalformedError(
        f"{AttrType(data[start - (4 if flags & _EXTENDED_LENGTH else 3) + 1]).name} is not "
        "sent between 4-octet AS speakers and is discarded (RFC 6793 4.1)",
        UpdateSubcode.MALFORMED_ATTRIBUTE_LIST,
        start,
    )


# On a 4-octet AS session AS4_PATH and AS4_AGGREGATOR are discarded, never merged.
_SPECS_FOUR_OCTET: dict[int, _Spec] = {
    **_SPECS,
    **{
        code: attrs.evolve(_SPECS[code], decode=_not_between_four_octet_speakers)
        for code in (AttrType.AS4_PATH, AttrType.AS4_AGGREGATOR)
    },
}
_MP = (AttrType.MP_REACH_NLRI, AttrType.MP_UNREACH_NLRI)


def _regular(specs: dict[int, _Spec]) -> dict[int, _Spec]:
    """The specs by (flags >> 5) << 8 | type code, for the flags that fit the type: one
    lookup finds the decoder of a well-formed attribute header."""
    return {
        top << 8 | code: spec
        for code, spec in specs.items()
        for top in range(8)
        if spec.flags_ok[top]
    }


_REGULAR = (_regular(_SPECS), _regular(_SPECS_FOUR_OCTET))  # by four_octet: False, True

# Decoded attributes, keyed by their raw octets (flags, type and length included), one table
# per AS number size. Real feeds repeat a few AS paths, next hops and community sets over
# many UPDATEs: handing back the same frozen object skips the decoding and lets every route
# share one copy. Bounded: the table is emptied when full, which keeps the cost of a lookup
# flat and the memory small.
INTERN_LIMIT = 32768
_interned: tuple[dict[bytes, PathAttribute], dict[bytes, PathAttribute]] = ({}, {})


def clear_intern_tables() -> None:
    for table in _interned:
        table.clear()


def decode_attributes(
    data: bytes, pos: int, end: int, ctx: SessionContext
) -> tuple[list[PathAttribute], list[BgpDecodeError], int]:
    """The attributes in data[pos:end], one error per problem found, and the type codes seen
    (bit n set for type code n). An attribute that has a problem is left out of the list."""
    attributes: list[PathAttribute] = []
    append = attributes.append
    problems: list[BgpDecodeError] = []
    seen = 0
    four_octet = ctx.four_octet_as
    specs = _SPECS_FOUR_OCTET if four_octet else _SPECS
    regular = _REGULAR[four_octet]
    interned = _interned[four_octet]
    while pos < end:
        flags = data[pos]
        if end - pos < (4 if flags & _EXTENDED_LENGTH else 3):
            problems.append(
                BgpDecodeError(
                    f"{end - pos} octets left at the end of the path attributes, too few for an "
                    "attribute header",
                    ErrorCode.UPDATE_MESSAGE,
                    UpdateSubcode.MALFORMED_ATTRIBUTE_LIST,
                    offset=pos,
                    handling=TAW,
                )
            )
            break
        type_code = data[pos + 1]
        if flags & _EXTENDED_LENGTH:
            start = pos + 4
            stop = start + ((data[pos + 2] << 8) | data[pos + 3])
        else:
            start = pos + 3
            stop = start + data[pos + 2]
        if stop > end:
            problems.append(
                BgpDecodeError(
                    f"attribute type {type_code} is {stop - start} octets long, only "
                    f"{end - start} are left in the path attributes",
                    ErrorCode.UPDATE_MESSAGE,
                    UpdateSubcode.ATTRIBUTE_LENGTH_ERROR,
                    data[pos:end],
                    offset=pos,
                    handling=TAW,
                )
            )
            break
        bit = 1 << type_code
        spec = regular.get((flags >> 5) << 8 | type_code)
        if spec is None or seen & bit:
            spec = specs.get(type_code)
            problem = _irregular(data, pos, start, stop, flags, type_code, seen, spec)
            if problem is None:
                append(UnknownAttribute(type_code, data[start:stop], flags=flags))
            else:
                problems.append(problem)
            seen |= bit
            pos = stop
            continue
        seen |= bit
        try:
            if spec.interned:
                key = data[pos:stop]
                attribute = interned.get(key)
                if attribute is None:
                    attribute = spec.decode(data, start, stop, flags, ctx)
                    if len(interned) >= INTERN_LIMIT:
                        interned.clear()
                    interned[key] = attribute
                append(attribute)
            else:
                append(spec.decode(data, start, stop, flags, ctx))
        except _MalformedError as malformed:
            problems.append(
                BgpDecodeError(
                    malformed.reason,
                    ErrorCode.UPDATE_MESSAGE,
                    malformed.subcode,
                    b"" if malformed.subcode == UpdateSubcode.MALFORMED_AS_PATH else data[pos:stop],
                    offset=malformed.offset,
                    handling=spec.handling,
                )
            )
        pos = stop
    return attributes, problems, seen


def _irregular(
    data: bytes,
    pos: int,
    start: int,
    stop: int,
    flags: int,
    type_code: int,
    seen: int,
    spec: _Spec | None,
) -> BgpDecodeError | None:
    """The problem with an attribute off the fast path: a repeat, an unrecognised type (None
    when it is optional, so it is kept as UnknownAttribute), or flags that do not fit."""
    if seen & (1 << type_code):
        # RFC 7606 3(g): keep the first, except that two MP attributes of a kind are fatal.
        handling = RESET if type_code in _MP else DISCARD
        name = spec.name if spec else f"attribute type {type_code}"
        return BgpDecodeError(
            f"{name} appears a second time",
            ErrorCode.UPDATE_MESSAGE,
            UpdateSubcode.MALFORMED_ATTRIBUTE_LIST,
            offset=pos,
            handling=handling,
        )
    if spec is None:
        if flags & OPTIONAL:
            return None
        return BgpDecodeError(
            f"attribute type {type_code} is marked well-known but is not one",
            ErrorCode.UPDATE_MESSAGE,
            UpdateSubcode.UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE,
            data[pos:stop],
            offset=pos,
        )
    return BgpDecodeError(
        f"{spec.name} has flags 0x{flags:02x}; a {_describe(spec.category)} "
        "attribute must have "
        + f"optional={int(bool(spec.category & OPTIONAL))}, "
        + f"transitive={int(bool(spec.category & WELL_KNOWN))}"
        + ("" if spec.category == OPTIONAL_TRANSITIVE else ", partial=0"),
        ErrorCode.UPDATE_MESSAGE,
        UpdateSubcode.ATTRIBUTE_FLAGS_ERROR,
        data[pos:stop],
        offset=pos,
        handling=spec.handling,
    )


def _describe(category: int) -> str:
    return {
        WELL_KNOWN: "well-known",
        OPTIONAL: "optional non-transitive",
        OPTIONAL_TRANSITIVE: "optional transitive",
    }.get(category, "")


# --- encoders ------------------------------------------------------------------------------


def _encode_segments(segments: tuple[AsPathSegment, ...], size: int) -> bytes:
    code = "H" if size == 2 else "I"
    out = bytearray()
    for segment in segments:
        count = len(segment.asns)
        if not 1 <= count <= 255:
            raise BgpUsageError(f"an AS path segment holds 1 to 255 ASNs, not {count}")
        if max(segment.asns) >> (size * 8) or min(segment.asns) < 0:
            raise BgpUsageError(f"AS path {segment} has an ASN that does not fit {size} octets")
        out += struct.pack(f">BB{count}{code}", segment.type, count, *segment.asns)
    return bytes(out)


def _encode_address(address: IPAddress, version: int = 4) -> bytes:
    if address.version != version:
        raise BgpUsageError(f"{address} is not an IPv{version} address")
    return int(address).to_bytes(16 if version == 6 else 4, "big")


def _encode_mp_reach(attribute: MpReachNlri, ctx: SessionContext) -> bytes:
    version = _IP_VERSION.get(attribute.afi)
    if version is None:
        raise BgpUsageError(f"cannot encode MP_REACH_NLRI of AFI {attribute.afi}")
    hops = b"".join(_encode_address(hop, hop.version) for hop in attribute.next_hops)
    prefixes = encode_prefixes(
        attribute.nlri, attribute.path_ids, version, attribute.family in ctx.add_path
    )
    header = struct.pack(">HBB", attribute.afi, attribute.safi, len(hops))
    return header + hops + b"\x00" + prefixes


def _encode_mp_unreach(attribute: MpUnreachNlri, ctx: SessionContext) -> bytes:
    header = struct.pack(">HB", attribute.afi, attribute.safi)
    if not attribute.withdrawn:
        return header
    version = _IP_VERSION.get(attribute.afi)
    if version is None:
        raise BgpUsageError(f"cannot encode MP_UNREACH_NLRI of AFI {attribute.afi}")
    add_path = attribute.family in ctx.add_path
    return header + encode_prefixes(attribute.withdrawn, attribute.path_ids, version, add_path)


def _asn_size(ctx: SessionContext) -> int:
    return 4 if ctx.four_octet_as else 2


_ENCODERS: dict[type[Any], Callable[[Any, SessionContext], bytes]] = {
    Origin: lambda a, _: bytes((a.value,)),
    AsPath: lambda a, ctx: _encode_segments(a.segments, _asn_size(ctx)),
    NextHop: lambda a, _: _encode_address(a.address),
    MultiExitDisc: lambda a, _: a.value.to_bytes(4, "big"),
    LocalPref: lambda a, _: a.value.to_bytes(4, "big"),
    AtomicAggregate: lambda a, _: b"",
    Aggregator: lambda a, ctx: a.asn.to_bytes(_asn_size(ctx), "big") + _encode_address(a.address),
    Communities: lambda a, _: struct.pack(f">{len(a.values)}I", *a.values),
    OriginatorId: lambda a, _: _encode_address(a.address),
    ClusterList: lambda a, _: b"".join(_encode_address(cluster) for cluster in a.ids),
    MpReachNlri: _encode_mp_reach,
    MpUnreachNlri: _encode_mp_unreach,
    ExtendedCommunities: lambda a, _: struct.pack(f">{len(a.values)}Q", *a.values),
    As4Path: lambda a, _: _encode_segments(a.segments, 4),
    As4Aggregator: lambda a, _: a.asn.to_bytes(4, "big") + _encode_address(a.address),
    LargeCommunities: lambda a, _: b"".join(
        struct.pack(">III", c.global_admin, c.local_data_1, c.local_data_2) for c in a.values
    ),
    UnknownAttribute: lambda a, _: a.data,
}


def encode_attribute(attribute: PathAttribute, ctx: SessionContext) -> bytes:
    """One attribute with its header. The Extended Length bit is added when the value needs
    it, and kept when the attribute's flags already have it."""
    value = _ENCODERS[type(attribute)](attribute, ctx)
    flags = attribute.flags
    length = len(value)
    if length > 255 or flags & _EXTENDED_LENGTH:
        if length > 0xFFFF:
            raise BgpUsageError(f"{type(attribute).__name__} is {length} octets, over 65535")
        return struct.pack(">BBH", flags | _EXTENDED_LENGTH, attribute.type_code, length) + value
    return bytes((flags, attribute.type_code, length)) + value


def to_two_octet(attributes: tuple[PathAttribute, ...]) -> tuple[PathAttribute, ...]:
    """The attributes as an RFC 6793 4.2.2 speaker sends them to a 2-octet peer: ASNs that do
    not fit become AS_TRANS in AS_PATH and AGGREGATOR, and the real values travel in AS4_PATH
    and AS4_AGGREGATOR. Attributes that fit already come back as they are."""
    path = find(attributes, AsPath)
    aggregator = find(attributes, Aggregator)
    path_fits = path is None or all(asn <= 0xFFFF for asn in path.asns())
    aggregator_fits = aggregator is None or aggregator.asn <= 0xFFFF
    if path_fits and aggregator_fits:
        return attributes
    result: list[PathAttribute] = []
    for attribute in attributes:
        if attribute is path and not path_fits:
            assert path is not None
            result.append(_with_as_trans(path))
            segments = _without_confederations(path.segments)
            if segments and find(attributes, As4Path) is None:
                result.append(As4Path(segments))
        elif attribute is aggregator and not aggregator_fits:
            assert aggregator is not None
            result.append(attrs.evolve(aggregator, asn=AS_TRANS))
            if find(attributes, As4Aggregator) is None:
                result.append(As4Aggregator(aggregator.asn, aggregator.address))
        else:
            result.append(attribute)
    return tuple(result)


def _with_as_trans(path: AsPath) -> AsPath:
    segments = tuple(
        AsPathSegment(s.type, tuple(asn if asn <= 0xFFFF else AS_TRANS for asn in s.asns))
        for s in path.segments
    )
    return attrs.evolve(path, segments=segments)


def _without_confederations(segments: tuple[AsPathSegment, ...]) -> tuple[AsPathSegment, ...]:
    # RFC 6793 3: AS4_PATH never carries confederation segments.
    return tuple(s for s in segments if not s.is_confederation)
