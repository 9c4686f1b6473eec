"""Adj-RIB-Out: what a path looks like when sent to a given peer (RFC 4271 5 and 9.1.3), and
packing routes that share attributes into as few UPDATEs as fit (RFC 4271 9.2).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial

import attrs
from netaddr import IPAddress, IPNetwork

from sart.bgp.codes import AsPathSegmentType, WellKnownCommunity
from sart.bgp.context import SessionContext
from sart.bgp.messages import (
    As4Aggregator,
    As4Path,
    AsPath,
    AsPathSegment,
    ClusterList,
    Communities,
    LocalPref,
    MpReachNlri,
    MpUnreachNlri,
    MultiExitDisc,
    NextHop,
    OriginatorId,
    PathAttribute,
    UnknownAttribute,
    Update,
    find,
)
from sart.bgp.prefixes import (
    key_network,
    key_version,
    key_wire_length,
    prefix_key,
    prefixes_of_keys,
)
from sart.bgp.rib import DEFAULT_LOCAL_PREF, Path, Source
from sart.bgp.wire import encode_message

# Attributes that only describe the route inside one AS, or that the encoder derives.
_NOT_TO_EXTERNAL = (LocalPref, OriginatorId, ClusterList)
_NEVER_COPIED = (NextHop, MpReachNlri, MpUnreachNlri, As4Path, As4Aggregator)


@attrs.frozen(kw_only=True)
class Peer:
    """What export needs to know of the peer a route goes to, and of ourselves."""

    asn: int
    internal: bool
    local_asn: int
    local_address: IPAddress  # our address on the session: the next hop we set
    address: IPAddress | None = None


def _communities(path: Path) -> tuple[int, ...]:
    found = find(path.attributes, Communities)
    return found.values if found is not None else ()


def export(path: Path, peer: Peer) -> tuple[PathAttribute, ...] | None:
    """The attributes `path` is advertised to `peer` with, or None when it must not be:
    back to where it came from, iBGP to iBGP (no route reflection), NO_ADVERTISE, NO_EXPORT
    to an external peer, or a path that already holds the peer's AS (its loop detection would
    drop it anyway). On eBGP our AS is prepended, the next hop is ours, and LOCAL_PREF, MED
    (RFC 4271 5.1.4) and the reflection attributes stay home."""
    source: Source = path.source
    if source.address is not None and source.address == peer.address:
        return None
    if source.internal and peer.internal:
        return None
    communities = _communities(path)
    if WellKnownCommunity.NO_ADVERTISE in communities:
        return None
    if not peer.internal and WellKnownCommunity.NO_EXPORT in communities:
        return None
    as_path = path.as_path
    if not peer.internal and any(peer.asn in segment.asns for segment in as_path.segments):
        return None
    out: list[PathAttribute] = []
    has_as_path = False
    for attribute in path.attributes:
        if isinstance(attribute, _NEVER_COPIED):
            continue
        if isinstance(attribute, UnknownAttribute):
            propagated = attribute.propagated()
            if propagated is not None:
                out.append(propagated)
            continue
        if isinstance(attribute, AsPath):
            out.append(as_path if peer.internal else _prepend(as_path, peer.local_asn))
            has_as_path = True
            continue
        if not peer.internal and isinstance(attribute, _NOT_TO_EXTERNAL):
            continue
        if not peer.internal and isinstance(attribute, MultiExitDisc) and not source.local:
            continue
        out.append(attribute)
    if not has_as_path:
        out.append(_prepend(AsPath(), peer.local_asn) if not peer.internal else AsPath())
    if peer.internal and not any(isinstance(a, LocalPref) for a in out):
        out.append(LocalPref(DEFAULT_LOCAL_PREF))
    return tuple(out)


def _prepend(path: AsPath, asn: int) -> AsPath:
    """Our AS in front (RFC 4271 5.1.2 b): into the leading AS_SEQUENCE if it has room."""
    segments = path.segments
    if (
        segments
        and segments[0].type == AsPathSegmentType.AS_SEQUENCE
        and len(segments[0].asns) < 255
    ):
        first = AsPathSegment(AsPathSegmentType.AS_SEQUENCE, (asn, *segments[0].asns))
        return AsPath((first, *segments[1:]))
    return AsPath((AsPathSegment(AsPathSegmentType.AS_SEQUENCE, (asn,)), *segments))


def pack_updates(
    routes: Iterable[tuple[IPNetwork, tuple[PathAttribute, ...], IPAddress]],
    ctx: SessionContext,
) -> list[Update]:
    """UPDATEs announcing (prefix, attributes, next hop) routes, those that share attributes
    and next hop together, each as full as the session's message size allows. IPv4 routes
    with an IPv4 next hop use the NLRI field; the rest MP_REACH_NLRI."""
    groups: dict[tuple[tuple[PathAttribute, ...], IPAddress, int], list[int]] = {}
    for prefix, attributes, next_hop in routes:
        groups.setdefault((attributes, next_hop, prefix.version), []).append(prefix_key(prefix))
    return _pack(groups.items(), ctx)


def _pack(
    groups: Iterable[tuple[tuple[tuple[PathAttribute, ...], IPAddress, int], list[int]]],
    ctx: SessionContext,
) -> list[Update]:
    updates: list[Update] = []
    for (attributes, next_hop, version), keys in groups:
        updates += _fill(keys, version, partial(_announce, attributes, next_hop, version), ctx)
    return updates


def withdraw_updates(prefixes: Iterable[IPNetwork], ctx: SessionContext) -> list[Update]:
    """UPDATEs withdrawing the prefixes, as few as fit."""
    return _withdraw_keys([prefix_key(p) for p in prefixes], ctx)


def _withdraw_keys(keys: Iterable[int], ctx: SessionContext) -> list[Update]:
    by_version: dict[int, list[int]] = {}
    for key in keys:
        by_version.setdefault(key_version(key), []).append(key)
    updates: list[Update] = []
    for version, group in by_version.items():
        updates += _fill(group, version, partial(_withdraw, version), ctx)
    return updates


def _announce(
    attributes: tuple[PathAttribute, ...],
    next_hop: IPAddress,
    version: int,
    prefixes: Sequence[IPNetwork],
) -> Update:
    if version == 4 and next_hop.version == 4:
        return Update(attributes=(*attributes, NextHop(next_hop)), nlri=prefixes)
    afi = 1 if version == 4 else 2
    return Update(attributes=(MpReachNlri(afi, 1, (next_hop,), prefixes), *attributes))


def _withdraw(version: int, prefixes: Sequence[IPNetwork]) -> Update:
    if version == 4:
        return Update(withdrawn=prefixes)
    return Update(attributes=(MpUnreachNlri(2, 1, prefixes),))


def _fill(
    keys: list[int],
    version: int,
    build: Callable[[Sequence[IPNetwork]], Update],
    ctx: SessionContext,
) -> list[Update]:
    """Cut prefixes (by `prefix_key`, of one IP version) into UPDATEs that fit: the fixed
    part is measured once, each prefix costs its own octets. One octet is kept spare for the
    Extended Length header an MP attribute takes once it passes 255 octets."""
    if len(keys) == 1:
        # One prefix fits wherever its attributes do: no need to measure (a table whose
        # paths all differ is a million groups of one).
        return [build(prefixes_of_keys(keys, version))]
    limit = ctx.max_message_length - 1
    empty = len(encode_message(build(()), ctx))
    updates = []
    start, size = 0, empty
    for index, key in enumerate(keys):
        cost = key_wire_length(key)
        if index > start and size + cost > limit:
            updates.append(build(prefixes_of_keys(keys[start:index], version)))
            start, size = index, empty
        size += cost
    if start < len(keys):
        updates.append(build(prefixes_of_keys(keys[start:], version)))
    return updates


Sent = tuple[tuple[PathAttribute, ...], IPAddress]  # a prefix's route as sent: its next hop


@attrs.frozen
class OwnPathsSent:
    """What a sync changed of our own paths at one peer: the prefixes whose UPDATEs now
    carry a path we originate (`advertised`), and those whose route of ours was withdrawn or
    replaced by someone else's (`withdrawn`). The caller tells when those UPDATEs went out."""

    advertised: tuple[IPNetwork, ...] = ()
    withdrawn: tuple[IPNetwork, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.advertised or self.withdrawn)


# Exported attributes kept per AdjRibOut, by the path's attribute tuple: the RIB shares one
# tuple between every route of an UPDATE, so a table re-advertised runs `export` once per
# attribute set, not once per prefix. Emptied when full, like the codec's intern tables.
EXPORT_CACHE_LIMIT = 65536


class AdjRibOut:
    """What one peer has been sent (RFC 4271 3.2), and the UPDATEs that bring it in line
    with the Loc-RIB. Only the best path of a prefix is advertised (no add-path sending).

    `next_hops` holds our own address per IP version on this session: the next hop of
    everything sent over eBGP and of our own paths without one, and of iBGP routes that we
    originate. Routes learned over eBGP keep their next hop towards iBGP peers (RFC 4271
    5.1.3). A prefix of a family not negotiated, or with no usable next hop, is not sent.
    Prefixes are given and kept by `sart.bgp.prefixes.prefix_key`."""

    def __init__(
        self,
        peer: Peer,
        ctx: SessionContext,
        families: frozenset[int],
        next_hops: dict[int, IPAddress],
    ) -> None:
        self.peer = peer
        self.ctx = ctx
        self.versions = families  # IP versions negotiated: 4, 6
        self.next_hops = next_hops
        self.sent: dict[int, Sent] = {}
        self.own: set[int] = set()  # of `sent`, the routes that are our own paths
        self._exported: dict[int, tuple[Path, tuple[PathAttribute, ...] | None]] = {}

    def _export(self, path: Path) -> tuple[PathAttribute, ...] | None:
        cached = self._exported.get(id(path.attributes))
        if cached is not None:
            seen, attributes = cached
            # The same tuple object (alive: `seen` holds it) from the same source.
            if seen.attributes is path.attributes and seen.source is path.source:
                return attributes
        attributes = export(path, self.peer)
        if len(self._exported) >= EXPORT_CACHE_LIMIT:
            self._exported.clear()
        self._exported[id(path.attributes)] = (path, attributes)
        return attributes

    def _route(self, version: int, path: Path | None) -> Sent | None:
        if path is None or version not in self.versions:
            return None
        attributes = self._export(path)
        if attributes is None:
            return None
        own = self.next_hops.get(version)
        keep = path.next_hop if path.source.local or self.peer.internal else None
        next_hop = keep if keep is not None and keep.version == version else own
        return None if next_hop is None else (attributes, next_hop)

    def sync(self, entries: Iterable[tuple[int, Path | None]]) -> list[Update]:
        """The UPDATEs (withdrawals first) that make the peer hold, for each prefix (by
        key), what `entries` says is now best (None: no route)."""
        return self.sync_own(entries)[0]

    def sync_own(
        self, entries: Iterable[tuple[int, Path | None]]
    ) -> tuple[list[Update], OwnPathsSent]:
        """`sync`, and what those UPDATEs change of our own paths at the peer."""
        # Routes grouped by the identity of what they are sent with: the RIB and the export
        # cache share one attribute tuple between the routes of an UPDATE, so equal routes
        # are the same objects, and hashing a million attribute tuples is saved.
        groups: dict[tuple[int, int], tuple[Sent, int, list[int]]] = {}
        withdraw: list[int] = []
        own, sent, advertised, withdrawn = self.own, self.sent, [], []
        for key, best in entries:
            version = key_version(key)
            want = self._route(version, best)
            have = sent.get(key)
            mine = want is not None and best is not None and best.source.local
            if mine != (key in own):
                if mine:
                    own.add(key)
                    advertised.append(key_network(key))
                else:
                    own.discard(key)
                    withdrawn.append(key_network(key))
            if want == have:
                continue
            if want is None:
                del sent[key]
                withdraw.append(key)
                continue
            identity = (id(want[0]), id(want[1]))  # attributes, next hop
            group = groups.get(identity)
            if group is None:
                groups[identity] = (want, version, [key])
            else:
                want = group[0]  # the same route: one tuple kept for all of them
                group[2].append(key)
            sent[key] = want
        updates = _withdraw_keys(withdraw, self.ctx) + _pack(
            (((*want, version), keys) for want, version, keys in groups.values()), self.ctx
        )
        return updates, OwnPathsSent(tuple(advertised), tuple(withdrawn))

    def routes(self) -> Iterator[tuple[IPNetwork, tuple[PathAttribute, ...], IPAddress]]:
        """What the peer has been sent: (prefix, attributes, next hop) of each route."""
        for key, (attributes, next_hop) in self.sent.items():
            yield key_network(key), attributes, next_hop

    def __len__(self) -> int:
        return len(self.sent)
