"""MRT (RFC 6396), sans-IO: RIB dumps (TABLE_DUMP_V2) and logs of BGP messages (BGP4MP).

A dump is a PEER_INDEX_TABLE, then one RIB_IPV4_UNICAST or RIB_IPV6_UNICAST record per
prefix holding one RIB entry per path (RFC 6396 4.3); a prefix with paths that carry path
identifiers (from an add-path peer) gets the RFC 8050 _ADDPATH record, which keeps them.
`table_dump` hands it out in chunks of about `chunk_size` octets, so a million-prefix table
never becomes one bytes object.

Path attributes are written as an UPDATE carries them (sart.bgp.wire), with what RFC 6396
4.3.4 asks of a RIB entry: ASNs in 4 octets (the path a route really took, RFC 6793 4.2.3,
so no AS4_PATH or AS4_AGGREGATOR), and the next hop of a route that is not an IPv4 route
with an IPv4 next hop in an MP_REACH_NLRI cut down to its next hop length and address.
A route whose next hop is "our address on each session" (our own, unset) shows the
unspecified address, as routers show their own routes.

BGP4MP records (RFC 6396 4.4) carry one whole BGP message, or a session state change,
between a peer and us (the _ADDPATH subtypes of RFC 8050 for an add-path session's).
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable, Iterator, Sequence

import attrs
from netaddr import IPAddress, IPNetwork

from sart.bgp.as4 import effective_aggregator, effective_as_path
from sart.bgp.codes import AttrFlag, AttrType
from sart.bgp.context import SessionContext
from sart.bgp.fsm import State
from sart.bgp.messages import (
    Aggregator,
    As4Aggregator,
    As4Path,
    AsPath,
    NextHop,
    PathAttribute,
    find,
)
from sart.bgp.prefixes import IPV4_BITS, IPV6_BITS, key_version, key_wire
from sart.bgp.rib import Path, Source
from sart.bgp.wire.attributes import decode_attributes, encode_attribute
from sart.errors import BgpUsageError, MrtDecodeError

CHUNK_SIZE = 1 << 18
_FOUR_OCTET = SessionContext(four_octet_as=True)
_UNSPECIFIED = {4: IPAddress("0.0.0.0"), 6: IPAddress("::")}
# Left out of a RIB entry: the 4-octet AS_PATH and AGGREGATOR replace the AS4_ ones, and
# the next hop is written from the path's own.
_REWRITTEN = frozenset((AsPath, As4Path, Aggregator, As4Aggregator, NextHop))
_MP_REACH_FLAGS = int(AttrFlag.OPTIONAL)
_HEADER = struct.Struct(">IHHI")
_ENTRY = struct.Struct(">HIH")  # RFC 6396 4.3.4: peer index, originated time, attribute length
_ADDPATH_ENTRY = struct.Struct(">HIIH")  # RFC 8050 4: ... the path identifier before the length
_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")


class MrtType(enum.IntEnum):
    """RFC 6396 4: the types sart writes."""

    TABLE_DUMP_V2 = 13  # 4.3
    BGP4MP = 16  # 4.4


class TableDumpSubtype(enum.IntEnum):
    """RFC 6396 4.3; RFC 8050 4 for the ADDPATH ones (entries with a path identifier)."""

    PEER_INDEX_TABLE = 1
    RIB_IPV4_UNICAST = 2
    RIB_IPV6_UNICAST = 4
    RIB_IPV4_UNICAST_ADDPATH = 8
    RIB_IPV6_UNICAST_ADDPATH = 10


class Bgp4mpSubtype(enum.IntEnum):
    """RFC 6396 4.4; RFC 8050 3 for the ADDPATH ones (NLRI carrying path identifiers)."""

    MESSAGE = 1  # 2-octet ASNs: a message of a session without 4-octet ASNs
    MESSAGE_AS4 = 4
    STATE_CHANGE_AS4 = 5
    MESSAGE_ADDPATH = 8
    MESSAGE_AS4_ADDPATH = 9


# By (4-octet ASNs, add-path).
_MESSAGE_SUBTYPE = {
    (False, False): Bgp4mpSubtype.MESSAGE,
    (True, False): Bgp4mpSubtype.MESSAGE_AS4,
    (False, True): Bgp4mpSubtype.MESSAGE_ADDPATH,
    (True, True): Bgp4mpSubtype.MESSAGE_AS4_ADDPATH,
}
# RFC 6396 4.4.1: the session states by number, as RFC 4271 8.2.2 lists them.
STATE_CODES = {
    State.IDLE: 1,
    State.CONNECT: 2,
    State.ACTIVE: 3,
    State.OPEN_SENT: 4,
    State.OPEN_CONFIRM: 5,
    State.ESTABLISHED: 6,
}
_PEER_IPV6 = 0x01  # RFC 6396 4.3.1 Peer Type bits
_PEER_AS4 = 0x02
# By (IP version, whether the entries carry path identifiers).
_RIB_SUBTYPE = {
    (4, False): TableDumpSubtype.RIB_IPV4_UNICAST,
    (6, False): TableDumpSubtype.RIB_IPV6_UNICAST,
    (4, True): TableDumpSubtype.RIB_IPV4_UNICAST_ADDPATH,
    (6, True): TableDumpSubtype.RIB_IPV6_UNICAST_ADDPATH,
}
_RIB_OF_SUBTYPE = {subtype: key for key, subtype in _RIB_SUBTYPE.items()}


def encode_record(timestamp: int, kind: int, subtype: int, body: bytes) -> bytes:
    """One MRT record: the common header (RFC 6396 2), then `body`."""
    return _HEADER.pack(timestamp, kind, subtype, len(body)) + body


def _address(address: IPAddress) -> bytes:
    return int(address).to_bytes(4 if address.version == 4 else 16, "big")


def peer_address(source: Source) -> IPAddress:
    """The address a source has in the peer index table: ours is the unspecified one."""
    return _UNSPECIFIED[4] if source.address is None else source.address


def encode_peer_index_table(collector_id: IPAddress, view: str, sources: Sequence[Source]) -> bytes:
    """The PEER_INDEX_TABLE body (RFC 6396 4.3.1): peers numbered in the order given. Every
    peer is written with a 4-octet AS field."""
    name = view.encode()
    if len(sources) > 0xFFFF:
        raise BgpUsageError(f"{len(sources)} peers do not fit a peer index table (65535 at most)")
    out = bytearray(_address(collector_id))
    out += struct.pack(">H", len(name)) + name + struct.pack(">H", len(sources))
    for source in sources:
        address = peer_address(source)
        kind = _PEER_AS4 | (_PEER_IPV6 if address.version == 6 else 0)
        out.append(kind)
        out += _address(source.router_id) + _address(address) + struct.pack(">I", source.asn)
    return bytes(out)


def encode_path_attributes(path: Path) -> bytes:
    """A path's attributes as a RIB entry holds them (RFC 6396 4.3.4)."""
    attributes: list[PathAttribute] = [a for a in path.attributes if type(a) not in _REWRITTEN]
    attributes.append(effective_as_path(path.attributes))
    aggregator = effective_aggregator(path.attributes)
    if aggregator is not None:
        attributes.append(aggregator)
    version = key_version(path.key)
    hop = path.next_hop if path.next_hop is not None else _UNSPECIFIED[version]
    if version == 4 and hop.version == 4:
        attributes.append(NextHop(hop))
    attributes.sort(key=lambda a: a.type_code)
    out = b"".join(encode_attribute(a, _FOUR_OCTET) for a in attributes)
    if version == 4 and hop.version == 4:
        return out
    # RFC 6396 4.3.4: "only the Next Hop Address Length and Next Hop Address fields".
    value = _address(hop)
    return (
        out + bytes((_MP_REACH_FLAGS, AttrType.MP_REACH_NLRI, len(value) + 1, len(value))) + value
    )


class _AttributeCache:
    """Encoded attributes by the identity of the path's attribute tuple, its next hop and IP
    version (our own paths of both versions share one tuple and have no next hop): the paths
    of one UPDATE share the tuple, and come one after the other. Bounded: a table with a path
    of its own per prefix would otherwise keep a second copy of every set."""

    LIMIT = 4096

    def __init__(self) -> None:
        self._found: dict[tuple[int, object, int], tuple[object, bytes]] = {}
        self._last: tuple[object, object, int, bytes] = ((), None, 0, b"")

    def encode(self, path: Path, version: int) -> bytes:
        attributes, hop = path.attributes, path.next_hop
        last = self._last
        if last[0] is attributes and last[2] == version and (last[1] is hop or last[1] == hop):
            return last[3]
        key = (id(attributes), hop, version)
        found = self._found.get(key)
        if found is not None and found[0] is attributes:
            value = found[1]
        else:
            if len(self._found) >= self.LIMIT:
                self._found.clear()
            value = encode_path_attributes(path)
            self._found[key] = (attributes, value)
        self._last = (attributes, hop, version, value)
        return value


def table_dump(
    entries: Iterable[tuple[int, Sequence[Path]]],
    sources: Sequence[Source],
    *,
    collector_id: IPAddress,
    timestamp: int,
    clock_offset: float = 0.0,
    view: str = "",
    chunk_size: int = CHUNK_SIZE,
) -> Iterator[bytes]:
    """A TABLE_DUMP_V2 dump in chunks: the peer index table of `sources`, then a RIB record
    for each (prefix key, paths) entry that has paths.

    `timestamp` is the dump's time (seconds since the epoch), written in every record header;
    a RIB entry's Originated Time is when its path was learned, `Path.learned` (the
    caller's clock) plus `clock_offset` (that clock's distance to the epoch)."""
    index = {source: number for number, source in enumerate(sources)}
    out = bytearray(
        encode_record(
            timestamp,
            MrtType.TABLE_DUMP_V2,
            TableDumpSubtype.PEER_INDEX_TABLE,
            encode_peer_index_table(collector_id, view, sources),
        )
    )
    cache = _AttributeCache()
    sequence = 0
    header, entry, addpath_entry = _HEADER.pack, _ENTRY.pack, _ADDPATH_ENTRY.pack
    for key, paths in entries:
        if not paths:
            continue
        version, prefix = key_version(key), key_wire(key)
        parts = [_U32.pack(sequence & 0xFFFFFFFF), prefix, _U16.pack(len(paths))]
        # Paths with identifiers (an add-path peer's, RFC 7911): the RFC 8050 record keeps them.
        addpath = any(path.path_id for path in paths)
        for path in paths:
            number = index.get(path.source)
            if number is None:
                raise BgpUsageError(f"a path to {path.prefix} comes from {path.source}, not a peer")
            attributes = cache.encode(path, version)
            originated = max(int(path.learned + clock_offset), 0) & 0xFFFFFFFF
            if addpath:
                parts += (addpath_entry(number, originated, path.path_id, len(attributes)),)
            else:
                parts += (entry(number, originated, len(attributes)),)
            parts += (attributes,)
        body = b"".join(parts)
        sequence += 1
        subtype = _RIB_SUBTYPE[version, addpath]
        out += header(timestamp, MrtType.TABLE_DUMP_V2, subtype, len(body))
        out += body
        if len(out) >= chunk_size:
            yield bytes(out)
            out.clear()
    if out:
        yield bytes(out)


def _session_header(
    peer_asn: int, local_asn: int, peer: IPAddress, local: IPAddress | None, *, as4: bool
) -> bytes:
    """Peer AS, Local AS, Interface Index (0: not known), Address Family, Peer and Local IP
    (RFC 6396 4.4.1, 4.4.2). A local address not known yet is the unspecified one."""
    if local is None:
        local = _UNSPECIFIED[peer.version]
    if local.version != peer.version:
        raise BgpUsageError(f"peer {peer} and local address {local} are of different families")
    if as4:
        asns = struct.pack(">II", peer_asn, local_asn)
    else:
        if peer_asn > 0xFFFF or local_asn > 0xFFFF:
            raise BgpUsageError(f"AS {max(peer_asn, local_asn)} does not fit 2 octets")
        asns = struct.pack(">HH", peer_asn, local_asn)
    family = 1 if peer.version == 4 else 2
    return asns + struct.pack(">HH", 0, family) + _address(peer) + _address(local)


def encode_bgp4mp_message(
    timestamp: int,
    message: bytes,
    *,
    peer_asn: int,
    local_asn: int,
    peer: IPAddress,
    local: IPAddress | None,
    as4: bool = True,
    add_path: bool = False,
) -> bytes:
    """A BGP4MP_MESSAGE_AS4 record (RFC 6396 4.4.3) of a whole BGP message, header included,
    as the session carries it; `as4=False`: BGP4MP_MESSAGE (4.4.2), for a session without
    4-octet ASNs, whose AS_PATH is in 2 octets; `add_path`: the ADDPATH subtype of either
    (RFC 8050 3), for a session whose NLRI carry path identifiers."""
    subtype = _MESSAGE_SUBTYPE[as4, add_path]
    head = _session_header(peer_asn, local_asn, peer, local, as4=as4)
    return encode_record(timestamp, MrtType.BGP4MP, subtype, head + message)


def encode_bgp4mp_state_change(
    timestamp: int,
    old: State,
    new: State,
    *,
    peer_asn: int,
    local_asn: int,
    peer: IPAddress,
    local: IPAddress | None,
) -> bytes:
    """A BGP4MP_STATE_CHANGE_AS4 record (RFC 6396 4.4.4)."""
    head = _session_header(peer_asn, local_asn, peer, local, as4=True)
    states = struct.pack(">HH", STATE_CODES[old], STATE_CODES[new])
    return encode_record(timestamp, MrtType.BGP4MP, Bgp4mpSubtype.STATE_CHANGE_AS4, head + states)


# --- decoding (TABLE_DUMP_V2), for tests and tools -------------------------------------------


@attrs.frozen
class PeerEntry:
    router_id: IPAddress
    address: IPAddress
    asn: int


@attrs.frozen
class PeerIndexTable:
    collector_id: IPAddress
    view: str
    peers: tuple[PeerEntry, ...]


@attrs.frozen
class RibEntry:
    peer_index: int
    originated: int
    # Without the next hop: that is `next_hop`, from NEXT_HOP or the abbreviated MP_REACH_NLRI.
    attributes: tuple[PathAttribute, ...]
    next_hop: IPAddress | None
    path_id: int = 0  # RFC 8050 records only


@attrs.frozen
class RibRecord:
    timestamp: int
    sequence: int
    prefix: IPNetwork
    entries: tuple[RibEntry, ...]


class _Reader:
    """Bounds-checked reads over one MRT file; `pos` counts from its start."""

    def __init__(self, data: bytes, pos: int, end: int) -> None:
        self.data, self.pos, self.end = data, pos, end

    def take(self, size: int, what: str) -> bytes:
        if self.end - self.pos < size:
            raise MrtDecodeError(
                f"{what}: {size} octets needed, {self.end - self.pos} left", self.pos
            )
        self.pos += size
        return self.data[self.pos - size : self.pos]

    def number(self, size: int, what: str) -> int:
        return int.from_bytes(self.take(size, what), "big")

    def address(self, version: int, what: str) -> IPAddress:
        return IPAddress(self.number(4 if version == 4 else 16, what), version)


def decode_table_dump(data: bytes) -> tuple[PeerIndexTable, list[RibRecord]]:
    """A TABLE_DUMP_V2 file as `table_dump` writes it: its peer index table, then its RIB
    records (IPv4 and IPv6 unicast). MrtDecodeError says what does not fit, and where."""
    table: PeerIndexTable | None = None
    records: list[RibRecord] = []
    file = _Reader(data, 0, len(data))
    while file.pos < file.end:
        start = file.pos
        timestamp, kind, subtype, length = _HEADER.unpack(file.take(_HEADER.size, "MRT header"))
        body = _Reader(data, file.pos, file.pos + length)
        file.take(length, f"record of {length} octets")
        if kind != MrtType.TABLE_DUMP_V2:
            raise MrtDecodeError(f"record type {kind}, not TABLE_DUMP_V2", start)
        if subtype == TableDumpSubtype.PEER_INDEX_TABLE:
            table = _decode_peer_index_table(body)
        elif subtype in _RIB_OF_SUBTYPE:
            if table is None:
                raise MrtDecodeError("a RIB record before the PEER_INDEX_TABLE", start)
            version, addpath = _RIB_OF_SUBTYPE[subtype]
            records.append(_decode_rib(body, timestamp, version, addpath, len(table.peers)))
        else:
            raise MrtDecodeError(f"TABLE_DUMP_V2 subtype {subtype} is not read here", start)
        if body.pos != body.end:
            raise MrtDecodeError(f"{body.end - body.pos} octets left over in a record", body.pos)
    if table is None:
        raise MrtDecodeError("no PEER_INDEX_TABLE", 0)
    return table, records


def _decode_peer_index_table(body: _Reader) -> PeerIndexTable:
    collector = body.address(4, "collector id")
    view = body.take(body.number(2, "view name length"), "view name").decode(errors="replace")
    peers = []
    for _ in range(body.number(2, "peer count")):
        kind = body.number(1, "peer type")
        router_id = body.address(4, "peer BGP id")
        address = body.address(6 if kind & _PEER_IPV6 else 4, "peer address")
        asn = body.number(4 if kind & _PEER_AS4 else 2, "peer AS")
        peers.append(PeerEntry(router_id, address, asn))
    return PeerIndexTable(collector, view, tuple(peers))


def _decode_rib(
    body: _Reader, timestamp: int, version: int, addpath: bool, peers: int
) -> RibRecord:
    sequence = body.number(4, "sequence number")
    width = IPV4_BITS if version == 4 else IPV6_BITS
    length = body.number(1, "prefix length")
    if length > width:
        raise MrtDecodeError(f"prefix length {length} is over {width}", body.pos - 1)
    size = (length + 7) >> 3
    value = body.number(size, "prefix") << (width - (size << 3))
    if value & ((1 << (width - length)) - 1):
        raise MrtDecodeError(f"the /{length} prefix has bits past its length", body.pos - size)
    prefix = IPNetwork((value, length), version)
    entries = []
    for _ in range(body.number(2, "entry count")):
        index = body.number(2, "peer index")
        if index >= peers:
            raise MrtDecodeError(f"peer index {index}, the table has {peers} peers", body.pos - 2)
        originated = body.number(4, "originated time")
        path_id = body.number(4, "path identifier") if addpath else 0
        size = body.number(2, "attribute length")
        start = body.pos
        body.take(size, "attributes")
        attributes, next_hop = _decode_entry_attributes(body.data, start, body.pos)
        entries.append(RibEntry(index, originated, attributes, next_hop, path_id))
    return RibRecord(timestamp, sequence, prefix, tuple(entries))


def _decode_entry_attributes(
    data: bytes, pos: int, end: int
) -> tuple[tuple[PathAttribute, ...], IPAddress | None]:
    """The attributes but the next hop, and the next hop (RFC 6396 4.3.4)."""
    rest = bytearray()
    next_hop = None
    attributes = _Reader(data, pos, end)
    while attributes.pos < attributes.end:
        start = attributes.pos
        flags, code = attributes.take(2, "attribute header")
        long = flags & AttrFlag.EXTENDED_LENGTH
        value = attributes.take(
            attributes.number(2 if long else 1, "attribute length"), "attribute"
        )
        if code == AttrType.MP_REACH_NLRI:
            if not value or value[0] != len(value) - 1 or value[0] not in (4, 16, 32):
                raise MrtDecodeError("MP_REACH_NLRI is not next hop length and address", start)
            next_hop = IPAddress(int.from_bytes(value[1:17], "big"), 4 if value[0] == 4 else 6)
        else:
            rest += data[start : attributes.pos]
    decoded, problems, _ = decode_attributes(bytes(rest), 0, len(rest), _FOUR_OCTET)
    if problems:
        raise MrtDecodeError(f"path attributes: {problems[0]}", pos)
    hop = find(decoded, NextHop)
    if hop is not None:
        next_hop = hop.address
    return tuple(a for a in decoded if type(a) is not NextHop), next_hop
