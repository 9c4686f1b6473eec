"""LoadBalancer addresses for Services: observed Service in, desired addresses out (pure).

`LoadBalancerAllocator` holds the address pools (sart.ipam) and which Service owns which
addresses, in memory; `reconcile` takes one observed Service and returns its `ServicePlan`:
the ingress addresses it must show and the events to record. It allocates and releases as a
side effect on the allocator, never on the cluster: the runtime applies the plan. The Services'
status is the truth about what is allocated: start-up rebuilds the allocator from it (`adopt`),
so nothing is double-allocated across restarts, and no finalizer is needed (a Service deleted
while no controller runs simply is not in the listing: its addresses are free).

What is announced for the addresses: one BGPAdvertisement per address (`advertisements`), with
the path attributes of its pool and of the Service's annotations (`ServicePlan.attributes`),
or, for a pool with an aggregation length, one per covering prefix (`aggregates`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import attrs
from netaddr import AddrFormatError, IPAddress, IPNetwork

from sart.errors import AddressInUse, IpamError, PoolExhausted
from sart.ipam.allocator import Allocator, Request
from sart.ipam.pool import Pool
from sart.k8s.attributes import Attributes, from_annotations
from sart.k8s.models import (
    ADDRESS_POOL_ANNOTATIONS,
    ALLOW_SHARED_IP_ANNOTATION,
    LOAD_BALANCER_IPS_ANNOTATION,
)

LOAD_BALANCER_CLASS = "sart.terassyi.net/loadbalancer"


@attrs.frozen(kw_only=True)
class ServiceView:
    """What the reconciler reads of a Service."""

    namespace: str
    name: str
    type: str = "ClusterIP"
    load_balancer_class: str | None = None
    load_balancer_ip: str = ""  # spec.loadBalancerIP (deprecated upstream, still honoured)
    annotations: Mapping[str, str] = attrs.field(factory=dict)
    labels: Mapping[str, str] = attrs.field(factory=dict)
    ip_families: tuple[str, ...] = ("IPv4",)
    ingress: tuple[str, ...] = ()  # status.loadBalancer.ingress[].ip
    deleting: bool = False
    uid: str = ""
    external_traffic_policy: str = "Cluster"
    ports: tuple[tuple[str, int], ...] = ()  # (protocol, port)
    selector: Mapping[str, str] = attrs.field(factory=dict)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@attrs.frozen(kw_only=True)
class PoolView:
    """An AddressPool of type service, as the allocator needs it."""

    name: str
    cidr: IPNetwork
    auto_assign: bool = False
    namespaces: tuple[str, ...] = ()  # empty: every namespace
    service_selector: Mapping[str, str] = attrs.field(factory=dict)  # empty: every Service
    attributes: Attributes = attrs.field(factory=Attributes)  # spec.bgpAttributes
    aggregation_length: int | None = None  # announce covering prefixes of this length

    @property
    def aggregating(self) -> bool:
        """Whether its addresses are announced as covering prefixes (not one per address)."""
        width = 32 if self.cidr.version == 4 else 128
        return self.aggregation_length is not None and self.aggregation_length < width

    def admits(self, service: ServiceView) -> bool:
        return self.refusal(service) is None

    def refusal(self, service: ServiceView) -> str | None:
        """Why this pool does not serve the Service (the rule that refuses it), or None."""
        if self.namespaces and service.namespace not in self.namespaces:
            return (
                f"AddressPool {self.name!r} serves only the namespaces"
                f" {', '.join(self.namespaces)}, not {service.namespace}"
            )
        wrong = sorted(k for k, v in self.service_selector.items() if service.labels.get(k) != v)
        if wrong:
            wanted = ", ".join(f"{k}={self.service_selector[k]}" for k in wrong)
            return f"AddressPool {self.name!r} serves only Services labelled {wanted}"
        return None


@attrs.frozen
class Share:
    """How a Service may share its addresses (as MetalLB and Cilium allow): with Services of
    the same sharing key whose ports do not clash, under the same traffic policy, and for
    Local policy with the same selector (so the same nodes serve them)."""

    key: str
    ports: frozenset[tuple[str, int]]
    policy: str
    selector: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, service: ServiceView) -> Share | None:
        key = service.annotations.get(ALLOW_SHARED_IP_ANNOTATION, "").strip()
        if not key:
            return None
        selector = tuple(sorted(service.selector.items()))
        return cls(key, frozenset(service.ports), service.external_traffic_policy, selector)

    def compatible(self, other: Share) -> bool:
        return (
            self.key == other.key
            and not self.ports & other.ports
            and self.policy == other.policy
            and (self.policy != "Local" or self.selector == other.selector)
        )


@attrs.frozen
class Event:
    type: str  # Normal or Warning
    reason: str
    message: str


@attrs.frozen(kw_only=True)
class ServicePlan:
    addresses: tuple[IPAddress, ...]  # status.loadBalancer.ingress, in this order
    events: tuple[Event, ...] = ()
    pending: bool = False  # wants addresses it could not get: retry when some are released
    # The path attributes of each address's announcement: its pool's, with the Service's
    # annotations over them. Addresses of an aggregating pool are not here: their covering
    # prefix carries the pool's attributes (see `aggregates`).
    attributes: Mapping[IPAddress, Attributes] = attrs.field(factory=dict)

    @property
    def ingress(self) -> tuple[str, ...]:
        return tuple(str(a) for a in self.addresses)


def is_ours(service: ServiceView) -> bool:
    return service.type == "LoadBalancer" and service.load_balancer_class in (
        None,
        LOAD_BALANCER_CLASS,
    )


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


class RequestError(Exception):
    """The Service asks for something that cannot be (a bad address, an unknown pool)."""


class LoadBalancerAllocator:
    def __init__(self) -> None:
        self.allocator = Allocator()
        self.pools: dict[str, PoolView] = {}
        self.auto: dict[int, str] = {}  # IP version -> the autoAssign pool of that family
        self.owned: dict[str, tuple[IPAddress, ...]] = {}  # Service key -> its addresses
        self.holders: dict[IPAddress, set[str]] = {}  # address -> the Services holding it
        self.shares: dict[str, Share] = {}  # Service key -> how it may share
        self.pending: set[str] = set()
        # Pools deleted while some of their addresses are in use: those stay with their
        # Services until released, no new address comes from them, and once empty they go.
        self.retired: set[str] = set()

    # --- pools ----------------------------------------------------------------------------

    def set_pools(self, pools: Iterable[PoolView]) -> list[str]:
        """Make the pools these; returns problems (overlap, a second autoAssign pool of one IP
        family, a removed pool still in use: retired, see `retired`)."""
        problems: list[str] = []
        wanted = {p.name: p for p in pools}
        for name in list(self.pools):
            if name in wanted and wanted[name].cidr == self.pools[name].cidr:
                self.retired.discard(name)  # back (or never gone)
            elif not self._forget_if_empty(name) and name not in self.retired:
                self.retired.add(name)
                used = self.allocator.pool(name).used
                problems.append(
                    f"AddressPool {name} was removed while {used} of its addresses are in use:"
                    " they stay with their Services until released; no new address comes"
                    " from it"
                )
        for name, view in sorted(wanted.items()):
            if name in self.pools:
                if name not in self.retired:
                    self.pools[name] = view
                continue
            try:
                self.allocator.add_pool(name, Pool(view.cidr))
                self.pools[name] = view
            except IpamError as error:
                problems.append(str(error))
        self.auto = {}
        for name, view in sorted(self.pools.items()):
            if view.auto_assign and name not in self.retired:
                version = view.cidr.version
                if version in self.auto:
                    problems.append(
                        f"AddressPool {name} is a second autoAssign pool for IPv{version}"
                        f" (after {self.auto[version]}): not used for autoAssign"
                    )
                else:
                    self.auto[version] = name
        return problems

    def _forget_if_empty(self, name: str) -> bool:
        """Remove a pool nobody uses any more; False (kept) while addresses are in use."""
        if self.allocator.pool(name).used:
            return False
        self.allocator.remove_pool(name)
        del self.pools[name]
        self.retired.discard(name)
        return True

    def _retired_pools_of(self, addresses: Iterable[IPAddress]) -> list[str]:
        return sorted({p for a in addresses if (p := self._pool_name(a)) in self.retired})

    def _pool_name(self, address: IPAddress) -> str | None:
        try:
            return self.allocator.pool_of(address)
        except IpamError:
            return None

    # --- requests -------------------------------------------------------------------------

    def request_of(self, service: ServiceView) -> Request:
        """What the Service asks for. Named addresses (`loadBalancerIPs`, or the deprecated
        `spec.loadBalancerIP`) and named pools combine as in the original: with
        `addresspool: a,b` and `loadBalancerIPs: <an address of b>` the Service gets that
        address from b and one address from a."""
        addresses = self._named_addresses(service)
        names = next(
            (
                _split(service.annotations[a])
                for a in ADDRESS_POOL_ANNOTATIONS
                if a in service.annotations
            ),
            (),
        )
        for name in names:
            pool = self.pools.get(name)
            if pool is None or name in self.retired:
                known = ", ".join(sorted(set(self.pools) - self.retired)) or "none"
                raise RequestError(f"no AddressPool {name!r} of type service (pools: {known})")
            refusal = pool.refusal(service)
            if refusal is not None:
                raise RequestError(refusal)
        if addresses and names:
            covered = {self._pool_name(a) for a in addresses}
            for address in addresses:
                if self._pool_name(address) not in names:
                    raise RequestError(
                        f"{LOAD_BALANCER_IPS_ANNOTATION}: {address} is in none of the pools"
                        f" named ({', '.join(names)})"
                    )
            rest = tuple(n for n in names if n not in covered)
            return Request(pools=rest, addresses=addresses)
        if addresses:
            return Request(addresses=addresses)
        if names:
            return Request(pools=names)
        # One address per IP family of the Service (dual-stack: one of each).
        chosen = []
        for family in service.ip_families or ("IPv4",):
            version = 6 if family == "IPv6" else 4
            auto = self.auto.get(version)
            if auto is None:
                raise RequestError(
                    f"no AddressPool with autoAssign for IPv{version}: name one in the annotation"
                )
            refusal = self.pools[auto].refusal(service)
            if refusal is not None:
                raise RequestError(f"the autoAssign pool does not serve it: {refusal}")
            chosen.append(auto)
        return Request(pools=tuple(chosen))

    def _named_addresses(self, service: ServiceView) -> tuple[IPAddress, ...]:
        """The addresses the Service names, each checked against its pool's rules."""
        text = service.annotations.get(LOAD_BALANCER_IPS_ANNOTATION, "")
        if not text and service.load_balancer_ip:
            text = service.load_balancer_ip
        addresses = []
        for part in _split(text):
            try:
                addresses.append(IPAddress(part))
            except (AddrFormatError, ValueError):
                raise RequestError(
                    f"{LOAD_BALANCER_IPS_ANNOTATION}: {part!r} is not an IP address"
                ) from None
        held = self.owned.get(service.key, ())
        for address in addresses:
            name = self._pool_name(address)
            if name is None:
                continue  # in no pool: the allocator says so
            if name in self.retired and address not in held:
                raise RequestError(f"AddressPool {name!r} was removed: {address} is not given")
            refusal = self.pools[name].refusal(service)
            if refusal is not None:
                raise RequestError(f"{address}: {refusal}")
        return tuple(addresses)

    def _names_its_request(self, service: ServiceView) -> bool:
        """Whether the Service names its pools or addresses (else it takes the autoAssign
        pool's)."""
        names = (LOAD_BALANCER_IPS_ANNOTATION, *ADDRESS_POOL_ANNOTATIONS)
        return bool(service.load_balancer_ip) or any(a in service.annotations for a in names)

    def _satisfies(self, addresses: tuple[IPAddress, ...], request: Request) -> bool:
        """Whether the addresses held are what the request asks: every named address, and
        one address from each named pool for the rest."""
        if not set(request.addresses) <= set(addresses):
            return False
        rest = [a for a in addresses if a not in request.addresses]
        try:
            return sorted(self.allocator.pool_of(a) for a in rest) == sorted(request.pools)
        except IpamError:
            return False

    # --- the reconcile --------------------------------------------------------------------

    def _hold(self, key: str, addresses: tuple[IPAddress, ...], share: Share | None) -> None:
        self.owned[key] = addresses
        for address in addresses:
            self.holders.setdefault(address, set()).add(key)
        if share is not None:
            self.shares[key] = share

    def _drop(self, key: str) -> tuple[tuple[IPAddress, ...], list[IPAddress]]:
        """Stop holding the key's addresses; those nobody else shares go back to their pools.
        Returns (held, freed)."""
        held = self.owned.pop(key, ())
        self.shares.pop(key, None)
        freed = []
        for address in held:
            holders = self.holders.get(address, set())
            holders.discard(key)
            if not holders:
                self.holders.pop(address, None)
                freed.append(address)
        if freed:
            self.allocator.release(tuple(freed))
            for name in self._retired_pools_of(freed):
                self._forget_if_empty(name)
        return held, freed

    def _shareable(self, address: IPAddress, share: Share | None) -> bool:
        holders = self.holders.get(address, set())
        return (
            share is not None
            and all(share.compatible(self.shares[h]) for h in holders if h in self.shares)
            and all(h in self.shares for h in holders)
        )

    def _keepable(self, address: IPAddress, share: Share | None) -> bool:
        """Whether a Service with this sharing may hold `address` beside its other holders."""
        return not self.holders.get(address) or self._shareable(address, share)

    def _acquire(self, request: Request, share: Share | None) -> tuple[IPAddress, ...]:
        """The addresses for a request: the named ones, then one from each named pool; shared
        with compatible Services where the sharing key allows, allocated otherwise; all or
        nothing (IpamError)."""
        fresh = []
        for address in request.addresses:
            if address in self.holders:
                if not self._shareable(address, share):
                    users = ", ".join(sorted(self.holders[address]))
                    raise AddressInUse(f"{address} is in use by {users}")
            else:
                fresh.append(address)
        if fresh:
            self.allocator.allocate(Request(addresses=tuple(fresh)))
        try:
            from_pools = self._acquire_from_pools(request.pools, share) if request.pools else ()
        except IpamError:
            if fresh:
                self.allocator.release(tuple(fresh))  # nothing is taken when anything fails
            raise
        return request.addresses + from_pools

    def _acquire_from_pools(
        self, pools: tuple[str, ...], share: Share | None
    ) -> tuple[IPAddress, ...]:
        chosen: dict[int, IPAddress] = {}
        if share is not None:
            for index, name in enumerate(pools):
                for address in sorted(self.holders):
                    taken = address in chosen.values()
                    in_pool = self.allocator.pool_of(address) == name
                    if not taken and in_pool and self._shareable(address, share):
                        chosen[index] = address
                        break
        rest = tuple(n for i, n in enumerate(pools) if i not in chosen)
        fresh_addresses = iter(self.allocator.allocate(Request(pools=rest)) if rest else ())
        return tuple(chosen[i] if i in chosen else next(fresh_addresses) for i in range(len(pools)))

    def _take_back(
        self,
        key: str,
        held: tuple[IPAddress, ...],
        freed: list[IPAddress],
        share: Share | None,
    ) -> tuple[IPAddress, ...]:
        """After `_drop`: hold `held` again as far as the Service's sharing now allows (an
        address it shared stays only if it may still share it), so that adopting the
        Services' status after a restart gives back exactly this. Returns what it keeps."""
        kept = held if all(self._keepable(a, share) for a in held) else ()
        if kept:
            if freed:
                self.allocator.allocate(Request(addresses=tuple(freed)))
            self._hold(key, kept, share)
        return kept

    def _keep_what_it_may(self, key: str, share: Share | None) -> tuple[IPAddress, ...]:
        """A Service whose request cannot be served now keeps its addresses, unless its
        sharing changed so that it may no longer hold one it shares."""
        if self.shares.get(key) == share:
            return self.owned.get(key, ())
        held, freed = self._drop(key)
        return self._take_back(key, held, freed, share)

    def release(self, key: str) -> tuple[IPAddress, ...]:
        self.pending.discard(key)
        held, _ = self._drop(key)
        return held

    def reconcile(self, service: ServiceView) -> ServicePlan:
        plan = self._reconcile(service)
        if not plan.addresses:
            return plan
        return self._with_attributes(service, plan)

    def _with_attributes(self, service: ServiceView, plan: ServicePlan) -> ServicePlan:
        """The plan with the attributes of each address's announcement, and a Warning for
        each annotation that does not parse (left out; the rest apply)."""
        own, problems = from_annotations(service.annotations)
        found: dict[IPAddress, Attributes] = {}
        aggregated = []
        for address in plan.addresses:
            pool = self.pools.get(self._pool_name(address) or "")
            if pool is not None and pool.aggregating:
                aggregated.append(address)
                continue
            found[address] = own.over(pool.attributes if pool is not None else Attributes())
        events = list(plan.events)
        for problem in problems:
            message = f"Service {service.key}: {problem}; announced without it"
            events.append(Event("Warning", "InvalidBGPAttributes", message))
        if own and aggregated:
            message = (
                f"{', '.join(map(str, aggregated))}: the pool announces covering prefixes with"
                " its own attributes; this Service's BGP annotations do not apply to them"
            )
            events.append(Event("Warning", "BGPAttributesIgnored", message))
        return attrs.evolve(plan, attributes=found, events=tuple(events))

    def _reconcile(self, service: ServiceView) -> ServicePlan:
        key = service.key
        if service.deleting or not is_ours(service):
            released = self.release(key)
            events: tuple[Event, ...] = ()
            if released and not service.deleting:
                why = f"released {', '.join(map(str, released))}: no longer a sart LoadBalancer"
                events = (Event("Normal", "AddressReleased", why),)
            return ServicePlan(addresses=(), events=events)
        current = self.owned.get(key, ())
        retired = self._retired_pools_of(current)
        if retired and not self._names_its_request(service):
            current = self._keep_what_it_may(key, Share.of(service))
            held_text = ", ".join(map(str, current))
            why = (
                f"AddressPool {', '.join(retired)} was removed: {held_text} stays with this"
                " Service until it is released; no new address comes from it"
            )
            return ServicePlan(addresses=current, events=(Event("Warning", "PoolRemoved", why),))
        try:
            request = self.request_of(service)
        except RequestError as error:
            kept = self._keep_what_it_may(key, Share.of(service))
            return ServicePlan(
                addresses=kept,
                events=(Event("Warning", "InvalidRequest", str(error)),),
            )
        share = Share.of(service)
        previous = self.shares.get(key)
        if current and self._satisfies(current, request) and previous == share:
            return ServicePlan(addresses=current)
        held, freed = self._drop(key)
        try:
            addresses = self._acquire(request, share)
        except IpamError as error:
            # Nothing is lost: it takes back what it had, as far as its spec still allows (an
            # address it shared stays only if it may still share it), so that adopting the
            # Services' status after a restart gives back exactly this.
            held = self._take_back(key, held, freed, share)
            self.pending.add(key)
            if isinstance(error, PoolExhausted):
                reason, message = "PoolExhausted", f"AddressPool {self._full(request)} is full"
            else:
                reason, message = "AllocationFailed", str(error)
            return ServicePlan(
                addresses=held,
                events=(Event("Warning", reason, message),),
                pending=True,
            )
        self._hold(key, addresses, share)
        self.pending.discard(key)
        if addresses == held:
            return ServicePlan(addresses=addresses)
        pools = sorted({self.allocator.pool_of(a) for a in addresses})
        shared = [a for a in addresses if len(self.holders[a]) > 1]
        message = f"allocated {', '.join(map(str, addresses))} from {', '.join(pools)}"
        if shared:
            message += f" (shared: {', '.join(map(str, shared))})"
        return ServicePlan(
            addresses=addresses,
            events=(Event("Normal", "AddressAllocated", message),),
        )

    def aggregate_advertisements(
        self, nodes_of: Mapping[str, Iterable[str]]
    ) -> dict[str, tuple[str, dict[str, object]]]:
        """The BGPAdvertisements of every aggregating pool, by object name: (pool, spec).
        `nodes_of` maps a Service key to the nodes its addresses are announced from (a Service
        not in it counts as announced from no node, yet its address is covered)."""
        announced: dict[str, dict[IPAddress, set[str]]] = {}
        if not any(pool.aggregating for pool in self.pools.values()):
            return {}  # the common case, and asked after every reconcile: no walk
        for address, holders in self.holders.items():
            pool = self.pools.get(self._pool_name(address) or "")
            if pool is None or not pool.aggregating:
                continue
            nodes = announced.setdefault(pool.name, {}).setdefault(address, set())
            for key in holders:
                nodes.update(nodes_of.get(key, ()))
        found: dict[str, tuple[str, dict[str, object]]] = {}
        for name, addresses in sorted(announced.items()):
            for object_name, spec in aggregate_advertisements(self.pools[name], addresses).items():
                found[object_name] = (name, spec)
        return found

    def _full(self, request: Request) -> str:
        full = [n for n in request.pools if self.allocator.pool(n).free == 0]
        return ", ".join(full or request.pools)

    def adopt(self, services: Iterable[ServiceView]) -> list[str]:
        """Start-up: take over what the Services' status says they have. Returns conflicts
        (an address claimed twice without a compatible sharing key, or outside every pool);
        those Services are reconciled afresh."""
        conflicts: list[str] = []
        for service in sorted(services, key=lambda s: s.key):
            if not is_ours(service) or service.deleting or not service.ingress:
                continue
            try:
                addresses = tuple(IPAddress(ip) for ip in service.ingress)
            except (AddrFormatError, ValueError):
                conflicts.append(f"{service.key}: status has a malformed address")
                continue
            share = Share.of(service)
            clash = [a for a in addresses if a in self.holders and not self._shareable(a, share)]
            if clash:
                first = sorted(self.holders[clash[0]])[0]
                conflicts.append(
                    f"{service.key} and {first} both claim {clash[0]}: {first} keeps it"
                )
                continue
            try:
                self._acquire(Request(addresses=addresses), share)
            except IpamError as error:
                conflicts.append(f"{service.key}: {error}")
                continue
            self._hold(service.key, addresses, share)
        return conflicts


# --- where each address is announced from ------------------------------------------------------


@attrs.frozen
class EndpointView:
    """One endpoint of an EndpointSlice, as the announcement decision needs it."""

    node: str
    ready: bool
    serving: bool
    terminating: bool


def announcing_nodes(
    policy: str, bgp_nodes: Iterable[str], endpoints: Iterable[EndpointView]
) -> tuple[str, ...]:
    """The nodes whose speakers announce a Service's addresses.

    Cluster policy: every node with a NodeBGP (kube-proxy forwards from any of them). Local
    policy: the nodes with a ready endpoint; while none is ready (a rolling update between the
    old pods terminating and the new ones becoming ready), the nodes whose terminating
    endpoints still serve, as kube-proxy itself falls back to them: never from no node while
    something can serve, never from a node with nothing left."""
    speakers = set(bgp_nodes)
    if policy != "Local":
        return tuple(sorted(speakers))
    points = list(endpoints)
    ready = {e.node for e in points if e.ready and e.node}
    if not ready:
        ready = {e.node for e in points if e.serving and e.terminating and e.node}
    return tuple(sorted(ready & speakers))


def advertisement_name(service: str, address: IPAddress) -> str:
    """DNS-safe and stable: the Service name and the address's digits."""
    if address.version == 4:
        return f"{service}-{str(address).replace('.', '-')}"
    return f"{service}-{int(address):032x}"


def _spec(
    cidr: IPNetwork, nodes: Iterable[str], attributes: Attributes | None
) -> dict[str, object]:
    spec: dict[str, object] = {
        "cidr": str(cidr),
        "type": "service",
        "protocol": f"ipv{cidr.version}",
        "nodes": list(nodes),
    }
    if attributes:
        spec["attrs"] = list(attributes.to_attrs())
    return spec


def advertisements(
    service: ServiceView,
    addresses: Iterable[IPAddress],
    nodes: tuple[str, ...],
    attributes: Mapping[IPAddress, Attributes] | None = None,
) -> dict[str, dict[str, object]]:
    """The BGPAdvertisement specs a Service wants, by object name: one per address, with its
    attributes (`ServicePlan.attributes`) where it has any. With `attributes` given, only
    the addresses in it (the others are announced by their pool's covering prefix)."""
    return {
        advertisement_name(service.name, address): _spec(
            IPNetwork(f"{address}/{_width(address)}"),
            nodes,
            attributes.get(address) if attributes is not None else None,
        )
        for address in addresses
        if attributes is None or address in attributes
    }


def _width(address: IPAddress) -> int:
    return 32 if address.version == 4 else 128


# --- aggregation ---------------------------------------------------------------------------------


def covering(address: IPAddress, length: int) -> IPNetwork:
    """The prefix of `length` that holds `address`."""
    return IPNetwork(f"{address}/{length}").cidr


def aggregates(
    pool: PoolView, announced: Mapping[IPAddress, Iterable[str]]
) -> dict[IPNetwork, tuple[str, ...]]:
    """The covering prefixes an aggregating pool announces, with their nodes.

    `announced` maps each address of the pool held by some Service to the nodes it would be
    announced from on its own (`announcing_nodes` of each Service holding it, together).
    Every such address is covered by exactly one prefix (of `pool.aggregation_length`, never
    shorter than the pool), no prefix is announced without an address in it, and a prefix is
    announced from every node any address inside it is: with Local traffic policy a node may
    so receive traffic for a Service it has no endpoint of (MetalLB's caveat)."""
    length = pool.aggregation_length
    if length is None:
        return {}
    length = max(length, pool.cidr.prefixlen)
    found: dict[IPNetwork, set[str]] = {}
    for address, nodes in announced.items():
        if address not in pool.cidr:
            continue
        found.setdefault(covering(address, length), set()).update(nodes)
    return {prefix: tuple(sorted(nodes)) for prefix, nodes in sorted(found.items())}


def aggregate_name(pool: str, prefix: IPNetwork) -> str:
    """DNS-safe and stable: the pool's name, the prefix's digits and its length."""
    if prefix.version == 4:
        return f"{pool}-{str(prefix.network).replace('.', '-')}-{prefix.prefixlen}"
    return f"{pool}-{int(prefix.network):032x}-{prefix.prefixlen}"


def aggregate_advertisements(
    pool: PoolView, announced: Mapping[IPAddress, Iterable[str]]
) -> dict[str, dict[str, object]]:
    """The BGPAdvertisement specs of an aggregating pool, by object name (the pool's
    attributes on each)."""
    return {
        aggregate_name(pool.name, prefix): _spec(prefix, nodes, pool.attributes)
        for prefix, nodes in aggregates(pool, announced).items()
    }
