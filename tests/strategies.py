"""Hypothesis strategies for the values of `sart.bgp.messages`.

Everything `messages(ctx)` draws is valid and canonical for `ctx`: the codec must give it back
unchanged, `decode_message(encode_message(m, ctx), ctx) == m`. The canonical rules this needs
(flags kept verbatim, the Extended Length bit set on long values, no attribute type twice,
path ids exactly on add-path families, ...) are enforced here, next to the values they shape.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import attrs
from hypothesis import assume
from hypothesis import strategies as st
from netaddr import IPAddress, IPNetwork

from sart.bgp.codes import (
    HEADER_LENGTH,
    MAX_MESSAGE_LENGTH,
    AsPathSegmentType,
    AttrFlag,
    AttrType,
    CapabilityCode,
)
from sart.bgp.context import DEFAULT_CONTEXT, SessionContext
from sart.bgp.messages import (
    IPV4_UNICAST,
    IPV6_UNICAST,
    OPTIONAL,
    OPTIONAL_TRANSITIVE,
    WELL_KNOWN,
    AddPathCapability,
    AddPathFamily,
    Aggregator,
    As4Aggregator,
    As4Path,
    AsPath,
    AsPathSegment,
    AtomicAggregate,
    Capability,
    ClusterList,
    Communities,
    EnhancedRouteRefreshCapability,
    ExtendedCommunities,
    ExtendedMessageCapability,
    ExtendedNextHopCapability,
    ExtendedNextHopEntry,
    Family,
    FourOctetAsCapability,
    FqdnCapability,
    GracefulRestartCapability,
    GracefulRestartFamily,
    Keepalive,
    LargeCommunities,
    LargeCommunity,
    LocalPref,
    LongLivedGracefulRestartCapability,
    LongLivedGracefulRestartFamily,
    Message,
    MpReachNlri,
    MpUnreachNlri,
    MultiExitDisc,
    MultiprotocolCapability,
    NextHop,
    Notification,
    Open,
    Origin,
    OriginatorId,
    PathAttribute,
    RoleCapability,
    RouteRefresh,
    RouteRefreshCapability,
    UnknownAttribute,
    UnknownCapability,
    Update,
)
from sart.bgp.wire.attributes import encode_attribute, to_two_octet
from sart.bgp.wire.open import encode_open
from sart.bgp.wire.update import encode_update

T = TypeVar("T")

U8 = st.integers(0, 0xFF)
U16 = st.integers(0, 0xFFFF)
U24 = st.integers(0, 0xFFFFFF)
U32 = st.integers(0, 0xFFFFFFFF)
U64 = st.integers(0, 0xFFFFFFFFFFFFFFFF)
ASN2 = 0xFFFF
ASN4 = 0xFFFFFFFF
MAX_PREFIXES = 50  # per field: keeps UPDATEs well under 4096 octets most of the time

_EXTENDED_LENGTH = int(AttrFlag.EXTENDED_LENGTH)
_PARTIAL = int(AttrFlag.PARTIAL)
# The type codes the codec interprets: anything else decodes to UnknownAttribute.
KNOWN_ATTRIBUTE_TYPES = frozenset(int(code) for code in AttrType)
KNOWN_CAPABILITY_CODES = frozenset(int(code) for code in CapabilityCode)
# The MP families the codec parses; MP attributes of other families stay UnknownAttribute.
PARSED_FAMILIES = tuple(Family(afi, safi) for afi in (1, 2) for safi in (1, 2))
_SEQUENCE_OR_SET = (AsPathSegmentType.AS_SET, AsPathSegmentType.AS_SEQUENCE)
_CONFEDERATION = (AsPathSegmentType.AS_CONFED_SEQUENCE, AsPathSegmentType.AS_CONFED_SET)


_FEW = 8


def _repeat(base: Sequence[T], count: int) -> tuple[T, ...]:
    return tuple(itertools.islice(itertools.cycle(base), count))


def _tuples(
    elements: st.SearchStrategy[T], min_size: int = 0, max_size: int = _FEW
) -> st.SearchStrategy[tuple[T, ...]]:
    """Mostly a few elements; one time in four, up to max_size of them, made by repeating a
    few (cheap to draw, and what makes values cross the 255-octet and 4096-octet lines)."""
    if max_size <= _FEW or min_size > _FEW:
        return st.lists(elements, min_size=min_size, max_size=max_size).map(tuple)
    few = st.lists(elements, min_size=min_size, max_size=_FEW).map(tuple)
    many = st.builds(
        _repeat,
        st.lists(elements, min_size=1, max_size=4),
        st.integers(max(min_size, _FEW + 1), max_size),
    )
    return st.one_of(few, few, few, many)


def _bytes(max_size: int, min_size: int = 0) -> st.SearchStrategy[bytes]:
    """Like _tuples, for octets."""
    return _tuples(U8, min_size, max_size).map(bytes)


# --- session contexts ----------------------------------------------------------------------

ALL_CONTEXTS: tuple[SessionContext, ...] = tuple(
    SessionContext(
        four_octet_as=four_octet_as,
        add_path=frozenset(add_path),
        extended_next_hop=extended_next_hop,
        extended_message=extended_message,
    )
    for four_octet_as in (True, False)
    for add_path in ((), (IPV4_UNICAST,), (IPV6_UNICAST,), (IPV4_UNICAST, IPV6_UNICAST))
    for extended_next_hop in (frozenset(), frozenset({IPV4_UNICAST}))
    for extended_message in (False, True)
)
"""Every combination of what the codec depends on; the first is the plain 4-octet session."""


def session_contexts(
    *, four_octet_as: bool | None = None, extended_message: bool | None = None
) -> st.SearchStrategy[SessionContext]:
    """Any of ALL_CONTEXTS, optionally pinned on a property; shrinks to the simplest one."""
    return st.sampled_from(
        [
            ctx
            for ctx in ALL_CONTEXTS
            if four_octet_as in (None, ctx.four_octet_as)
            and extended_message in (None, ctx.extended_message)
        ]
    )


def with_context(
    build: Callable[[SessionContext], st.SearchStrategy[T]],
    contexts: st.SearchStrategy[SessionContext] | None = None,
) -> st.SearchStrategy[tuple[SessionContext, T]]:
    """(ctx, value) pairs, value drawn from build(ctx)."""
    contexts = session_contexts() if contexts is None else contexts
    return contexts.flatmap(lambda ctx: st.tuples(st.just(ctx), build(ctx)))


# --- addresses and prefixes ----------------------------------------------------------------


def ipv4_addresses(*, nonzero: bool = False) -> st.SearchStrategy[IPAddress]:
    return st.integers(1 if nonzero else 0, 2**32 - 1).map(lambda value: IPAddress(value, 4))


def ipv6_addresses() -> st.SearchStrategy[IPAddress]:
    return st.integers(0, 2**128 - 1).map(lambda value: IPAddress(value, 6))


def link_local_addresses() -> st.SearchStrategy[IPAddress]:
    """fe80::/64 (RFC 4291 2.5.6), the second next hop of RFC 2545 3."""
    return st.integers(0, 2**64 - 1).map(lambda value: IPAddress(0xFE80 << 112 | value, 6))


def _network(version: int, length: int, value: int) -> IPNetwork:
    width = 32 if version == 4 else 128
    mask = ((1 << length) - 1) << (width - length)
    return IPNetwork((value & mask, length), version)


def prefixes(version: int = 4) -> st.SearchStrategy[IPNetwork]:
    """A prefix with its host bits zero, as the decoder returns it."""
    width = 32 if version == 4 else 128
    return st.builds(
        _network, st.just(version), st.integers(0, width), st.integers(0, 2**width - 1)
    )


def _prefixes_and_path_ids(
    draw: st.DrawFn, version: int, add_path: bool, min_size: int = 0
) -> tuple[tuple[IPNetwork, ...], tuple[int, ...]]:
    found = draw(_tuples(prefixes(version), min_size, MAX_PREFIXES))
    path_ids = (
        tuple(draw(st.lists(U32, min_size=len(found), max_size=len(found)))) if add_path else ()
    )
    return found, path_ids


# --- capabilities --------------------------------------------------------------------------


def multiprotocol_capabilities() -> st.SearchStrategy[MultiprotocolCapability]:
    return st.builds(MultiprotocolCapability, U16, U8)


def route_refresh_capabilities() -> st.SearchStrategy[RouteRefreshCapability]:
    return st.just(RouteRefreshCapability())


def extended_next_hop_capabilities() -> st.SearchStrategy[ExtendedNextHopCapability]:
    entries = st.builds(ExtendedNextHopEntry, U16, U16, U16)
    return st.builds(ExtendedNextHopCapability, _tuples(entries, 0, 42))  # 42 * 6 <= 255


def extended_message_capabilities() -> st.SearchStrategy[ExtendedMessageCapability]:
    return st.just(ExtendedMessageCapability())


def role_capabilities() -> st.SearchStrategy[RoleCapability]:
    return st.builds(RoleCapability, U8)


def graceful_restart_capabilities() -> st.SearchStrategy[GracefulRestartCapability]:
    families = st.builds(GracefulRestartFamily, U16, U8, U8)
    return st.builds(
        GracefulRestartCapability,
        st.integers(0, 0xF),
        st.integers(0, 0xFFF),
        _tuples(families, 0, 63),  # 2 + 63 * 4 <= 255
    )


def four_octet_as_capabilities() -> st.SearchStrategy[FourOctetAsCapability]:
    return st.builds(FourOctetAsCapability, st.integers(1, ASN4))  # AS 0 is an error (RFC 7607)


def add_path_capabilities() -> st.SearchStrategy[AddPathCapability]:
    families = st.builds(AddPathFamily, U16, U8, U8)
    return st.builds(AddPathCapability, _tuples(families, 0, 63))


def enhanced_route_refresh_capabilities() -> st.SearchStrategy[EnhancedRouteRefreshCapability]:
    return st.just(EnhancedRouteRefreshCapability())


def long_lived_graceful_restart_capabilities() -> st.SearchStrategy[
    LongLivedGracefulRestartCapability
]:
    families = st.builds(LongLivedGracefulRestartFamily, U16, U8, U8, U24)
    return st.builds(LongLivedGracefulRestartCapability, _tuples(families, 0, 36))  # 36 * 7


_UTF8_TEXT = st.text(st.characters(codec="utf-8"), max_size=64)


def fqdn_capabilities() -> st.SearchStrategy[FqdnCapability]:
    """Both texts with their length octets fit the 255-octet capability value."""
    return st.builds(FqdnCapability, _UTF8_TEXT, _UTF8_TEXT).filter(
        lambda c: 2 + len(c.hostname.encode()) + len(c.domain.encode()) <= 255
    )


def unknown_capabilities() -> st.SearchStrategy[UnknownCapability]:
    codes = st.sampled_from([code for code in range(256) if code not in KNOWN_CAPABILITY_CODES])
    return st.builds(UnknownCapability, codes, _bytes(255))


def capabilities() -> st.SearchStrategy[Capability]:
    return st.one_of(
        multiprotocol_capabilities(),
        route_refresh_capabilities(),
        extended_next_hop_capabilities(),
        extended_message_capabilities(),
        role_capabilities(),
        graceful_restart_capabilities(),
        four_octet_as_capabilities(),
        add_path_capabilities(),
        enhanced_route_refresh_capabilities(),
        long_lived_graceful_restart_capabilities(),
        fqdn_capabilities(),
        unknown_capabilities(),
    )


# --- path attributes -----------------------------------------------------------------------


@st.composite
def attribute_flags(draw: st.DrawFn, category: int) -> int:
    """A flags octet of the category (0x40, 0x80 or 0xC0): Partial only on optional
    transitive attributes, Extended Length and the four unused low bits anything."""
    flags = category | draw(st.sampled_from([0, _EXTENDED_LENGTH])) | draw(st.integers(0, 0xF))
    if category == OPTIONAL_TRANSITIVE and draw(st.booleans()):
        flags |= _PARTIAL
    return flags


_A = TypeVar("_A", bound=PathAttribute)


def value_length(attribute: PathAttribute, ctx: SessionContext) -> int:
    """How many octets the attribute's value takes on a session of ctx, after the RFC 6793
    conversion the encoder applies on 2-octet sessions."""
    if not ctx.four_octet_as:
        attribute = to_two_octet((attribute,))[0]
    long_form = attrs.evolve(attribute, flags=attribute.flags | _EXTENDED_LENGTH)
    return len(encode_attribute(long_form, ctx)) - 4


def long_flagged(attribute: _A, ctx: SessionContext) -> _A:
    """The attribute with Extended Length set if its value needs it: what the encoder does,
    and so what the decoder gives back."""
    if value_length(attribute, ctx) > 255:
        return attrs.evolve(attribute, flags=attribute.flags | _EXTENDED_LENGTH)
    return attribute


def _attribute(
    kind: Callable[..., _A], category: int, ctx: SessionContext, *args: Any
) -> st.SearchStrategy[_A]:
    built = st.builds(kind, *args, flags=attribute_flags(category))
    return built.map(lambda attribute: long_flagged(attribute, ctx))


def origins(ctx: SessionContext) -> st.SearchStrategy[Origin]:
    return _attribute(Origin, WELL_KNOWN, ctx, st.integers(0, 2))


def as_path_segments(
    max_asn: int = ASN4, types: Sequence[int] = tuple(AsPathSegmentType), max_size: int = 255
) -> st.SearchStrategy[AsPathSegment]:
    """1..255 ASNs, none 0 (RFC 7607)."""
    asns = _tuples(st.integers(1, max_asn), 1, max_size)
    return st.builds(AsPathSegment, st.sampled_from(tuple(types)), asns)


@st.composite
def _segments(
    draw: st.DrawFn, max_asn: int, as4_convertible: bool, min_size: int = 0
) -> tuple[AsPathSegment, ...]:
    if not as4_convertible:
        return draw(_tuples(as_path_segments(max_asn), min_size, 4))
    # What RFC 6793 can carry past a 2-octet speaker: AS4_PATH has no confederation segments
    # (RFC 6793 3), so their ASNs stay 2-octet, and the receiver only takes confederation
    # segments that lead the path (RFC 6793 4.2.3), which is where RFC 5065 5 puts them.
    confederations = draw(_tuples(as_path_segments(ASN2, _CONFEDERATION), 0, 2))
    rest = draw(_tuples(as_path_segments(max_asn, _SEQUENCE_OR_SET), min_size, 3))
    return confederations + rest


def as_paths(
    ctx: SessionContext, *, max_asn: int | None = None, as4_convertible: bool = False
) -> st.SearchStrategy[AsPath]:
    """An AS_PATH whose ASNs fit the session (2 octets unless four_octet_as), unless max_asn
    says otherwise; the empty path included. `as4_convertible`: shaped so that RFC 6793 gives
    it back whole past a 2-octet session (confederation segments 2-octet and leading)."""
    if max_asn is None:
        max_asn = ASN4 if ctx.four_octet_as else ASN2
    return _attribute(AsPath, WELL_KNOWN, ctx, _segments(max_asn, as4_convertible))


def as4_paths(ctx: SessionContext) -> st.SearchStrategy[As4Path]:
    """AS4_PATH: no confederation segments (RFC 6793 3), and not empty: the decoder wants at
    least one 6-octet segment (RFC 6793 6)."""
    segments = _tuples(as_path_segments(ASN4, _SEQUENCE_OR_SET), 1, 3)
    return _attribute(As4Path, OPTIONAL_TRANSITIVE, ctx, segments)


def next_hops(ctx: SessionContext) -> st.SearchStrategy[NextHop]:
    return _attribute(NextHop, WELL_KNOWN, ctx, ipv4_addresses())


def multi_exit_discs(ctx: SessionContext) -> st.SearchStrategy[MultiExitDisc]:
    return _attribute(MultiExitDisc, OPTIONAL, ctx, U32)


def local_prefs(ctx: SessionContext) -> st.SearchStrategy[LocalPref]:
    return _attribute(LocalPref, WELL_KNOWN, ctx, U32)


def atomic_aggregates(ctx: SessionContext) -> st.SearchStrategy[AtomicAggregate]:
    return _attribute(AtomicAggregate, WELL_KNOWN, ctx)


def aggregators(
    ctx: SessionContext, *, max_asn: int | None = None
) -> st.SearchStrategy[Aggregator]:
    if max_asn is None:
        max_asn = ASN4 if ctx.four_octet_as else ASN2
    return _attribute(
        Aggregator, OPTIONAL_TRANSITIVE, ctx, st.integers(1, max_asn), ipv4_addresses()
    )


def as4_aggregators(ctx: SessionContext) -> st.SearchStrategy[As4Aggregator]:
    return _attribute(
        As4Aggregator, OPTIONAL_TRANSITIVE, ctx, st.integers(1, ASN4), ipv4_addresses()
    )


def communities(ctx: SessionContext) -> st.SearchStrategy[Communities]:
    return _attribute(Communities, OPTIONAL_TRANSITIVE, ctx, _tuples(U32, 1, 80))


def originator_ids(ctx: SessionContext) -> st.SearchStrategy[OriginatorId]:
    return _attribute(OriginatorId, OPTIONAL, ctx, ipv4_addresses())


def cluster_lists(ctx: SessionContext) -> st.SearchStrategy[ClusterList]:
    return _attribute(ClusterList, OPTIONAL, ctx, _tuples(ipv4_addresses(), 1, 80))


@st.composite
def _mp_next_hops(draw: st.DrawFn, family: Family, ctx: SessionContext) -> tuple[IPAddress, ...]:
    """IPv4 for IPv4 routes, or IPv6 where RFC 8950 was negotiated; for IPv6, a global
    address optionally followed by a link-local one (RFC 2545 3)."""
    if family.afi == 1 and (family not in ctx.extended_next_hop or draw(st.booleans())):
        return (draw(ipv4_addresses()),)
    first = draw(ipv6_addresses())
    if draw(st.booleans()):
        return (first, draw(link_local_addresses()))
    return (first,)


@st.composite
def mp_reach_nlris(draw: st.DrawFn, ctx: SessionContext) -> MpReachNlri:
    """MP_REACH_NLRI of a family the codec parses (IPv4/IPv6, unicast/multicast)."""
    family = draw(st.sampled_from(PARSED_FAMILIES))
    hops = draw(_mp_next_hops(family, ctx))
    version = 4 if family.afi == 1 else 6
    nlri, path_ids = _prefixes_and_path_ids(draw, version, family in ctx.add_path)
    flags = draw(attribute_flags(OPTIONAL))
    attribute = MpReachNlri(family.afi, family.safi, hops, nlri, path_ids, flags=flags)
    return long_flagged(attribute, ctx)


@st.composite
def mp_unreach_nlris(draw: st.DrawFn, ctx: SessionContext) -> MpUnreachNlri:
    """MP_UNREACH_NLRI withdrawing prefixes of a parsed family, or an End-of-RIB marker
    (no prefixes) of any family."""
    flags = draw(attribute_flags(OPTIONAL))
    if draw(st.booleans()):
        return MpUnreachNlri(draw(U16), draw(U8), flags=flags)
    family = draw(st.sampled_from(PARSED_FAMILIES))
    version = 4 if family.afi == 1 else 6
    withdrawn, path_ids = _prefixes_and_path_ids(draw, version, family in ctx.add_path, 1)
    attribute = MpUnreachNlri(family.afi, family.safi, withdrawn, path_ids, flags=flags)
    return long_flagged(attribute, ctx)


def extended_communities(ctx: SessionContext) -> st.SearchStrategy[ExtendedCommunities]:
    return _attribute(ExtendedCommunities, OPTIONAL_TRANSITIVE, ctx, _tuples(U64, 1, 40))


def large_communities(ctx: SessionContext) -> st.SearchStrategy[LargeCommunities]:
    values = _tuples(st.builds(LargeCommunity, U32, U32, U32), 1, 30)
    return _attribute(LargeCommunities, OPTIONAL_TRANSITIVE, ctx, values)


def unknown_attribute_types() -> st.SearchStrategy[int]:
    return st.sampled_from([code for code in range(256) if code not in KNOWN_ATTRIBUTE_TYPES])


@st.composite
def unknown_attributes(
    draw: st.DrawFn, ctx: SessionContext, type_code: int | None = None
) -> UnknownAttribute:
    """An attribute of a type the codec does not know: optional (a well-known one would be an
    error), any other flag bits, any value."""
    if type_code is None:
        type_code = draw(unknown_attribute_types())
    flags = OPTIONAL | draw(st.integers(0, 0x7F))
    max_size = 6000 if ctx.extended_message else 600
    attribute = UnknownAttribute(type_code, draw(_bytes(max_size)), flags=flags)
    return long_flagged(attribute, ctx)


@st.composite
def unknown_family_mp_attributes(
    draw: st.DrawFn, ctx: SessionContext, type_code: int
) -> UnknownAttribute:
    """MP_REACH_NLRI (14) or MP_UNREACH_NLRI (15) of a family the codec does not parse,
    which it keeps as UnknownAttribute. MP_UNREACH_NLRI needs something after the AFI/SAFI,
    or it would be an End-of-RIB marker; MP_REACH_NLRI needs its 5-octet header."""
    afi, safi = draw(
        st.tuples(U16, U8).filter(lambda family: Family(*family) not in PARSED_FAMILIES)
    )
    rest = draw(st.binary(min_size=2 if type_code == AttrType.MP_REACH_NLRI else 1, max_size=40))
    data = afi.to_bytes(2, "big") + bytes((safi,)) + rest
    flags = draw(attribute_flags(OPTIONAL))
    return long_flagged(UnknownAttribute(type_code, data, flags=flags), ctx)


def _attribute_strategies(
    ctx: SessionContext, max_asn: int | None, as4_convertible: bool, as4: bool
) -> dict[int, st.SearchStrategy[PathAttribute]]:
    """One strategy per known type code the UPDATE may carry."""
    found: dict[int, st.SearchStrategy[Any]] = {
        AttrType.ORIGIN: origins(ctx),
        AttrType.AS_PATH: as_paths(ctx, max_asn=max_asn, as4_convertible=as4_convertible),
        AttrType.NEXT_HOP: next_hops(ctx),
        AttrType.MULTI_EXIT_DISC: multi_exit_discs(ctx),
        AttrType.LOCAL_PREF: local_prefs(ctx),
        AttrType.ATOMIC_AGGREGATE: atomic_aggregates(ctx),
        AttrType.AGGREGATOR: aggregators(ctx, max_asn=max_asn),
        AttrType.COMMUNITIES: communities(ctx),
        AttrType.ORIGINATOR_ID: originator_ids(ctx),
        AttrType.CLUSTER_LIST: cluster_lists(ctx),
        AttrType.MP_REACH_NLRI: st.one_of(
            mp_reach_nlris(ctx), unknown_family_mp_attributes(ctx, AttrType.MP_REACH_NLRI)
        ),
        AttrType.MP_UNREACH_NLRI: st.one_of(
            mp_unreach_nlris(ctx), unknown_family_mp_attributes(ctx, AttrType.MP_UNREACH_NLRI)
        ),
        AttrType.EXTENDED_COMMUNITIES: extended_communities(ctx),
        AttrType.LARGE_COMMUNITY: large_communities(ctx),
    }
    if as4:
        found[AttrType.AS4_PATH] = as4_paths(ctx)
        found[AttrType.AS4_AGGREGATOR] = as4_aggregators(ctx)
    return found


def path_attributes(ctx: SessionContext) -> st.SearchStrategy[PathAttribute]:
    """Any one attribute valid on a session of ctx."""
    found = _attribute_strategies(ctx, None, False, not ctx.four_octet_as)
    return st.one_of(*found.values(), unknown_attributes(ctx))


def encoded_length(message: Update | Open, ctx: SessionContext) -> int:
    """The length of an UPDATE or OPEN on the wire, without the encoder's size check."""
    if isinstance(message, Update):
        return HEADER_LENGTH + len(encode_update(message, ctx))
    return HEADER_LENGTH + len(encode_open(message))


@st.composite
def updates(
    draw: st.DrawFn,
    ctx: SessionContext,
    *,
    wide_asns: bool = False,
    as4: bool | None = None,
) -> Update:
    """A valid, canonical UPDATE for ctx. `wide_asns` lets AS_PATH and AGGREGATOR hold any
    ASN even on a 2-octet session (the encoder then adds AS4_PATH / AS4_AGGREGATOR), with
    confederation segments 2-octet and only at the head of the path; `as4` says whether AS4_PATH and
    AS4_AGGREGATOR may be drawn (by default: on 2-octet sessions without wide_asns)."""
    if as4 is None:
        as4 = not ctx.four_octet_as and not wide_asns
    add_path = IPV4_UNICAST in ctx.add_path
    withdrawn, withdrawn_ids = _prefixes_and_path_ids(draw, 4, add_path)
    nlri, nlri_ids = _prefixes_and_path_ids(draw, 4, add_path)
    strategies = _attribute_strategies(ctx, ASN4 if wide_asns else None, wide_asns, as4)
    chosen = draw(st.sets(st.sampled_from(sorted(strategies)), max_size=len(strategies)))
    drawn: dict[int, PathAttribute] = {code: draw(strategies[code]) for code in sorted(chosen)}
    # RFC 4271 5 / RFC 7606 3(d): what an UPDATE that announces routes must carry; RFC 4760 3:
    # ORIGIN and AS_PATH come with any MP_REACH_NLRI, of a family the codec parses or not.
    announces = bool(nlri) or AttrType.MP_REACH_NLRI in drawn
    mandatory = (AttrType.ORIGIN, AttrType.AS_PATH) if announces else ()
    for code in mandatory + ((AttrType.NEXT_HOP,) if nlri else ()):
        if code not in drawn:
            drawn[code] = draw(strategies[code])
    unknown_codes = draw(st.lists(unknown_attribute_types(), max_size=3, unique=True))
    for unknown in unknown_codes:
        drawn[unknown] = draw(unknown_attributes(ctx, unknown))
    attributes = tuple(draw(st.permutations(list(drawn.values()))))
    update = Update(
        withdrawn, attributes, nlri, withdrawn_path_ids=withdrawn_ids, nlri_path_ids=nlri_ids
    )
    assume(encoded_length(update, ctx) <= ctx.max_message_length)
    return update


@st.composite
def parameter_layouts(draw: st.DrawFn, count: int) -> tuple[int, ...] | None:
    """How `count` capabilities are packed into optional parameters: None (one each), or
    counts that sum to `count` and are not all 1 (empty parameters included)."""
    if draw(st.booleans()):
        return None
    cuts = sorted(draw(st.lists(st.integers(0, count), max_size=count + 2)))
    bounds = [0, *cuts, count]
    layout = tuple(end - start for start, end in itertools.pairwise(bounds))
    return None if all(part == 1 for part in layout) else layout


def _needs_extended_parameters(message: Open) -> bool:
    """Whether the OPEN's parameters overflow the one-octet length of RFC 4271 4.2."""
    body = encode_open(attrs.evolve(message, extended_parameters=False))
    return body[9] == 255 and len(body) > 10 and body[10] == 255


@st.composite
def opens(draw: st.DrawFn) -> Open:
    """A valid OPEN: version 4, AS and BGP identifier non-zero, hold time 0 or 3..65535,
    capabilities of every kind packed in any layout, at most 4096 octets (RFC 8654 4)."""
    found = draw(_tuples(capabilities(), 0, 12))
    message = Open(
        my_as=draw(st.integers(1, ASN2)),
        hold_time=draw(st.one_of(st.just(0), st.integers(3, 0xFFFF))),
        bgp_id=draw(ipv4_addresses(nonzero=True)),
        capabilities=found,
        parameter_layout=draw(parameter_layouts(len(found))),
    )
    # RFC 9072 format by choice is only visible (and so canonical) where it is not needed.
    if not _needs_extended_parameters(message) and draw(st.booleans()):
        message = attrs.evolve(message, extended_parameters=True)
    assume(encoded_length(message, DEFAULT_CONTEXT) <= MAX_MESSAGE_LENGTH)
    return message


def notifications(ctx: SessionContext) -> st.SearchStrategy[Notification]:
    max_size = ctx.max_message_length - HEADER_LENGTH - 2
    return st.builds(Notification, U8, U8, _bytes(min(max_size, 6000)))


def keepalives() -> st.SearchStrategy[Keepalive]:
    return st.just(Keepalive())


def _route_refresh(afi: int, safi: int, subtype: int, data: bytes) -> RouteRefresh:
    # RFC 7313 5: BoRR and EoRR are exactly 23 octets; other subtypes may carry ORF entries.
    return RouteRefresh(afi, safi, subtype, b"" if subtype in (1, 2) else data)


def route_refreshes() -> st.SearchStrategy[RouteRefresh]:
    """Any AFI, SAFI and subtype; what follows (ORF entries, RFC 5291) kept raw, and none after
    BoRR or EoRR."""
    return st.builds(_route_refresh, U16, U8, U8, _bytes(600))


def messages(ctx: SessionContext) -> st.SearchStrategy[Message]:
    """Any message, valid and canonical for ctx."""
    return st.one_of(keepalives(), notifications(ctx), route_refreshes(), opens(), updates(ctx))
