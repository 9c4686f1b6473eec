"""Routes and the BGP decision process (RFC 4271 9.1), pure.

`Rib` keeps each source's routes (the Adj-RIBs-In and the locally originated ones) and the
Loc-RIB: for every prefix the best path and, when multipath is on, the paths equal to it up
to the eBGP/iBGP step, for ECMP. Every change returns what changed in the Loc-RIB, so the
speaker knows what to advertise and the agent what to install.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable, Iterator

import attrs
from netaddr import IPAddress, IPNetwork

from sart.bgp.as4 import effective_as_path
from sart.bgp.messages import (
    AsPath,
    ClusterList,
    LocalPref,
    MpReachNlri,
    MpUnreachNlri,
    MultiExitDisc,
    NextHop,
    Origin,
    OriginatorId,
    PathAttribute,
    Update,
    find,
)

DEFAULT_LOCAL_PREF = 100  # RFC 4271 5.1.5 leaves it to configuration; 100 is common practice
# Attributes that only mean something inside one AS, dropped when received over eBGP.
_INTERNAL_ONLY = (LocalPref, OriginatorId, ClusterList)


class NextHopProblem(enum.Enum):
    """Why a received route's next hop cannot be used (RFC 4271 5.1.3, 6.3)."""

    UNSPECIFIED = "unspecified address"  # 0.0.0.0/8 (RFC 1122 3.2.1.3), ::
    LOOPBACK = "loopback address"  # 127/8, ::1
    MULTICAST = "multicast address"  # 224/4, ff00::/8
    RESERVED = "reserved (class E) address"  # 240/4 (RFC 1112 4)
    BROADCAST = "limited broadcast address"  # 255.255.255.255 (RFC 919 7)
    OURS = "our own address"  # "MUST NOT be the IP address of the receiving speaker"


_V4_MULTICAST = 0xE0 << 24
_V4_RESERVED = 0xF0 << 24
_V4_BROADCAST = 2**32 - 1
_V6_LOOPBACK = 1


def next_hop_problem(
    address: IPAddress,
    local_addresses: Collection[IPAddress] = (),
    *,
    loopback_session: bool = False,
) -> NextHopProblem | None:
    """What is wrong with a received NEXT_HOP (or MP_REACH_NLRI next hop), None when nothing.

    RFC 4271 6.3: a NEXT_HOP must be "a valid IP host address" and must not be "the IP
    address of the receiving speaker" (`local_addresses`: ours on that session). IPv4
    link-local addresses (169.254/16) pass: RFC 3927 makes them valid host addresses on a
    link, and directly connected eBGP sessions are numbered from them (cloud interconnects
    commonly are), so their routes must keep working. IPv6 link-local next hops pass too
    (RFC 2545 3: the global one comes first; unnumbered sessions send only one).
    A loopback next hop is fine on a `loopback_session` (the peer's address is a loopback
    one: it runs on this host, where 127/8 and ::1 reach it)."""
    value = int(address)
    if address.version == 4:
        if value >> 24 == 0:
            return NextHopProblem.UNSPECIFIED
        if value >> 24 == 127 and not loopback_session:
            return NextHopProblem.LOOPBACK
        if value == _V4_BROADCAST:
            return NextHopProblem.BROADCAST
        if value & _V4_RESERVED == _V4_RESERVED:
            return NextHopProblem.RESERVED
        if value & _V4_RESERVED == _V4_MULTICAST:
            return NextHopProblem.MULTICAST
    else:
        if value == 0:
            return NextHopProblem.UNSPECIFIED
        if value == _V6_LOOPBACK and not loopback_session:
            return NextHopProblem.LOOPBACK
        if value >> 120 == 0xFF:
            return NextHopProblem.MULTICAST
    if address in local_addresses:
        return NextHopProblem.OURS
    return None


@attrs.frozen
class Ignored:
    """Routes of an UPDATE left out of the RIB: their next hop failed the check."""

    next_hop: IPAddress
    problem: NextHopProblem
    prefixes: tuple[IPNetwork, ...]


@attrs.frozen(order=False, cache_hash=True)
class Source:
    """Where a path comes from: a peer (address, AS, BGP identifier, iBGP or not), or this
    speaker itself (`LOCAL`)."""

    address: IPAddress | None
    asn: int
    router_id: IPAddress
    internal: bool = False

    @property
    def local(self) -> bool:
        return self.address is None


@attrs.frozen
class Path:
    prefix: IPNetwork
    source: Source
    next_hop: IPAddress | None
    attributes: tuple[PathAttribute, ...]
    path_id: int = 0
    # When it was learned (the caller's clock): shown as its age, never compared.
    learned: float = attrs.field(default=0.0, eq=False)

    @property
    def local_pref(self) -> int:
        value = find(self.attributes, LocalPref)
        return DEFAULT_LOCAL_PREF if value is None else value.value

    @property
    def as_path(self) -> AsPath:
        return effective_as_path(self.attributes)

    @property
    def origin(self) -> int:
        value = find(self.attributes, Origin)
        return 2 if value is None else value.value

    @property
    def med(self) -> int:
        value = find(self.attributes, MultiExitDisc)
        return 0 if value is None else value.value  # RFC 4271 9.1.2.2 c

    @property
    def neighbor_as(self) -> int | None:
        """The first AS of the path: the AS MED comparisons are scoped to."""
        return next(self.as_path.asns(), None)

    @property
    def router_id(self) -> int:
        """The originator id if reflected, else the peer's BGP identifier (RFC 4456 9)."""
        originator = find(self.attributes, OriginatorId)
        address = self.source.router_id if originator is None else originator.address
        return int(address)

    @property
    def cluster_list_length(self) -> int:
        clusters = find(self.attributes, ClusterList)
        return 0 if clusters is None else len(clusters.ids)


def _rank(path: Path) -> tuple[int, ...]:
    """The steps of RFC 4271 9.1.2.2 that compare one path on its own, as a sort key (lower
    wins): local origination first, then LOCAL_PREF, AS path length, ORIGIN."""
    return (0 if path.source.local else 1, -path.local_pref, path.as_path.length, path.origin)


def _tiebreak(path: Path) -> tuple[int, ...]:
    """The last steps: eBGP over iBGP, lowest router id, shortest cluster list, lowest peer
    address (RFC 4271 9.1.2.2 d, f, g; RFC 4456 9)."""
    peer = path.source.address
    return (
        1 if path.source.internal else 0,
        path.router_id,
        path.cluster_list_length,
        int(peer) if peer is not None else 0,
    )


def best_path(paths: Iterable[Path]) -> Path | None:
    """The best of the paths to one prefix (RFC 4271 9.1.2.2), or None for none."""
    candidates = list(paths)
    if not candidates:
        return None
    top = min(_rank(p) for p in candidates)
    candidates = [p for p in candidates if _rank(p) == top]
    # c) MED: only between paths from the same neighbouring AS
    by_neighbor: dict[int | None, int] = {}
    for path in candidates:
        lowest = by_neighbor.get(path.neighbor_as)
        by_neighbor[path.neighbor_as] = path.med if lowest is None else min(lowest, path.med)
    candidates = [p for p in candidates if p.med == by_neighbor[p.neighbor_as]]
    return min(candidates, key=_tiebreak)


def multipath(paths: Iterable[Path], best: Path, *, relax_as: bool = False) -> tuple[Path, ...]:
    """The paths equal to `best` up to the eBGP/iBGP step, for ECMP: same LOCAL_PREF, AS path
    length, ORIGIN and MED, the same kind of peer, and (unless relax_as, FRR's
    multipath-relax) the same neighbouring AS. `best` comes first."""
    equal = [
        p
        for p in paths
        if p is not best
        and _rank(p) == _rank(best)
        and p.med == best.med
        and p.source.internal == best.source.internal
        and (relax_as or p.neighbor_as == best.neighbor_as)
        and p.next_hop != best.next_hop
    ]
    return (best, *sorted(equal, key=_tiebreak))


@attrs.frozen
class Change:
    """The Loc-RIB entry of a prefix before and after: () when there was or is no route."""

    prefix: IPNetwork
    before: tuple[Path, ...]
    after: tuple[Path, ...]


def prefix_key(prefix: IPNetwork) -> int:
    """A prefix as one int, the RIB's dictionary key: netaddr's own hash and equality cost a
    microsecond each, and a full table does millions of lookups."""
    key: int = (prefix.value << 8 | prefix.prefixlen) << 1 | (prefix.version == 6)
    return key


def _path_key(prefix: IPNetwork, path_id: int) -> int:
    return prefix_key(prefix) << 32 | path_id


class Rib:
    """Adj-RIBs-In (per source) and the Loc-RIB.

    Memory matters at a million routes: a source's paths sit in one dict under an int key,
    the candidates for a prefix in a short list, the Loc-RIB entry in a tuple."""

    def __init__(
        self, *, local_asn: int | None = None, multipath: bool = False, relax_as: bool = False
    ) -> None:
        self.local_asn = local_asn  # paths holding it are loops and never selected
        self.multipath = multipath
        self.relax_as = relax_as
        self._paths: dict[Source, dict[int, Path]] = {}
        self._candidates: dict[int, list[Path]] = {}
        self._loc: dict[int, tuple[Path, ...]] = {}
        self._stale: dict[Source, set[int]] = {}

    def _select(self, key: int, prefix: IPNetwork) -> Change | None:
        candidates = self._candidates.get(key, ())
        after: tuple[Path, ...]
        if len(candidates) == 1:
            after = (candidates[0],)
        elif not candidates:
            after = ()
        else:
            best = best_path(candidates)
            assert best is not None
            if self.multipath:
                after = multipath(candidates, best, relax_as=self.relax_as)
            else:
                after = (best,)
        before = self._loc.get(key, ())
        if after == before:
            return None
        if after:
            self._loc[key] = after
        else:
            del self._loc[key]
        return Change(prefix, before, after)

    def _put(self, path: Path) -> int:
        key = prefix_key(path.prefix)
        own = self._paths.get(path.source)
        if own is None:
            own = self._paths[path.source] = {}
        own[key << 32 | path.path_id] = path
        candidates = self._candidates.get(key)
        if candidates is None:
            self._candidates[key] = [path]
        else:
            for index, old in enumerate(candidates):
                if old.source == path.source and old.path_id == path.path_id:
                    candidates[index] = path
                    break
            else:
                candidates.append(path)
        return key

    def _drop(self, source: Source, prefix: IPNetwork, path_id: int) -> int | None:
        key = prefix_key(prefix)
        own = self._paths.get(source)
        if own is None or own.pop(key << 32 | path_id, None) is None:
            return None
        candidates = self._candidates[key]
        candidates[:] = [p for p in candidates if p.source != source or p.path_id != path_id]
        if not candidates:
            del self._candidates[key]
        return key

    def _reselect(self, touched: dict[int, IPNetwork]) -> list[Change]:
        changes = []
        for key, prefix in touched.items():
            change = self._select(key, prefix)
            if change is not None:
                changes.append(change)
        return changes

    def announce(self, paths: Iterable[Path]) -> list[Change]:
        """Add or replace paths (a path replaces the one with its source, prefix and id)."""
        touched: dict[int, IPNetwork] = {}
        stale_sets = self._stale
        for path in paths:
            key = self._put(path)
            if stale_sets:
                stale = stale_sets.get(path.source)
                if stale:
                    stale.discard(key << 32 | path.path_id)
            touched[key] = path.prefix
        return self._reselect(touched)

    def withdraw(self, source: Source, prefixes: Iterable[tuple[IPNetwork, int]]) -> list[Change]:
        """Remove the source's paths to these (prefix, path id) pairs; unknown ones are
        ignored, as RFC 4271 9 asks of withdrawals of routes never announced."""
        touched: dict[int, IPNetwork] = {}
        for prefix, path_id in prefixes:
            key = self._drop(source, prefix, path_id)
            if key is not None:
                touched[key] = prefix
        return self._reselect(touched)

    def apply_update(
        self,
        source: Source,
        update: Update,
        now: float = 0.0,
        *,
        local_addresses: Collection[IPAddress] = (),
        ignored: list[Ignored] | None = None,
    ) -> list[Change]:
        """An UPDATE from a peer: withdrawals first, then the announced routes, every family
        (RFC 4271 9, RFC 4760).

        Routes whose next hop fails `next_hop_problem` are ignored (RFC 4271 6.3: logged,
        no NOTIFICATION, the session stays), and appended to `ignored` when given. Being
        newer than what the peer sent before for those prefixes, they still replace it: the
        earlier path is withdrawn (implicit withdrawal, RFC 4271 3.1), as FRR does."""
        gone: list[tuple[IPNetwork, int]] = list(
            _with_ids(update.withdrawn, update.withdrawn_path_ids)
        )
        new: list[Path] = []
        shared = tuple(
            a
            for a in update.attributes
            if not isinstance(a, MpReachNlri | MpUnreachNlri)
            # RFC 4271 5.1.5, RFC 7606 7.5, 7.9, 7.10: these mean nothing from another AS.
            and not (not source.internal and isinstance(a, _INTERNAL_ONLY))
        )
        looped = self.local_asn is not None and self.local_asn in effective_as_path(shared).asns()
        next_hop = next((a.address for a in update.attributes if isinstance(a, NextHop)), None)
        reach: list[tuple[IPAddress | None, tuple[IPNetwork, ...], tuple[int, ...]]] = []
        if update.nlri:
            reach.append((next_hop, update.nlri, update.nlri_path_ids))
        for attribute in update.attributes:
            if isinstance(attribute, MpUnreachNlri):
                gone += _with_ids(attribute.withdrawn, attribute.path_ids)
            elif isinstance(attribute, MpReachNlri) and attribute.nlri:
                hop = attribute.next_hops[0] if attribute.next_hops else None
                reach.append((hop, attribute.nlri, attribute.path_ids))
        loopback = source.address is not None and source.address.is_loopback()
        for hop, prefixes, path_ids in reach:
            problem = (
                None
                if hop is None
                else next_hop_problem(hop, local_addresses, loopback_session=loopback)
            )
            if problem is not None:
                assert hop is not None
                gone += _with_ids(prefixes, path_ids)
                if ignored is not None:
                    ignored.append(Ignored(hop, problem, prefixes))
                continue
            for prefix, path_id in _with_ids(prefixes, path_ids):
                new.append(Path(prefix, source, hop, shared, path_id, now))
        if looped:
            # RFC 4271 9.1.2: a path through our own AS is unusable; it replaces (withdraws)
            # what the source had for those prefixes.
            gone += [(path.prefix, path.path_id) for path in new]
            new = []
        return self.withdraw(source, gone) + self.announce(new)

    def mark_stale(self, source: Source) -> None:
        """Graceful restart, receiving side (RFC 4724 4.2): the peer restarts, its paths stay
        in use but are stale until it announces them again."""
        self._stale[source] = set(self._paths.get(source, {}))

    def sweep_stale(self, source: Source) -> list[Change]:
        """The peer sent End-of-RIB (or its restart time ran out): the paths it did not
        announce again are gone."""
        stale = self._stale.pop(source, set())
        own = self._paths.get(source, {})
        gone = sorted((own[k] for k in stale if k in own), key=_order)
        return self.withdraw(source, [(path.prefix, path.path_id) for path in gone])

    def drop_source(self, source: Source) -> list[Change]:
        """Every path of a source, gone (its session went down)."""
        self._stale.pop(source, None)
        own = self._paths.get(source, {})
        return self.withdraw(source, [(path.prefix, path.path_id) for path in own.values()])

    def paths_from(self, source: Source) -> Iterator[Path]:
        """A source's Adj-RIB-In."""
        return iter(self._paths.get(source, {}).values())

    def lookup(self, prefix: IPNetwork) -> tuple[Path, ...]:
        """The Loc-RIB entry: best path first, then its multipath peers."""
        return self._loc.get(prefix_key(prefix), ())

    def longest_match(self, address: IPAddress) -> tuple[Path, ...]:
        """The Loc-RIB entry of the most specific prefix covering `address`, () for none."""
        width = 32 if address.version == 4 else 128
        value = int(address)
        for length in range(width, -1, -1):
            network = IPNetwork(
                (value >> (width - length) << (width - length), length), address.version
            )
            paths = self._loc.get(prefix_key(network))
            if paths:
                return paths
        return ()

    def candidates(self, prefix: IPNetwork) -> tuple[Path, ...]:
        """Every path to `prefix`, from every source (selected or not)."""
        return tuple(self._candidates.get(prefix_key(prefix), ()))

    def is_stale(self, path: Path) -> bool:
        """Kept for a restarting peer and not announced again yet (graceful restart)."""
        stale = self._stale.get(path.source)
        if not stale:
            return False
        return (prefix_key(path.prefix) << 32 | path.path_id) in stale

    def count(self, source: Source) -> int:
        """How many paths the source has (its Adj-RIB-In size)."""
        return len(self._paths.get(source, {}))

    def count_version(self, version: int) -> int:
        """Loc-RIB prefixes of one IP version (4 or 6)."""
        six = sum(key & 1 for key in self._loc)
        return six if version == 6 else len(self._loc) - six

    def reselect_all(self) -> list[Change]:
        """Run the decision process again for every prefix (multipath settings changed)."""
        touched = {key: paths[0].prefix for key, paths in self._candidates.items() if paths}
        return self._reselect(touched)

    def __iter__(self) -> Iterator[tuple[IPNetwork, tuple[Path, ...]]]:
        return ((paths[0].prefix, paths) for paths in self._loc.values())

    def __len__(self) -> int:
        return len(self._loc)


def _order(path: Path) -> tuple[int, int, int, int]:
    prefix = path.prefix
    return prefix.version, prefix.value, prefix.prefixlen, path.path_id


def _with_ids(
    prefixes: tuple[IPNetwork, ...], path_ids: tuple[int, ...]
) -> list[tuple[IPNetwork, int]]:
    return list(zip(prefixes, path_ids or (0,) * len(prefixes), strict=True))
