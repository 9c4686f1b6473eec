"""BGP messages, capabilities and path attributes as frozen values.

These classes only hold data; `sart.bgp.wire` turns them into bytes and back. Prefixes and
addresses are netaddr objects. Every path attribute keeps its flags octet so that what was
received re-encodes byte for byte; the defaults are the flags RFC 4271 prescribes.

Add-path identifiers (RFC 7911) travel beside the prefixes they belong to: `nlri_path_ids[i]`
is the path identifier of `nlri[i]`. The tuples are empty on sessions without add-path, which
keeps the common case free of a wrapper object per prefix.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import ClassVar, NamedTuple, Self, TypeVar

import attrs
from netaddr import IPAddress, IPNetwork

from sart.bgp.codes import (
    BGP_VERSION,
    Afi,
    AsPathSegmentType,
    AttrFlag,
    AttrType,
    CapabilityCode,
    ErrorCode,
    MessageType,
    Safi,
    WellKnownCommunity,
    describe_error,
)

WELL_KNOWN = int(AttrFlag.TRANSITIVE)
OPTIONAL = int(AttrFlag.OPTIONAL)
OPTIONAL_TRANSITIVE = int(AttrFlag.OPTIONAL | AttrFlag.TRANSITIVE)


def _hex(value: int) -> str:
    return f"0x{value:02x}"


def _flags(default: int) -> int:
    """A path attribute's flags octet: keyword-only, shown in hex."""
    return attrs.field(default=default, kw_only=True, repr=_hex)


@attrs.frozen(order=True)
class Family:
    """An address family: AFI and SAFI (RFC 4760)."""

    afi: int
    safi: int

    def __str__(self) -> str:
        try:
            return f"{Afi(self.afi).name.lower()}-{Safi(self.safi).name.lower()}"
        except ValueError:
            return f"afi{self.afi}-safi{self.safi}"

    @classmethod
    def from_str(cls, text: str) -> Family:
        """Parse 'ipv4-unicast', 'ipv6-unicast', 'ipv4' (unicast implied) or 'afi1-safi1'."""
        afi_text, _, safi_text = text.strip().lower().partition("-")
        names = {"ipv4": Afi.IPV4, "ipv6": Afi.IPV6}
        safis = {"unicast": Safi.UNICAST, "multicast": Safi.MULTICAST, "": Safi.UNICAST}
        if afi_text in names and safi_text in safis:
            return cls(names[afi_text], safis[safi_text])
        if afi_text.startswith("afi") and safi_text.startswith("safi"):
            try:
                return cls(int(afi_text[3:]), int(safi_text[4:]))
            except ValueError:
                pass
        raise ValueError(f"not an address family: {text!r} (try ipv4-unicast or ipv6-unicast)")


class _InFamily:
    """For values with `afi` and `safi` fields: their Family."""

    afi: int
    safi: int

    @property
    def family(self) -> Family:
        return Family(self.afi, self.safi)


IPV4_UNICAST = Family(Afi.IPV4, Safi.UNICAST)
IPV6_UNICAST = Family(Afi.IPV6, Safi.UNICAST)


# --- Capabilities (RFC 5492 and the RFCs that define each code) ---------------------------------


@attrs.frozen
class MultiprotocolCapability(_InFamily):
    code: ClassVar[int] = CapabilityCode.MULTIPROTOCOL
    afi: int
    safi: int


@attrs.frozen
class RouteRefreshCapability:
    code: ClassVar[int] = CapabilityCode.ROUTE_REFRESH


@attrs.frozen
class ExtendedNextHopEntry:
    """NLRI of (afi, safi) may carry a next hop of next_hop_afi (RFC 8950 3)."""

    afi: int
    safi: int
    next_hop_afi: int


@attrs.frozen
class ExtendedNextHopCapability:
    code: ClassVar[int] = CapabilityCode.EXTENDED_NEXT_HOP
    entries: tuple[ExtendedNextHopEntry, ...] = ()


@attrs.frozen
class ExtendedMessageCapability:
    code: ClassVar[int] = CapabilityCode.EXTENDED_MESSAGE


@attrs.frozen
class RoleCapability:
    code: ClassVar[int] = CapabilityCode.ROLE
    role: int  # RFC 9234 4.1: 0 provider, 1 route server, 2 RS client, 3 customer, 4 peer


@attrs.frozen
class GracefulRestartFamily:
    afi: int
    safi: int
    flags: int = 0  # 0x80: forwarding state preserved (RFC 4724 3)


@attrs.frozen
class GracefulRestartCapability:
    code: ClassVar[int] = CapabilityCode.GRACEFUL_RESTART
    RESTART_STATE: ClassVar[int] = 0x8  # R bit, RFC 4724 3
    NOTIFICATION: ClassVar[int] = 0x4  # N bit, RFC 8538 2
    restart_flags: int  # the 4 high bits of the first octet
    restart_time: int  # seconds, 12 bits
    families: tuple[GracefulRestartFamily, ...] = ()


@attrs.frozen
class FourOctetAsCapability:
    code: ClassVar[int] = CapabilityCode.FOUR_OCTET_AS
    asn: int


@attrs.frozen
class AddPathFamily:
    afi: int
    safi: int
    send_receive: int  # AddPathDirection


@attrs.frozen
class AddPathCapability:
    code: ClassVar[int] = CapabilityCode.ADD_PATH
    families: tuple[AddPathFamily, ...] = ()


@attrs.frozen
class EnhancedRouteRefreshCapability:
    code: ClassVar[int] = CapabilityCode.ENHANCED_ROUTE_REFRESH


@attrs.frozen
class LongLivedGracefulRestartFamily:
    afi: int
    safi: int
    flags: int  # 0x80: forwarding state preserved (RFC 9494 3)
    stale_time: int  # seconds, 24 bits


@attrs.frozen
class LongLivedGracefulRestartCapability:
    code: ClassVar[int] = CapabilityCode.LONG_LIVED_GRACEFUL_RESTART
    families: tuple[LongLivedGracefulRestartFamily, ...] = ()


@attrs.frozen
class FqdnCapability:
    """Host and domain name (draft-walton-bgp-hostname-capability), as FRR sends them."""

    code: ClassVar[int] = CapabilityCode.FQDN
    hostname: str
    domain: str = ""


@attrs.frozen
class UnknownCapability:
    """A capability this library does not interpret, kept as code and raw value."""

    code: int  # an instance field here, a ClassVar on the known kinds
    data: bytes = b""


Capability = (
    MultiprotocolCapability
    | RouteRefreshCapability
    | ExtendedNextHopCapability
    | ExtendedMessageCapability
    | RoleCapability
    | GracefulRestartCapability
    | FourOctetAsCapability
    | AddPathCapability
    | EnhancedRouteRefreshCapability
    | LongLivedGracefulRestartCapability
    | FqdnCapability
    | UnknownCapability
)


# --- Path attributes (RFC 4271 4.3 and 5) ---------------------------------------------------


@attrs.frozen
class Origin:
    type_code: ClassVar[int] = AttrType.ORIGIN
    value: int  # OriginCode
    flags: int = _flags(WELL_KNOWN)


_BRACKETS: dict[int, str] = {
    AsPathSegmentType.AS_SET: "{}",
    AsPathSegmentType.AS_CONFED_SEQUENCE: "()",
    AsPathSegmentType.AS_CONFED_SET: "[]",
}


@attrs.frozen
class AsPathSegment:
    type: int  # AsPathSegmentType
    asns: tuple[int, ...]

    @property
    def is_confederation(self) -> bool:
        """AS_CONFED_SEQUENCE or AS_CONFED_SET (RFC 5065 3)."""
        return self.type in (AsPathSegmentType.AS_CONFED_SEQUENCE, AsPathSegmentType.AS_CONFED_SET)

    def __str__(self) -> str:
        text = " ".join(str(asn) for asn in self.asns)
        brackets = _BRACKETS.get(self.type)
        return text if brackets is None else f"{brackets[0]}{text}{brackets[1]}"


@attrs.frozen
class _AsPathValue:
    segments: tuple[AsPathSegment, ...] = ()

    @classmethod
    def from_asns(cls, *asns: int) -> Self:
        """A path of one AS_SEQUENCE; the empty path for no ASNs."""
        return cls((AsPathSegment(AsPathSegmentType.AS_SEQUENCE, asns),) if asns else ())

    @property
    def length(self) -> int:
        """Path length for best-path selection: an AS_SET counts one, confederation
        segments count zero (RFC 4271 9.1.2.2 a, RFC 5065 5.3)."""
        total = 0
        for segment in self.segments:
            if segment.type == AsPathSegmentType.AS_SEQUENCE:
                total += len(segment.asns)
            elif segment.type == AsPathSegmentType.AS_SET:
                total += 1
        return total

    def asns(self) -> Iterator[int]:
        """Every ASN on the path, in order, segment boundaries dropped."""
        for segment in self.segments:
            yield from segment.asns

    def __str__(self) -> str:
        return " ".join(str(segment) for segment in self.segments)


@attrs.frozen
class AsPath(_AsPathValue):
    type_code: ClassVar[int] = AttrType.AS_PATH
    flags: int = _flags(WELL_KNOWN)


@attrs.frozen
class As4Path(_AsPathValue):
    """The real path beside an AS_PATH that holds AS_TRANS, on 2-octet sessions (RFC 6793)."""

    type_code: ClassVar[int] = AttrType.AS4_PATH
    flags: int = _flags(OPTIONAL_TRANSITIVE)


@attrs.frozen
class NextHop:
    type_code: ClassVar[int] = AttrType.NEXT_HOP
    address: IPAddress
    flags: int = _flags(WELL_KNOWN)


@attrs.frozen
class MultiExitDisc:
    type_code: ClassVar[int] = AttrType.MULTI_EXIT_DISC
    value: int
    flags: int = _flags(OPTIONAL)


@attrs.frozen
class LocalPref:
    type_code: ClassVar[int] = AttrType.LOCAL_PREF
    value: int
    flags: int = _flags(WELL_KNOWN)


@attrs.frozen
class AtomicAggregate:
    type_code: ClassVar[int] = AttrType.ATOMIC_AGGREGATE
    flags: int = _flags(WELL_KNOWN)


@attrs.frozen
class _AggregatorValue:
    asn: int
    address: IPAddress


@attrs.frozen
class Aggregator(_AggregatorValue):
    type_code: ClassVar[int] = AttrType.AGGREGATOR
    flags: int = _flags(OPTIONAL_TRANSITIVE)


@attrs.frozen
class As4Aggregator(_AggregatorValue):
    """The real aggregator beside an AGGREGATOR of AS_TRANS, on 2-octet sessions (RFC 6793)."""

    type_code: ClassVar[int] = AttrType.AS4_AGGREGATOR
    flags: int = _flags(OPTIONAL_TRANSITIVE)


def format_community(value: int) -> str:
    """'NO_EXPORT' for a well-known community, else 'asn:value' (RFC 1997)."""
    try:
        return WellKnownCommunity(value).name
    except ValueError:
        return f"{value >> 16}:{value & 0xFFFF}"


def parse_community(text: str) -> int:
    """The inverse of format_community: 'NO_EXPORT', 'no-export' or '65000:100'."""
    name = text.strip().upper().replace("-", "_")
    if name in WellKnownCommunity.__members__:
        return int(WellKnownCommunity[name])
    high, sep, low = text.partition(":")
    try:
        asn, value = int(high), int(low)
    except ValueError:
        asn = value = -1
    if not sep or not (0 <= asn <= 0xFFFF and 0 <= value <= 0xFFFF):
        raise ValueError(f"not a community: {text!r} (want ASN:VALUE or a well-known name)")
    return asn << 16 | value


@attrs.frozen
class Communities:
    type_code: ClassVar[int] = AttrType.COMMUNITIES
    values: tuple[int, ...]
    flags: int = _flags(OPTIONAL_TRANSITIVE)

    def __str__(self) -> str:
        return " ".join(format_community(value) for value in self.values)


@attrs.frozen
class OriginatorId:
    type_code: ClassVar[int] = AttrType.ORIGINATOR_ID
    address: IPAddress
    flags: int = _flags(OPTIONAL)


@attrs.frozen
class ClusterList:
    type_code: ClassVar[int] = AttrType.CLUSTER_LIST
    ids: tuple[IPAddress, ...]
    flags: int = _flags(OPTIONAL)


@attrs.frozen
class MpReachNlri(_InFamily):
    """Reachable prefixes of any family (RFC 4760 3). An IPv6 next hop is one global address,
    optionally followed by a link-local one (RFC 2545 3)."""

    type_code: ClassVar[int] = AttrType.MP_REACH_NLRI
    afi: int
    safi: int
    next_hops: tuple[IPAddress, ...]
    nlri: Sequence[IPNetwork] = ()
    path_ids: tuple[int, ...] = ()
    flags: int = _flags(OPTIONAL)


@attrs.frozen
class MpUnreachNlri(_InFamily):
    """Withdrawn prefixes of any family (RFC 4760 4); empty, it is an End-of-RIB marker."""

    type_code: ClassVar[int] = AttrType.MP_UNREACH_NLRI
    afi: int
    safi: int
    withdrawn: Sequence[IPNetwork] = ()
    path_ids: tuple[int, ...] = ()
    flags: int = _flags(OPTIONAL)


@attrs.frozen
class ExtendedCommunities:
    """Eight-octet communities (RFC 4360), each as an unsigned 64-bit integer."""

    type_code: ClassVar[int] = AttrType.EXTENDED_COMMUNITIES
    values: tuple[int, ...]
    flags: int = _flags(OPTIONAL_TRANSITIVE)


def _decimal(text: str) -> bool:
    return text.isascii() and text.isdigit()


@attrs.frozen
class LargeCommunity:
    global_admin: int
    local_data_1: int
    local_data_2: int

    def __str__(self) -> str:
        return f"{self.global_admin}:{self.local_data_1}:{self.local_data_2}"

    @classmethod
    def from_str(cls, text: str) -> LargeCommunity:
        """'GLOBAL:LOCAL1:LOCAL2' (RFC 8092), each part 0..2^32-1."""
        parts = text.strip().split(":")
        if len(parts) != 3 or not all(_decimal(p) and int(p) <= 0xFFFFFFFF for p in parts):
            raise ValueError(
                f"not a large community: {text!r} (want GLOBAL:LOCAL1:LOCAL2, each 0-4294967295)"
            )
        return cls(*(int(p) for p in parts))


@attrs.frozen
class LargeCommunities:
    type_code: ClassVar[int] = AttrType.LARGE_COMMUNITY
    values: tuple[LargeCommunity, ...]
    flags: int = _flags(OPTIONAL_TRANSITIVE)

    def __str__(self) -> str:
        return " ".join(str(value) for value in self.values)


@attrs.frozen
class UnknownAttribute:
    """An attribute this library does not interpret (or a family it does not parse), kept
    byte for byte."""

    type_code: int  # an instance field here, a ClassVar on the known kinds
    data: bytes
    flags: int = _flags(OPTIONAL_TRANSITIVE)

    def propagated(self) -> UnknownAttribute | None:
        """What to pass on to other peers (RFC 4271 5): an optional transitive attribute goes
        on with the Partial bit set, anything else unrecognised is dropped."""
        if self.flags & OPTIONAL_TRANSITIVE != OPTIONAL_TRANSITIVE:
            return None
        return attrs.evolve(self, flags=self.flags | AttrFlag.PARTIAL)


PathAttribute = (
    Origin
    | AsPath
    | NextHop
    | MultiExitDisc
    | LocalPref
    | AtomicAggregate
    | Aggregator
    | Communities
    | OriginatorId
    | ClusterList
    | MpReachNlri
    | MpUnreachNlri
    | ExtendedCommunities
    | As4Path
    | As4Aggregator
    | LargeCommunities
    | UnknownAttribute
)

_Attr = TypeVar("_Attr", bound=PathAttribute)
_Found = TypeVar("_Found")


def find(items: Iterable[object], kind: type[_Found]) -> _Found | None:
    """The first item of exactly this class (a subclass does not count), or None."""
    for item in items:
        if type(item) is kind:
            return item
    return None


# --- Messages (RFC 4271 4) ------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Open:
    """An OPEN. `parameter_layout` and `extended_parameters` only describe how capabilities
    were packed on the wire, so that a received OPEN re-encodes to the same bytes: None means
    one capability per optional parameter (the usual layout); otherwise the number of
    capabilities in each optional parameter. `extended_parameters` forces the RFC 9072 format,
    which is used anyway when the parameters do not fit in 255 octets."""

    message_type: ClassVar[MessageType] = MessageType.OPEN
    version: int = BGP_VERSION
    my_as: int
    hold_time: int
    bgp_id: IPAddress
    capabilities: tuple[Capability, ...] = ()
    parameter_layout: tuple[int, ...] | None = None
    extended_parameters: bool = False

    @property
    def asn(self) -> int:
        """The speaker's real AS: the 4-octet AS capability's, else my_as (RFC 6793 4.1)."""
        four_octet = self.capability(FourOctetAsCapability)
        return self.my_as if four_octet is None else four_octet.asn

    def capability(self, kind: type[_Cap]) -> _Cap | None:
        """The first capability of this kind, or None."""
        return find(self.capabilities, kind)


_Cap = TypeVar("_Cap", bound=Capability)


@attrs.frozen
class Update:
    """An UPDATE. `withdrawn` and `nlri` are IPv4 unicast (RFC 4271 4.3); other families ride
    in MpReachNlri / MpUnreachNlri attributes."""

    message_type: ClassVar[MessageType] = MessageType.UPDATE
    withdrawn: Sequence[IPNetwork] = ()
    attributes: tuple[PathAttribute, ...] = ()
    nlri: Sequence[IPNetwork] = ()
    withdrawn_path_ids: tuple[int, ...] = attrs.field(default=(), kw_only=True)
    nlri_path_ids: tuple[int, ...] = attrs.field(default=(), kw_only=True)

    @classmethod
    def end_of_rib(cls, family: Family = IPV4_UNICAST) -> Update:
        """The End-of-RIB marker of a family (RFC 4724 2)."""
        if family == IPV4_UNICAST:
            return cls()
        return cls(attributes=(MpUnreachNlri(family.afi, family.safi),))

    @property
    def end_of_rib_family(self) -> Family | None:
        """The family whose End-of-RIB this is, or None for any other UPDATE."""
        if self.withdrawn or self.nlri:
            return None
        if not self.attributes:
            return IPV4_UNICAST
        if len(self.attributes) != 1:
            return None
        only = self.attributes[0]
        if isinstance(only, MpUnreachNlri) and not only.withdrawn:
            return only.family
        return None

    def get(self, kind: type[_Attr]) -> _Attr | None:
        """The attribute of this kind, or None."""
        return find(self.attributes, kind)


class PlainUpdate(NamedTuple):
    """An UPDATE of the kind nearly every UPDATE of a table is, decoded for the RIB: IPv4
    unicast NLRI without path ids, no withdrawn routes, no multiprotocol or AS4 attributes,
    every attribute well-formed (`decode_update(..., plain=True)` makes them).

    A session made with `plain_updates=True` delivers these instead of Update, so the RIB
    and the speaker take the AS path and next hop the codec has just read instead of walking
    the attributes again; `update()` is the Update that `decode_update` makes of the same
    octets."""

    attributes: tuple[PathAttribute, ...]
    nlri: Sequence[IPNetwork]  # never empty
    as_path: AsPath
    next_hop: IPAddress
    seen: int  # bit n set for attribute type code n

    def update(self) -> Update:
        return Update(attributes=self.attributes, nlri=self.nlri)


@attrs.frozen
class Notification:
    message_type: ClassVar[MessageType] = MessageType.NOTIFICATION
    code: int  # ErrorCode
    subcode: int
    data: bytes = b""

    @property
    def description(self) -> str:
        return describe_error(self.code, self.subcode)

    @property
    def shutdown_message(self) -> str | None:
        """The operator's text of an administrative shutdown or reset (RFC 9003 2)."""
        if self.code != ErrorCode.CEASE or self.subcode not in (2, 4) or not self.data:
            return None
        text = self.data[1 : 1 + self.data[0]]
        return text.decode("utf-8", errors="replace")


@attrs.frozen
class Keepalive:
    message_type: ClassVar[MessageType] = MessageType.KEEPALIVE


@attrs.frozen
class RouteRefresh(_InFamily):
    message_type: ClassVar[MessageType] = MessageType.ROUTE_REFRESH
    afi: int
    safi: int
    subtype: int = 0  # RouteRefreshSubtype: 0 request, 1 BoRR, 2 EoRR (RFC 7313)
    # What follows a request: ORF entries (RFC 5291), which sart does not negotiate but keeps.
    data: bytes = b""


Message = Open | Update | Notification | Keepalive | RouteRefresh

__all__ = [
    "IPV4_UNICAST",
    "IPV6_UNICAST",
    "AddPathCapability",
    "AddPathFamily",
    "Aggregator",
    "As4Aggregator",
    "As4Path",
    "AsPath",
    "AsPathSegment",
    "AtomicAggregate",
    "Capability",
    "ClusterList",
    "Communities",
    "EnhancedRouteRefreshCapability",
    "ExtendedCommunities",
    "ExtendedMessageCapability",
    "ExtendedNextHopCapability",
    "ExtendedNextHopEntry",
    "Family",
    "FourOctetAsCapability",
    "FqdnCapability",
    "GracefulRestartCapability",
    "GracefulRestartFamily",
    "Keepalive",
    "LargeCommunities",
    "LargeCommunity",
    "LocalPref",
    "LongLivedGracefulRestartCapability",
    "LongLivedGracefulRestartFamily",
    "Message",
    "MpReachNlri",
    "MpUnreachNlri",
    "MultiExitDisc",
    "MultiprotocolCapability",
    "NextHop",
    "Notification",
    "Open",
    "Origin",
    "OriginatorId",
    "PathAttribute",
    "RoleCapability",
    "RouteRefresh",
    "RouteRefreshCapability",
    "UnknownAttribute",
    "UnknownCapability",
    "Update",
    "find",
    "format_community",
    "parse_community",
]
