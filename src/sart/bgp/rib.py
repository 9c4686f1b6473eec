"""Routes and the BGP decision process (RFC 4271 9.1), pure.

`Rib` keeps each source's routes (the Adj-RIBs-In and the locally originated ones) and the
Loc-RIB: for every prefix the best path and, when multipath is on, the paths equal to it up
to the eBGP/iBGP step, for ECMP. Every change returns what changed in the Loc-RIB, so the
speaker knows what to advertise and the agent what to install.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable, Iterator, Sequence
from typing import NamedTuple, cast

import attrs
from netaddr import IPAddress, IPNetwork

from sart.bgp.as4 import effective_as_path
from sart.bgp.codes import AttrType
from sart.bgp.frozen import new_tuple
from sart.bgp.messages import (
    As4Path,
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
    PlainUpdate,
    Update,
    find,
)
from sart.bgp.prefixes import (
    Prefixes,
    key_network,
    key_of,
    key_parts,
    key_version,
    prefix_key,
)

DEFAULT_LOCAL_PREF = 100  # RFC 4271 5.1.5 leaves it to configuration; 100 is common practice
# Attributes that only mean something inside one AS, dropped when received over eBGP.
_INTERNAL_ONLY = frozenset((LocalPref, OriginatorId, ClusterList))
_INTERNAL_ONLY_CODES = (  # the same, as bits of PlainUpdate.seen
    1 << AttrType.LOCAL_PREF | 1 << AttrType.ORIGINATOR_ID | 1 << AttrType.CLUSTER_LIST
)


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
    prefixes: Sequence[IPNetwork]


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


class Path(NamedTuple):
    """A route to one prefix from one source.

    A tuple, not an attrs class: the RIB makes one per route, a million for a full table,
    and a tuple is made in a third of the time a frozen attrs instance takes. The prefix is
    held as its `prefix_key` (a million IPNetwork objects would cost a tenth of a gigabyte);
    `prefix` makes the network when asked."""

    key: int  # sart.bgp.prefixes.prefix_key of the prefix
    source: Source
    next_hop: IPAddress | None
    attributes: tuple[PathAttribute, ...]
    path_id: int = 0
    # When it was learned (the caller's clock): shown as its age, never compared.
    learned: float = 0.0

    @classmethod
    def to(
        cls,
        prefix: IPNetwork,
        source: Source,
        next_hop: IPAddress | None,
        attributes: tuple[PathAttribute, ...],
        path_id: int = 0,
        learned: float = 0.0,
    ) -> Path:
        return cls(prefix_key(prefix), source, next_hop, attributes, path_id, learned)

    def __eq__(self, other: object) -> bool:
        return type(other) is Path and self[:5] == other[:5]

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(self[:5])

    def __repr__(self) -> str:
        hop = "" if self.next_hop is None else f" via {self.next_hop}"
        path_id = f" id {self.path_id}" if self.path_id else ""
        return f"Path({self.prefix}{path_id}{hop} from {self.source}, {self.attributes})"

    @property
    def prefix(self) -> IPNetwork:
        return key_network(self.key)

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


class Change(NamedTuple):
    """The Loc-RIB entry of a prefix before and after: () when there was or is no route."""

    key: int  # sart.bgp.prefixes.prefix_key of the prefix
    before: tuple[Path, ...]
    after: tuple[Path, ...]

    @property
    def prefix(self) -> IPNetwork:
        return key_network(self.key)

    def __repr__(self) -> str:
        return f"Change({self.prefix}, before={self.before}, after={self.after})"


# A Loc-RIB entry or a prefix's candidates: one Path on its own (nearly every prefix has
# one), several in a tuple (Loc-RIB, multipath) or a list (candidates).
_Entry = Path | tuple[Path, ...]
_PathKey = int | tuple[int, int]  # a prefix key, or (prefix key, path id) for a non-zero id


def _as_tuple(entry: _Entry | None) -> tuple[Path, ...]:
    if entry is None:
        return ()
    if type(entry) is Path:
        return (entry,)
    return entry  # type: ignore[return-value]


def _path_key(key: int, path_id: int) -> _PathKey:
    return (key, path_id) if path_id else key


class Rib:
    """Adj-RIBs-In (per source) and the Loc-RIB.

    Memory matters at a million routes: a source's paths sit in one dict under an int key,
    a prefix's candidates and its Loc-RIB entry are one Path when there is one (a list or a
    tuple when there are more), and the same int object keys all three."""

    def __init__(
        self, *, local_asn: int | None = None, multipath: bool = False, relax_as: bool = False
    ) -> None:
        self.local_asn = local_asn  # paths holding it are loops and never selected
        self.multipath = multipath
        self.relax_as = relax_as
        self._paths: dict[Source, dict[_PathKey, Path]] = {}
        self._candidates: dict[int, Path | list[Path]] = {}
        self._loc: dict[int, _Entry] = {}
        self._stale: dict[Source, set[_PathKey]] = {}
        self._loopback: dict[Source, bool] = {}  # whether a source's address is a loopback one
        self._last_next_hop: tuple[object, object, object, NextHopProblem | None] = (
            None,
            None,
            None,
            None,
        )

    def _settle(self, key: int) -> _Entry | None:
        """The decision process for one prefix: its Loc-RIB entry, stored (an entry equal to
        the one stored keeps the stored one)."""
        found = self._candidates.get(key)
        loc = self._loc
        if found is None:
            loc.pop(key, None)
            return None
        after: _Entry
        if type(found) is Path:
            after = found
        else:
            best = best_path(found)  # type: ignore[arg-type]
            assert best is not None
            after = best
            if self.multipath:
                chosen = multipath(found, best, relax_as=self.relax_as)  # type: ignore[arg-type]
                if len(chosen) > 1:
                    after = chosen
        current = loc.get(key)
        if current is not None and (current is after or current == after):
            return current
        loc[key] = after
        return after

    def _put(self, path: Path) -> None:
        key, source, path_id = path.key, path.source, path.path_id
        own = self._paths.get(source)
        if own is None:
            own = self._paths[source] = {}
        own[_path_key(key, path_id)] = path
        candidates = self._candidates
        found = candidates.get(key)
        if found is None:
            candidates[key] = path
        elif type(found) is Path:
            if found.path_id == path_id and (found.source is source or found.source == source):
                candidates[key] = path
            else:
                candidates[key] = [found, path]
        else:
            assert isinstance(found, list)
            for index, old in enumerate(found):
                if old.path_id == path_id and old.source == source:
                    found[index] = path
                    break
            else:
                found.append(path)

    def _drop(self, source: Source, key: int, path_id: int) -> bool:
        own = self._paths.get(source)
        if own is None or own.pop(_path_key(key, path_id), None) is None:
            return False
        found = self._candidates[key]
        if type(found) is Path:
            del self._candidates[key]
            return True
        assert isinstance(found, list)
        left = [p for p in found if p.path_id != path_id or p.source != source]
        self._candidates[key] = left[0] if len(left) == 1 else left
        return True

    def _reselect(self, was: dict[int, _Entry | None]) -> list[Change]:
        """Settle each prefix; a Change for each whose entry is not what `was` says."""
        changes = []
        settle = self._settle
        for key, before in was.items():
            after = settle(key)
            if after is before or (after is not None and before is not None and after == before):
                continue
            changes.append(new_tuple(Change, (key, _as_tuple(before), _as_tuple(after))))
        return changes

    def _apply(
        self, work: Iterable[tuple[Source | None, list[tuple[int, int]], list[Path]]]
    ) -> list[Change]:
        """Withdraw (source, keys) then add paths, for each item of `work` in turn; one
        Change per prefix whose Loc-RIB entry differs from before the call."""
        changes: list[Change | None] = []
        fresh: dict[int, int] = {}  # prefixes new to the RIB in this call: index in `changes`
        was: dict[int, _Entry | None] = {}  # the others touched: their entry before the call
        candidates, loc, stale_sets, by_source = (
            self._candidates,
            self._loc,
            self._stale,
            self._paths,
        )
        drop, put = self._drop, self._put
        own: dict[_PathKey, Path] = {}
        own_source = None

        def remember(key: int) -> None:
            """Keep the prefix's entry from before this call, to settle it at the end."""
            if key in fresh:  # announced earlier in this call: nothing there before it
                changes[fresh.pop(key)] = None
                was[key] = None
            elif key not in was:
                was[key] = loc.get(key)

        for source, gone, new in work:
            for key, path_id in gone:
                remember(key)
                assert source is not None
                drop(source, key, path_id)
            for path in new:
                key, path_source, _, _, path_id, _ = path
                if stale_sets:
                    stale = stale_sets.get(path_source)
                    if stale:
                        stale.discard(_path_key(key, path_id))
                if key in candidates or key in was:
                    remember(key)
                    put(path)
                    continue
                # A prefix no one has a path to (most of a full table): no decision to make.
                if path_source is not own_source:
                    own_source, own = path_source, by_source.setdefault(path_source, {})
                own[(key, path_id) if path_id else key] = path  # _path_key, inline: hot
                candidates[key] = loc[key] = path
                fresh[key] = len(changes)
                changes.append(new_tuple(Change, (key, (), (path,))))
        if not was:
            return cast("list[Change]", changes)  # a change is only ever dropped into `was`
        return [change for change in changes if change is not None] + self._reselect(was)

    def announce(self, paths: Iterable[Path]) -> list[Change]:
        """Add or replace paths (a path replaces the one with its source, prefix and id)."""
        return self._apply([(None, [], list(paths))])

    def withdraw(self, source: Source, prefixes: Iterable[tuple[IPNetwork, int]]) -> list[Change]:
        """Remove the source's paths to these (prefix, path id) pairs; unknown ones are
        ignored, as RFC 4271 9 asks of withdrawals of routes never announced."""
        return self.withdraw_keys(source, [(prefix_key(p), path_id) for p, path_id in prefixes])

    def withdraw_keys(self, source: Source, keys: Iterable[tuple[int, int]]) -> list[Change]:
        """`withdraw`, the prefixes given by `prefix_key`."""
        return self._apply([(source, list(keys), [])])

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
        return self.apply_updates(
            source, (update,), now, local_addresses=local_addresses, ignored=ignored
        )

    def apply_updates(
        self,
        source: Source,
        updates: Iterable[Update | PlainUpdate],
        now: float = 0.0,
        *,
        local_addresses: Collection[IPAddress] = (),
        ignored: list[Ignored] | None = None,
    ) -> list[Change]:
        """`apply_update` for each UPDATE in turn (what one read off a session brings), with
        one Change per prefix for all of them: from its entry before the first to its entry
        after the last."""
        return self._apply(
            self._routes(source, update, now, local_addresses, ignored) for update in updates
        )

    def _routes(
        self,
        source: Source,
        update: Update | PlainUpdate,
        now: float,
        local_addresses: Collection[IPAddress],
        ignored: list[Ignored] | None,
    ) -> tuple[Source, list[tuple[int, int]], list[Path]]:
        """What an UPDATE withdraws and what it adds, as `_apply` takes them."""
        if type(update) is PlainUpdate:
            # The codec has read the AS path and next hop: when every attribute is kept and
            # the route is usable (nearly always), its paths are made from those at once;
            # anything else goes the general way below.
            hop = update.next_hop
            if (
                (source.internal or not update.seen & _INTERNAL_ONLY_CODES)
                and not self._looped(update.as_path)
                and self._next_hop_problem(source, hop, local_addresses) is None
            ):
                shared = update.attributes
                return source, [], [
                    new_tuple(Path, (key, source, hop, shared, 0, now))
                    for key in _prefix_keys(update.nlri)
                ]  # fmt: skip
            update = update.update()
        assert isinstance(update, Update)
        gone = _keys(update.withdrawn, update.withdrawn_path_ids) if update.withdrawn else []
        internal = source.internal
        kept = []
        as_path: AsPath | None = None
        as4 = False
        next_hop: IPAddress | None = None
        reach: list[tuple[IPAddress | None, Sequence[IPNetwork], tuple[int, ...]]] = []
        for attribute in update.attributes:
            kind = type(attribute)
            if kind is MpReachNlri:
                if attribute.nlri:  # type: ignore[union-attr]
                    hops = attribute.next_hops  # type: ignore[union-attr]
                    reach.append((hops[0] if hops else None, attribute.nlri, attribute.path_ids))  # type: ignore[union-attr]
                continue
            if kind is MpUnreachNlri:
                gone += _keys(attribute.withdrawn, attribute.path_ids)  # type: ignore[union-attr]
                continue
            if not internal and kind in _INTERNAL_ONLY:
                # RFC 4271 5.1.5, RFC 7606 7.5, 7.9, 7.10: these mean nothing from another AS.
                continue
            if kind is AsPath:
                as_path = attribute  # type: ignore[assignment]
            elif kind is As4Path:
                as4 = True
            elif kind is NextHop:
                next_hop = attribute.address  # type: ignore[union-attr]
            kept.append(attribute)
        if update.nlri:
            reach.insert(0, (next_hop, update.nlri, update.nlri_path_ids))
        attributes = update.attributes
        if len(kept) == len(attributes) and type(attributes) is tuple:
            shared = attributes  # all kept (the usual case): the UPDATE's own tuple will do
        else:
            shared = tuple(kept)
        looped = False
        local_asn = self.local_asn
        if local_asn is not None:
            if as4 or as_path is None:
                looped = local_asn in effective_as_path(shared).asns()
            else:
                looped = self._looped(as_path)
        new: list[Path] = []
        for hop, prefixes, path_ids in reach:
            problem = None if hop is None else self._next_hop_problem(source, hop, local_addresses)
            if problem is not None or looped:
                # A path through our own AS is unusable (RFC 4271 9.1.2), one with a bad next
                # hop too: either replaces (withdraws) what the source had for the prefixes.
                gone += _keys(prefixes, path_ids)
                if problem is not None and ignored is not None:
                    assert hop is not None
                    ignored.append(Ignored(hop, problem, prefixes))
                continue
            if path_ids:
                new += [
                    new_tuple(Path, (prefix_key(prefix), source, hop, shared, path_id, now))
                    for prefix, path_id in zip(prefixes, path_ids, strict=True)
                ]
            else:
                new += [
                    new_tuple(Path, (key, source, hop, shared, 0, now))
                    for key in _prefix_keys(prefixes)
                ]
        return source, gone, new

    def _looped(self, as_path: AsPath) -> bool:
        """Whether the AS path holds our AS (RFC 4271 9.1.2: such a path is never used)."""
        local_asn = self.local_asn
        if local_asn is None:
            return False
        for segment in as_path.segments:  # noqa: SIM110 (a generator costs more, per UPDATE)
            if local_asn in segment.asns:
                return True
        return False

    def _next_hop_problem(
        self, source: Source, hop: IPAddress, local_addresses: Collection[IPAddress]
    ) -> NextHopProblem | None:
        # The verdict on the last next hop seen is kept: the codec shares one NEXT_HOP object
        # between the UPDATEs that carry it, so a table asks about the same object again
        # (the speaker replaces a session's local addresses, never changes them in place).
        last = self._last_next_hop
        if last[0] is hop and last[1] is source and last[2] is local_addresses:
            return last[3]
        loopback = self._loopback.get(source)
        if loopback is None:
            loopback = self._loopback[source] = (
                source.address is not None and source.address.is_loopback()
            )
        problem = next_hop_problem(hop, local_addresses, loopback_session=loopback)
        self._last_next_hop = (hop, source, local_addresses, problem)
        return problem

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
        return self.withdraw_keys(source, [(path.key, path.path_id) for path in gone])

    def drop_source(self, source: Source) -> list[Change]:
        """Every path of a source, gone (its session went down)."""
        self._stale.pop(source, None)
        self._loopback.pop(source, None)
        own = self._paths.get(source, {})
        return self.withdraw_keys(source, [(path.key, path.path_id) for path in own.values()])

    def paths_from(self, source: Source) -> Iterator[Path]:
        """A source's Adj-RIB-In."""
        return iter(self._paths.get(source, {}).values())

    def lookup(self, prefix: IPNetwork) -> tuple[Path, ...]:
        """The Loc-RIB entry: best path first, then its multipath peers."""
        return _as_tuple(self._loc.get(prefix_key(prefix)))

    def best(self, key: int) -> Path | None:
        """The best path to the prefix of this `prefix_key`, None for no route."""
        entry = self._loc.get(key)
        if entry is None or isinstance(entry, Path):
            return entry
        return entry[0]

    def longest_match(self, address: IPAddress) -> tuple[Path, ...]:
        """The Loc-RIB entry of the most specific prefix covering `address`, () for none."""
        width = 32 if address.version == 4 else 128
        value = int(address)
        for length in range(width, -1, -1):
            entry = self._loc.get(
                key_of(value >> (width - length) << (width - length), length, address.version)
            )
            if entry is not None:
                return _as_tuple(entry)
        return ()

    def candidates(self, prefix: IPNetwork) -> tuple[Path, ...]:
        """Every path to `prefix`, from every source (selected or not)."""
        found = self._candidates.get(prefix_key(prefix))
        if found is None or isinstance(found, Path):
            return _as_tuple(found)
        return tuple(found)

    def is_stale(self, path: Path) -> bool:
        """Kept for a restarting peer and not announced again yet (graceful restart)."""
        stale = self._stale.get(path.source)
        if not stale:
            return False
        return _path_key(path.key, path.path_id) in stale

    def count(self, source: Source) -> int:
        """How many paths the source has (its Adj-RIB-In size)."""
        return len(self._paths.get(source, {}))

    def count_version(self, version: int) -> int:
        """Loc-RIB prefixes of one IP version (4 or 6)."""
        six = sum(key_version(key) == 6 for key in self._loc)
        return six if version == 6 else len(self._loc) - six

    def reselect_all(self) -> list[Change]:
        """Run the decision process again for every prefix (multipath settings changed)."""
        return self._reselect({key: self._loc.get(key) for key in self._candidates})

    def keys(self) -> Iterator[int]:
        """The `prefix_key` of every Loc-RIB prefix."""
        return iter(self._loc)

    def entries(self) -> Iterator[tuple[int, tuple[Path, ...]]]:
        """(prefix key, Loc-RIB entry) of every prefix as of this call, without making
        networks. The call only copies the entries' references (a full table in a tenth of
        a second; they never change, they are replaced): each is made a tuple as it is read."""
        taken = list(self._loc.items())
        return ((key, (entry,) if type(entry) is Path else entry) for key, entry in taken)  # type: ignore[misc]

    def candidate_entries(self) -> list[tuple[int, tuple[Path, ...]]]:
        """(prefix key, every path to it from every source) as of now: the Adj-RIBs-In by
        prefix. A prefix's candidates are a list the RIB changes in place, so this copies
        them all at once."""
        return [
            (key, (found,) if type(found) is Path else tuple(found))  # type: ignore[arg-type]
            for key, found in self._candidates.items()
        ]

    def sources(self) -> list[Source]:
        """The sources that have paths, in the order they first had one."""
        return [source for source, own in self._paths.items() if own]

    def __iter__(self) -> Iterator[tuple[IPNetwork, tuple[Path, ...]]]:
        return ((key_network(key), _as_tuple(entry)) for key, entry in self._loc.items())

    def __len__(self) -> int:
        return len(self._loc)


_MP = frozenset((MpReachNlri, MpUnreachNlri))


def _order(path: Path) -> tuple[int, int, int, int]:
    return (*key_parts(path.key), path.path_id)


def _keys(prefixes: Sequence[IPNetwork], path_ids: tuple[int, ...]) -> list[tuple[int, int]]:
    if path_ids:
        return [(prefix_key(p), i) for p, i in zip(prefixes, path_ids, strict=True)]
    return [(key, 0) for key in _prefix_keys(prefixes)]


def _prefix_keys(prefixes: Sequence[IPNetwork]) -> list[int]:
    if type(prefixes) is Prefixes:
        return prefixes.keys()  # as the codec decoded them: no networks made
    return [prefix_key(p) for p in prefixes]
