"""BMP, the BGP Monitoring Protocol (RFC 7854), sans-IO: what a monitored router sends its
collector, as bytes.

Every function here builds one BMP message (common header, per-peer header where the
message type has one, body) from values; the BGP messages inside them come from
`sart.bgp.wire`. The asyncio side (connecting, queueing, resync) is `sart.bgp.bmp_export`.

Route Monitoring carries the pre-policy Adj-RIB-In (RFC 7854 2: the L flag is clear): the
UPDATEs a peer sent, re-encoded from their decoded form in the session's own format (so the
A flag says whether its AS_PATHs have 2-octet ASNs), and, for a collector that connects while
a session is up, the routes sart holds from that peer, packed back into UPDATEs
(`adj_rib_in_updates`), followed by an End-of-RIB per family.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable, Sequence

import attrs
from netaddr import IPAddress

from sart.bgp.context import DEFAULT_CONTEXT, SessionContext
from sart.bgp.export import pack_updates
from sart.bgp.messages import Family, NextHop, Notification, Open, PathAttribute, Update
from sart.bgp.rib import Path
from sart.bgp.wire import encode_message

BMP_VERSION = 3  # RFC 7854 4.1
COMMON_HEADER = struct.Struct("!BIB")  # version, message length (all of it), message type
PER_PEER_HEADER = struct.Struct("!BB8s16sI4sII")  # 42 octets (RFC 7854 4.2)
_TLV = struct.Struct("!HH")


class MessageKind(enum.IntEnum):
    """Message Type (RFC 7854 4.1)."""

    ROUTE_MONITORING = 0
    STATISTICS_REPORT = 1
    PEER_DOWN = 2
    PEER_UP = 3
    INITIATION = 4
    TERMINATION = 5


class PeerType(enum.IntEnum):
    GLOBAL_INSTANCE = 0  # RFC 7854 4.2: the only kind sart has (no VRFs)


class PeerFlag(enum.IntFlag):
    """Peer Flags (RFC 7854 4.2)."""

    V = 0x80  # the peer address is IPv6
    L = 0x40  # post-policy Adj-RIB-In (never set here: sart exports pre-policy)
    A = 0x20  # the peer's AS_PATHs use 2-octet ASNs (no RFC 6793 on this session)


class InformationType(enum.IntEnum):
    """Information TLV types of the Initiation message (RFC 7854 4.4)."""

    STRING = 0
    SYS_DESCR = 1
    SYS_NAME = 2


class TerminationType(enum.IntEnum):
    """Information TLV types of the Termination message (RFC 7854 4.5)."""

    STRING = 0
    REASON = 1


class TerminationReason(enum.IntEnum):
    """Reason of a Termination (RFC 7854 4.5)."""

    ADMINISTRATIVELY_CLOSED = 0
    UNSPECIFIED = 1
    OUT_OF_RESOURCES = 2
    REDUNDANT_CONNECTION = 3
    PERMANENTLY_CLOSED = 4


class PeerDownReason(enum.IntEnum):
    """Reason of a Peer Down Notification (RFC 7854 4.9)."""

    LOCAL_NOTIFICATION = 1  # we closed the session with a NOTIFICATION (it follows)
    LOCAL_NO_NOTIFICATION = 2  # we closed it without one (the FSM event code follows)
    REMOTE_NOTIFICATION = 3  # the peer closed it with a NOTIFICATION (it follows)
    REMOTE_NO_NOTIFICATION = 4  # the connection ended with no NOTIFICATION either way
    DECONFIGURED = 5  # no more data for this peer, by configuration


class StatType(enum.IntEnum):
    """Stat Type (RFC 7854 4.8): 0-6 and 11-13 are 32-bit counters, the rest 64-bit gauges."""

    REJECTED_BY_POLICY = 0
    DUPLICATE_PREFIXES = 1
    DUPLICATE_WITHDRAWS = 2
    CLUSTER_LIST_LOOPS = 3
    AS_PATH_LOOPS = 4
    ORIGINATOR_ID_LOOPS = 5
    AS_CONFED_LOOPS = 6
    ADJ_RIB_IN_ROUTES = 7
    LOC_RIB_ROUTES = 8
    ADJ_RIB_IN_ROUTES_PER_FAMILY = 9
    LOC_RIB_ROUTES_PER_FAMILY = 10
    TREAT_AS_WITHDRAW_UPDATES = 11
    TREAT_AS_WITHDRAW_PREFIXES = 12
    DUPLICATE_UPDATES = 13


_GAUGES = frozenset((StatType.ADJ_RIB_IN_ROUTES, StatType.LOC_RIB_ROUTES))
_PER_FAMILY = frozenset((StatType.ADJ_RIB_IN_ROUTES_PER_FAMILY, StatType.LOC_RIB_ROUTES_PER_FAMILY))
TCP_CONNECTION_FAILS = 18  # RFC 4271 8.1.4 Event 18: what a close without NOTIFICATION is


@attrs.frozen(kw_only=True)
class PeerHeader:
    """The per-peer header's values: the peer and when (RFC 7854 4.2)."""

    address: IPAddress
    asn: int
    bgp_id: IPAddress
    two_octet_as: bool = False  # the A flag
    # Seconds since the epoch (UTC) the message's data was received; 0: not known.
    timestamp: float = 0.0


@attrs.frozen
class Statistic:
    """One stat TLV: a counter or gauge, per family for the per-AFI/SAFI types."""

    kind: StatType
    value: int
    family: Family | None = None

    def __attrs_post_init__(self) -> None:
        if (self.family is not None) != (self.kind in _PER_FAMILY):
            raise ValueError(f"stat type {self.kind.name}: a family goes with types 9 and 10 only")


@attrs.frozen
class PeerDown:
    """Why a session ended, as a Peer Down Notification says it."""

    reason: PeerDownReason
    notification: Notification | None = None  # sent or received, for reasons 1 and 3
    fsm_event: int = 0  # for reason 2


def peer_down(
    *,
    sent: Notification | None,
    received: Notification | None,
    local_close: bool,
) -> PeerDown:
    """The Peer Down of a session that ended: the NOTIFICATION it ended with, either way;
    without one, closed by us (`local_close`: we stopped it gracefully or BFD saw the path
    go, both the FSM's TcpConnectionFails) or by the peer or the network."""
    if received is not None:
        return PeerDown(PeerDownReason.REMOTE_NOTIFICATION, received)
    if sent is not None:
        return PeerDown(PeerDownReason.LOCAL_NOTIFICATION, sent)
    if local_close:
        return PeerDown(PeerDownReason.LOCAL_NO_NOTIFICATION, fsm_event=TCP_CONNECTION_FAILS)
    return PeerDown(PeerDownReason.REMOTE_NO_NOTIFICATION)


def _message(kind: MessageKind, body: bytes) -> bytes:
    return COMMON_HEADER.pack(BMP_VERSION, COMMON_HEADER.size + len(body), kind) + body


def _tlv(kind: int, value: bytes) -> bytes:
    if len(value) > 0xFFFF:
        raise ValueError(f"BMP TLV {kind}: {len(value)} octets do not fit its 2-octet length")
    return _TLV.pack(kind, len(value)) + value


def _address16(address: IPAddress) -> bytes:
    """An address in a 16-octet field: IPv4 in its last 4 octets (RFC 7854 4.2, 4.10)."""
    return bytes(address.packed).rjust(16, b"\0")


def encode_peer_header(header: PeerHeader) -> bytes:
    flags = PeerFlag(0)
    if header.address.version == 6:
        flags |= PeerFlag.V
    if header.two_octet_as:
        flags |= PeerFlag.A
    seconds = int(header.timestamp)
    microseconds = min(round((header.timestamp - seconds) * 1_000_000), 999_999)
    return PER_PEER_HEADER.pack(
        PeerType.GLOBAL_INSTANCE,
        flags,
        bytes(8),  # Peer Distinguisher: zero for a global instance peer
        _address16(header.address),
        header.asn,
        bytes(header.bgp_id.packed),
        seconds,
        microseconds,
    )


def encode_initiation(sys_name: str, sys_descr: str, *strings: str) -> bytes:
    """The first message on every connection to a collector (RFC 7854 4.3: sysDescr and
    sysName MUST be in it)."""
    body = _tlv(InformationType.SYS_DESCR, sys_descr.encode())
    body += _tlv(InformationType.SYS_NAME, sys_name.encode())
    for text in strings:
        body += _tlv(InformationType.STRING, text.encode())
    return _message(MessageKind.INITIATION, body)


def encode_termination(reason: TerminationReason, text: str = "") -> bytes:
    """The last message before we close the connection (RFC 7854 4.5)."""
    body = _tlv(TerminationType.STRING, text.encode()) if text else b""
    body += _tlv(TerminationType.REASON, struct.pack("!H", reason))
    return _message(MessageKind.TERMINATION, body)


def encode_peer_up(
    header: PeerHeader,
    *,
    local_address: IPAddress,
    local_port: int,
    remote_port: int,
    sent_open: Open,
    received_open: Open,
) -> bytes:
    """A session came up (RFC 7854 4.10): our end of its TCP connection and both OPENs."""
    if local_address.version != header.address.version:
        raise ValueError(
            f"peer up: local address {local_address} and peer {header.address} differ in version"
        )
    body = encode_peer_header(header) + _address16(local_address)
    body += struct.pack("!HH", local_port, remote_port)
    body += encode_message(sent_open, DEFAULT_CONTEXT) + encode_message(received_open)
    return _message(MessageKind.PEER_UP, body)


def encode_peer_down(header: PeerHeader, down: PeerDown) -> bytes:
    """A session ended (RFC 7854 4.9)."""
    data = b""
    if down.reason in (PeerDownReason.LOCAL_NOTIFICATION, PeerDownReason.REMOTE_NOTIFICATION):
        if down.notification is None:
            raise ValueError(f"peer down reason {down.reason.name} needs its NOTIFICATION")
        data = encode_message(down.notification)
    elif down.reason is PeerDownReason.LOCAL_NO_NOTIFICATION:
        data = struct.pack("!H", down.fsm_event)
    body = encode_peer_header(header) + bytes((down.reason,)) + data
    return _message(MessageKind.PEER_DOWN, body)


def encode_route_monitoring(header: PeerHeader, update: Update, ctx: SessionContext) -> bytes:
    """One UPDATE of the peer's Adj-RIB-In (RFC 7854 4.6), in the session's format `ctx`."""
    return encode_route_monitorings(header, [update], ctx)


def encode_route_monitorings(
    header: PeerHeader, updates: Iterable[Update], ctx: SessionContext
) -> bytes:
    """A Route Monitoring message per UPDATE, all with the same per-peer header."""
    peer = encode_peer_header(header)
    pack = COMMON_HEADER.pack
    fixed = COMMON_HEADER.size + len(peer)
    out: list[bytes] = []
    for update in updates:
        body = encode_message(update, ctx)
        out += (pack(BMP_VERSION, fixed + len(body), MessageKind.ROUTE_MONITORING), peer, body)
    return b"".join(out)


def _stat_value(stat: Statistic) -> bytes:
    if stat.family is not None:
        return struct.pack("!HBQ", stat.family.afi, stat.family.safi, stat.value)
    if stat.kind in _GAUGES:
        return struct.pack("!Q", stat.value)
    return struct.pack("!I", stat.value & 0xFFFF_FFFF)  # a counter wraps (RFC 7854 4.8)


def encode_statistics(header: PeerHeader, stats: Sequence[Statistic]) -> bytes:
    """A Stats Report (RFC 7854 4.8): the stat TLVs, counted."""
    body = encode_peer_header(header) + struct.pack("!I", len(stats))
    for stat in stats:
        body += _tlv(stat.kind, _stat_value(stat))
    return _message(MessageKind.STATISTICS_REPORT, body)


def adj_rib_in_updates(paths: Iterable[Path], ctx: SessionContext) -> list[Update]:
    """UPDATEs announcing these paths of one peer as it could have sent them: those sharing
    attributes and next hop together, each as full as the session's messages may be."""
    without_next_hop: dict[int, tuple[PathAttribute, ...]] = {}
    routes = []
    for path in paths:
        if path.next_hop is None:
            continue  # a path of ours (no next hop of its own): never a peer's
        attributes = without_next_hop.get(id(path.attributes))
        if attributes is None:
            attributes = tuple(a for a in path.attributes if type(a) is not NextHop)
            without_next_hop[id(path.attributes)] = attributes
        routes.append((path.prefix, attributes, path.next_hop))
    return pack_updates(routes, ctx)
