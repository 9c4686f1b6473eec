"""MRT (RFC 6396), sans-IO: RIB dumps (TABLE_DUMP_V2) and logs of BGP messages (BGP4MP).

A dump is a PEER_INDEX_TABLE, then one RIB_IPV4_UNICAST or RIB_IPV6_UNICAST record per
prefix holding one RIB entry per path (RFC 6396 4.3). `table_dump` hands it out in chunks of
about `chunk_size` octets, so a million-prefix table never becomes one bytes object.

Path attributes are written as an UPDATE carries them (sart.bgp.wire), with what RFC 6396
4.3.4 asks of a RIB entry: ASNs in 4 octets (the path a route really took, RFC 6793 4.2.3,
so no AS4_PATH or AS4_AGGREGATOR), and the next hop of a route that is not an IPv4 route
with an IPv4 next hop in an MP_REACH_NLRI cut down to its next hop length and address.
A route whose next hop is "our address on each session" (our own, unset) shows the
unspecified address, as routers show their own routes.

BGP4MP records (RFC 6396 4.4) carry one whole BGP message, or a session state change,
between a peer and us.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable, Iterator, Sequence

from netaddr import IPAddress

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
)
from sart.bgp.prefixes import IPV4_BITS, IPV6_BITS, key_version
from sart.bgp.rib import Path, Source
from sart.bgp.wire.attributes import encode_attribute
from sart.errors import BgpUsageError

CHUNK_SIZE = 1 << 18
_FOUR_OCTET = SessionContext(four_octet_as=True)
_UNSPECIFIED = {4: IPAddress("0.0.0.0"), 6: IPAddress("::")}
_V4_MASK = (1 << IPV4_BITS) - 1
_V6_MASK = (1 << IPV6_BITS) - 1
# Left out of a RIB entry: the 4-octet AS_PATH and AGGREGATOR replace the AS4_ ones, and
# the next hop is written from the path's own.
_REWRITTEN = frozenset((AsPath, As4Path, Aggregator, As4Aggregator, NextHop))
_MP_REACH_FLAGS = int(AttrFlag.OPTIONAL)
_HEADER = struct.Struct(">IHHI")


class MrtType(enum.IntEnum):
    """RFC 6396 4: the types sart writes."""

    TABLE_DUMP_V2 = 13  # 4.3
    BGP4MP = 16  # 4.4


class TableDumpSubtype(enum.IntEnum):
    """RFC 6396 4.3."""

    PEER_INDEX_TABLE = 1
    RIB_IPV4_UNICAST = 2
    RIB_IPV6_UNICAST = 4


class Bgp4mpSubtype(enum.IntEnum):
    """RFC 6396 4.4."""

    MESSAGE = 1  # 2-octet ASNs: a message of a session without 4-octet ASNs
    MESSAGE_AS4 = 4
    STATE_CHANGE_AS4 = 5


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
_RIB_SUBTYPE = {
    4: TableDumpSubtype.RIB_IPV4_UNICAST,
    6: TableDumpSubtype.RIB_IPV6_UNICAST,
}


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


def _prefix_octets(key: int) -> tuple[int, bytes]:
    """(IP version, the prefix as RFC 6396 4.3.2 writes it: length, then its octets)."""
    if key_version(key) == 4:
        length, bits = key >> IPV4_BITS, key & _V4_MASK
        version = 4
    else:
        length, bits = key >> IPV6_BITS & 0xFF, key & _V6_MASK
        version = 6
    size = (length + 7) >> 3
    return version, bytes((length,)) + (bits << ((size << 3) - length)).to_bytes(size, "big")


class _AttributeCache:
    """Encoded attributes by the identity of the path's attribute tuple, its next hop and
    its IP version (our own paths of both versions share one tuple and have no next hop):
    the paths of one UPDATE share one tuple. Bounded: a table with a path of its own per
    prefix would otherwise keep a second copy of every attribute set."""

    LIMIT = 4096

    def __init__(self) -> None:
        self._found: dict[tuple[int, object, int], tuple[tuple[PathAttribute, ...], bytes]] = {}

    def encode(self, path: Path) -> bytes:
        key = (id(path.attributes), path.next_hop, key_version(path.key))
        found = self._found.get(key)
        if found is not None and found[0] is path.attributes:
            return found[1]
        if len(self._found) >= self.LIMIT:
            self._found.clear()
        value = encode_path_attributes(path)
        self._found[key] = (path.attributes, value)
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
    header = _HEADER.pack
    for key, paths in entries:
        if not paths:
            continue
        version, prefix = _prefix_octets(key)
        body = bytearray(struct.pack(">I", sequence & 0xFFFFFFFF))
        body += prefix
        body += struct.pack(">H", len(paths))
        for path in paths:
            number = index.get(path.source)
            if number is None:
                raise BgpUsageError(f"a path to {path.prefix} comes from {path.source}, not a peer")
            attributes = cache.encode(path)
            originated = max(int(path.learned + clock_offset), 0) & 0xFFFFFFFF
            body += struct.pack(">HIH", number, originated, len(attributes))
            body += attributes
        sequence += 1
        out += header(timestamp, MrtType.TABLE_DUMP_V2, _RIB_SUBTYPE[version], len(body))
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
) -> bytes:
    """A BGP4MP_MESSAGE_AS4 record (RFC 6396 4.4.3) of a whole BGP message, header included,
    as the session carries it; `as4=False`: BGP4MP_MESSAGE (4.4.2), for a session without
    4-octet ASNs, whose AS_PATH is in 2 octets."""
    subtype = Bgp4mpSubtype.MESSAGE_AS4 if as4 else Bgp4mpSubtype.MESSAGE
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
