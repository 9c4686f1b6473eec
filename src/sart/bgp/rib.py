"""Routes and the BGP decision process (RFC 4271 9.1), pure.

`Rib` keeps each source's routes (the Adj-RIBs-In and the locally originated ones) and the
Loc-RIB: for every prefix the best path and, when multipath is on, the paths equal to it up
to the eBGP/iBGP step, for ECMP. Every change returns what changed in the Loc-RIB, so the
speaker knows what to advertise and the agent what to install.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

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


@attrs.frozen(order=False)
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


_Key = tuple[IPNetwork, int]


class Rib:
    """Adj-RIBs-In (per source) and the Loc-RIB."""

    def __init__(
        self, *, local_asn: int | None = None, multipath: bool = False, relax_as: bool = False
    ) -> None:
        self.local_asn = local_asn  # paths holding it are loops and never selected
        self.multipath = multipath
        self.relax_as = relax_as
        self._paths: dict[Source, dict[_Key, Path]] = {}
        self._by_prefix: dict[IPNetwork, dict[tuple[Source, int], Path]] = {}
        self._loc: dict[IPNetwork, tuple[Path, ...]] = {}
        self._stale: dict[Source, set[_Key]] = {}

    def _select(self, prefix: IPNetwork) -> Change | None:
        candidates = self._by_prefix.get(prefix, {})
        best = best_path(candidates.values())
        if best is None:
            after: tuple[Path, ...] = ()
        elif self.multipath:
            after = multipath(candidates.values(), best, relax_as=self.relax_as)
        else:
            after = (best,)
        before = self._loc.get(prefix, ())
        if after == before:
            return None
        if after:
            self._loc[prefix] = after
        else:
            del self._loc[prefix]
        return Change(prefix, before, after)

    def _put(self, path: Path) -> None:
        self._paths.setdefault(path.source, {})[(path.prefix, path.path_id)] = path
        self._by_prefix.setdefault(path.prefix, {})[(path.source, path.path_id)] = path

    def _drop(self, source: Source, prefix: IPNetwork, path_id: int) -> bool:
        own = self._paths.get(source, {})
        if own.pop((prefix, path_id), None) is None:
            return False
        others = self._by_prefix[prefix]
        del others[(source, path_id)]
        if not others:
            del self._by_prefix[prefix]
        return True

    def _reselect(self, prefixes: Iterable[IPNetwork]) -> list[Change]:
        changes = []
        for prefix in dict.fromkeys(prefixes):
            change = self._select(prefix)
            if change is not None:
                changes.append(change)
        return changes

    def announce(self, paths: Iterable[Path]) -> list[Change]:
        """Add or replace paths (a path replaces the one with its source, prefix and id)."""
        touched = []
        for path in paths:
            stale = self._stale.get(path.source)
            if stale:
                stale.discard((path.prefix, path.path_id))
            self._put(path)
            touched.append(path.prefix)
        return self._reselect(touched)

    def withdraw(self, source: Source, prefixes: Iterable[tuple[IPNetwork, int]]) -> list[Change]:
        """Remove the source's paths to these (prefix, path id) pairs; unknown ones are
        ignored, as RFC 4271 9 asks of withdrawals of routes never announced."""
        touched = [prefix for prefix, path_id in prefixes if self._drop(source, prefix, path_id)]
        return self._reselect(touched)

    def apply_update(self, source: Source, update: Update) -> list[Change]:
        """An UPDATE from a peer: withdrawals first, then the announced routes, every family
        (RFC 4271 9, RFC 4760)."""
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
        for prefix, path_id in _with_ids(update.nlri, update.nlri_path_ids):
            new.append(Path(prefix, source, next_hop, shared, path_id))
        for attribute in update.attributes:
            if isinstance(attribute, MpUnreachNlri):
                gone += _with_ids(attribute.withdrawn, attribute.path_ids)
            elif isinstance(attribute, MpReachNlri):
                hop = attribute.next_hops[0] if attribute.next_hops else None
                for prefix, path_id in _with_ids(attribute.nlri, attribute.path_ids):
                    new.append(Path(prefix, source, hop, shared, path_id))
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
        return self.withdraw(source, sorted(self._stale.pop(source, set()), key=_order))

    def drop_source(self, source: Source) -> list[Change]:
        """Every path of a source, gone (its session went down)."""
        keys = list(self._paths.get(source, {}))
        return self.withdraw(source, keys)

    def paths_from(self, source: Source) -> Iterator[Path]:
        """A source's Adj-RIB-In."""
        return iter(self._paths.get(source, {}).values())

    def lookup(self, prefix: IPNetwork) -> tuple[Path, ...]:
        """The Loc-RIB entry: best path first, then its multipath peers."""
        return self._loc.get(prefix, ())

    def __iter__(self) -> Iterator[tuple[IPNetwork, tuple[Path, ...]]]:
        return iter(self._loc.items())

    def __len__(self) -> int:
        return len(self._loc)


def _order(key: _Key) -> tuple[int, int, int, int]:
    prefix, path_id = key
    return prefix.version, prefix.value, prefix.prefixlen, path_id


def _with_ids(
    prefixes: tuple[IPNetwork, ...], path_ids: tuple[int, ...]
) -> list[tuple[IPNetwork, int]]:
    return list(zip(prefixes, path_ids or (0,) * len(prefixes), strict=True))
