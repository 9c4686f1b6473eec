"""What `sartd fib` puts into the kernel, decided from the speaker's Loc-RIB (pure, sans-IO).

Values in, values out, time passed in as `now`. The adapters (`sart.fib.kernel`,
`sart.fib.follow`) read the speaker and the kernel and carry out the `RouteDiff`s made here.

How a prefix becomes a kernel route (`route_for`):

- the speaker sends, per prefix, its Loc-RIB entry: the best path first and, when multipath
  is on, the paths equal to it after it. The API marks only the first with `best`; every path
  of the entry is selected, the rest are its multipath peers (`sart.bgp.rib.multipath`, and
  `SpeakerService.GetRib`/`WatchEvents` set `best` on index 0 only). So every usable path of the
  entry becomes one next hop: several next hops make an ECMP route;
- a prefix this node originates (a path whose source is "local") gets no route: the node is
  the destination, and the locally originated path always wins the decision process;
- paths without a usable next hop are skipped: none, the unspecified address, a next hop of
  the other IP version (RFC 5549 is not done) or an IPv6 link-local one (it needs an
  interface, which the API does not give);
- the filter says which prefixes may be installed at all (`RouteFilter`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import attrs
from netaddr import IPAddress, IPNetwork

LOCAL_SOURCE = "local"  # the API's `Path.source` for locally originated paths
TABLE_MAIN = 254  # RT_TABLE_MAIN
PROTOCOL_BGP = 186  # RTPROT_BGP in linux/rtnetlink.h; `ip route` and FRR call it "bgp"
DEFAULT_METRIC = 20  # what FRR's zebra gives eBGP routes (its administrative distance)
DEFAULT_GRACE = 90.0  # seconds; see `Fib`

_DEFAULT_ROUTES = (IPNetwork("0.0.0.0/0"), IPNetwork("::/0"))
_LINK_LOCAL_V6 = IPNetwork("fe80::/10")


def _canonical_gateways(value: Iterable[IPAddress]) -> tuple[IPAddress, ...]:
    """Unique, sorted: ECMP next hops are a set, whatever order the kernel lists them in."""
    return tuple(sorted(set(value), key=lambda a: a.sort_key()))


def _in_range(low: int, high: int) -> Callable[[object, attrs.Attribute[int], int], None]:
    def check(_: object, attribute: attrs.Attribute[int], value: int) -> None:
        if not low <= value <= high:
            raise ValueError(f"{attribute.name} {value} is outside {low}..{high}")

    return check


@attrs.frozen(kw_only=True)
class LearnedPath:
    """One path of the speaker's Loc-RIB, as much of it as the FIB needs."""

    prefix: IPNetwork
    next_hop: IPAddress | None
    source: str  # the neighbor's address, or LOCAL_SOURCE
    best: bool = False

    @property
    def local(self) -> bool:
        return self.source == LOCAL_SOURCE


@attrs.frozen(kw_only=True)
class Route:
    """A kernel route of ours. The kernel tells routes of one table apart by destination and
    metric (`key`); `gateways` holds one next hop, or several for ECMP (empty only for a route
    of our protocol found in the kernel that we cannot read, which then goes)."""

    destination: IPNetwork
    gateways: tuple[IPAddress, ...] = attrs.field(converter=_canonical_gateways)
    table: int = attrs.field(default=TABLE_MAIN, validator=_in_range(1, 2**32 - 1))
    protocol: int = attrs.field(default=PROTOCOL_BGP, validator=_in_range(0, 255))
    metric: int = attrs.field(default=DEFAULT_METRIC, validator=_in_range(0, 2**32 - 1))

    @property
    def key(self) -> tuple[IPNetwork, int, int]:
        return self.destination, self.table, self.metric

    @property
    def multipath(self) -> bool:
        return len(self.gateways) > 1

    def __str__(self) -> str:
        hops = ",".join(str(g) for g in self.gateways) or "-"
        return f"{self.destination} via {hops} table {self.table} metric {self.metric}"


@attrs.frozen(kw_only=True)
class RouteFilter:
    """Which prefixes may be installed. A prefix passes when its family is allowed and, with an
    allow list, when it lies inside one of its prefixes (or is one). With no allow list every
    prefix passes except the default routes (0.0.0.0/0, ::/0): a default route from BGP is only
    installed when the allow list names it (`--prefix 0.0.0.0/0` allows all of IPv4)."""

    prefixes: tuple[IPNetwork, ...] = ()
    families: frozenset[int] = frozenset({4, 6})

    def allows(self, prefix: IPNetwork) -> bool:
        if prefix.version not in self.families:
            return False
        if not self.prefixes:
            return prefix not in _DEFAULT_ROUTES
        return any(
            allowed.version == prefix.version
            and allowed.prefixlen <= prefix.prefixlen
            and prefix.network in allowed
            for allowed in self.prefixes
        )


@attrs.frozen(kw_only=True)
class FibConfig:
    """Where our routes go (table, protocol, metric), which prefixes (filter), and how long the
    routes outlive the speaker (`grace`, seconds; see `Fib`)."""

    table: int = attrs.field(default=TABLE_MAIN, validator=_in_range(1, 2**32 - 1))
    protocol: int = attrs.field(default=PROTOCOL_BGP, validator=_in_range(1, 255))
    # 0 is refused: the kernel stores an IPv6 route of metric 0 as 1024, which would never
    # match what we asked for.
    metric: int = attrs.field(default=DEFAULT_METRIC, validator=_in_range(1, 2**32 - 1))
    filter: RouteFilter = RouteFilter()
    grace: float = attrs.field(default=DEFAULT_GRACE)

    @grace.validator
    def _check_grace(self, attribute: attrs.Attribute[float], value: float) -> None:
        if value < 0:
            raise ValueError(f"grace {value} is negative")


def usable_next_hop(path: LearnedPath) -> IPAddress | None:
    """The next hop a kernel route can use for this path, or None (see the module doc)."""
    hop = path.next_hop
    if path.local or hop is None or hop.version != path.prefix.version:
        return None
    if int(hop) == 0 or (hop.version == 6 and hop in _LINK_LOCAL_V6):
        return None
    return hop


def route_for(prefix: IPNetwork, paths: Sequence[LearnedPath], config: FibConfig) -> Route | None:
    """The kernel route for one prefix given its Loc-RIB entry (best first, then its multipath
    peers; empty: no route), or None when it gets none."""
    if not paths or not config.filter.allows(prefix):
        return None
    if any(p.local for p in paths):
        return None
    gateways = [hop for hop in map(usable_next_hop, paths) if hop is not None]
    if not gateways:
        return None
    return Route(
        destination=prefix,
        gateways=tuple(gateways),
        table=config.table,
        protocol=config.protocol,
        metric=config.metric,
    )


def routes_from_rib(paths: Iterable[LearnedPath], config: FibConfig) -> dict[IPNetwork, Route]:
    """Every kernel route for a whole Loc-RIB (the paths of `GetRib`, grouped by prefix)."""
    entries: dict[IPNetwork, list[LearnedPath]] = {}
    for path in paths:
        entries.setdefault(path.prefix, []).append(path)
    routes = {}
    for prefix, entry in entries.items():
        route = route_for(prefix, entry, config)
        if route is not None:
            routes[prefix] = route
    return routes


@attrs.frozen
class RouteDiff:
    """What to tell the kernel: routes to replace (add or change: `ip route replace`), then
    routes to delete."""

    replace: tuple[Route, ...] = ()
    delete: tuple[Route, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.replace or self.delete)

    def __add__(self, other: RouteDiff) -> RouteDiff:
        return RouteDiff(self.replace + other.replace, self.delete + other.delete)


def diff(desired: Mapping[IPNetwork, Route], observed: Iterable[Route]) -> RouteDiff:
    """Desired routes (by destination) against the routes of ours found in the kernel: what to
    replace so the kernel has exactly `desired`, and which found routes to delete (those for
    destinations not desired, and those at another metric or table than the desired one)."""
    found: dict[tuple[IPNetwork, int, int], Route] = {}
    delete: list[Route] = []
    for route in observed:
        want = desired.get(route.destination)
        if want is None or want.key != route.key or route.key in found:
            delete.append(route)
        else:
            found[route.key] = route
    replace = [r for r in desired.values() if found.get(r.key) != r]
    return RouteDiff(tuple(replace), tuple(delete))


class Fib:
    """The routes we own in the kernel and what to tell it next, fed with the speaker's table,
    its events and the time (sans-IO, like `sart.bgp.session.Session`).

    `installed` is what we told the kernel (a failed call is mended by the next
    `synchronise`, which compares with the kernel itself). Routes of ours found in the kernel
    that the speaker does not have are *stale*.

    Grace (`config.grace` seconds), so that a restart of the speaker does not cut traffic:
    - while the speaker cannot be reached, our routes stay; `grace` seconds after it went away
      they all go (`speaker_lost`, then `handle_timer`);
    - once it is back, its table replaces ours at once, but a stale route stays until the
      speaker has been up for `grace` seconds (time to relearn its table after a restart), or
      until the speaker says something about that prefix. A speaker that has been up longer
      (this daemon restarted, or a periodic resync) has its stale routes removed at once.
    """

    def __init__(self, config: FibConfig) -> None:
        self.config = config
        self.installed: dict[IPNetwork, Route] = {}
        self.stale: dict[IPNetwork, list[Route]] = {}
        self.sweep_at: float | None = None  # when stale routes go
        self.flush_at: float | None = None  # when every route goes (speaker gone too long)

    def synchronise(
        self,
        rib: Iterable[LearnedPath],
        kernel: Iterable[Route],
        *,
        now: float,
        speaker_uptime: float,
    ) -> RouteDiff:
        """The speaker's whole table (`GetRib`) and our routes read from the kernel: install
        the table, delete what conflicts with it, and keep or delete the stale routes."""
        desired = routes_from_rib(rib, self.config)
        changes = diff(desired, kernel)
        self.installed = desired
        self.stale = {}
        self.flush_at = None
        keep = speaker_uptime < self.config.grace
        delete = []
        for route in changes.delete:
            if keep and route.destination not in desired:
                self.stale.setdefault(route.destination, []).append(route)
            else:
                delete.append(route)
        self.sweep_at = now + self.config.grace - speaker_uptime if self.stale else None
        return RouteDiff(changes.replace, tuple(delete))

    def best_path_changed(self, prefix: IPNetwork, paths: Sequence[LearnedPath]) -> RouteDiff:
        """One `BestPathChanged` event: the prefix's new Loc-RIB entry (empty: withdrawn)."""
        route = route_for(prefix, paths, self.config)
        current = self.stale.pop(prefix, [])
        if prefix in self.installed:
            current.append(self.installed[prefix])
        if not self.stale:
            self.sweep_at = None
        if route is None:
            self.installed.pop(prefix, None)
            return diff({}, current)
        self.installed[prefix] = route
        return diff({prefix: route}, current)

    def speaker_lost(self, now: float) -> None:
        """The speaker cannot be reached (the first failure counts, not every retry)."""
        if self.flush_at is None:
            self.flush_at = now + self.config.grace

    def next_deadline(self) -> float | None:
        deadlines = [d for d in (self.sweep_at, self.flush_at) if d is not None]
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> RouteDiff:
        """What is due at `now`: stale routes past their time, or everything when the speaker
        has been gone for the grace time."""
        if self.flush_at is not None and now >= self.flush_at:
            return self.flush()
        delete: list[Route] = []
        if self.sweep_at is not None and now >= self.sweep_at:
            for routes in self.stale.values():
                delete += routes
            self.stale = {}
            self.sweep_at = None
        return RouteDiff(delete=tuple(delete))

    def flush(self) -> RouteDiff:
        """Every route of ours goes (installed and stale); nothing is due any more."""
        delete = [*self.installed.values()]
        for routes in self.stale.values():
            delete += routes
        self.installed, self.stale = {}, {}
        self.flush_at = self.sweep_at = None
        return RouteDiff(delete=tuple(delete))

    @property
    def route_count(self) -> int:
        """Routes of ours the kernel should hold now (installed and stale)."""
        return len(self.installed) + sum(len(r) for r in self.stale.values())
