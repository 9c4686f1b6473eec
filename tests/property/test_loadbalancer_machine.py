"""The LoadBalancer reconciler under random Service churn, against invariants: no address is
held by two Services unless they share it by key, every held address is allocated in its pool
exactly once, pending Services hold nothing new, and adopting the status afresh (a controller
restart) gives back the same ownership."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from netaddr import IPAddress, IPNetwork

from sart.k8s.reconcile.loadbalancer import LoadBalancerAllocator, PoolView, ServiceView

POOLS = (
    PoolView(name="auto", cidr=IPNetwork("10.0.0.0/29"), auto_assign=True),  # 6 usable
    PoolView(name="named", cidr=IPNetwork("10.0.1.0/30")),  # 2 usable
    PoolView(name="six", cidr=IPNetwork("2001:db8::/126")),  # 4
)
NAMES = [f"s{i}" for i in range(8)]
REQUESTS = st.sampled_from(
    [
        {},
        {"sart.terassyi.net/addresspool": "named"},
        {"sart.terassyi.net/addresspool": "named,six"},
        {"sart.terassyi.net/loadBalancerIPs": "10.0.0.5"},
        {"sart.terassyi.net/loadBalancerIPs": "10.0.1.1"},
        {"sart.terassyi.net/allow-shared-ip": "k"},
        {"sart.terassyi.net/addresspool": "named", "sart.terassyi.net/allow-shared-ip": "k"},
        # pools and addresses together, as the original allows: the address from its pool,
        # one address from each other pool named
        {
            "sart.terassyi.net/addresspool": "named,six",
            "sart.terassyi.net/loadBalancerIPs": "10.0.1.2",
        },
        {
            "sart.terassyi.net/addresspool": "auto,named",
            "sart.terassyi.net/loadBalancerIPs": "10.0.1.1",
            "sart.terassyi.net/allow-shared-ip": "k",
        },
        {
            "sart.terassyi.net/addresspool": "named",
            "sart.terassyi.net/loadBalancerIPs": "2001:db8::1",
        },  # outside the pool named: refused
    ]
)


class LoadBalancerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.lb = LoadBalancerAllocator()
        assert self.lb.set_pools(POOLS) == []
        self.services: dict[str, ServiceView] = {}

    def _status(self, name: str) -> ServiceView:
        service = self.services[name]
        held = self.lb.owned.get(service.key, ())
        return ServiceView(
            namespace=service.namespace,
            name=service.name,
            type=service.type,
            annotations=service.annotations,
            ports=service.ports,
            ingress=tuple(str(a) for a in held),
        )

    @rule(name=st.sampled_from(NAMES), annotations=REQUESTS, port=st.integers(1, 3))
    def apply(self, name: str, annotations: dict[str, str], port: int) -> None:
        service = ServiceView(
            namespace="default",
            name=name,
            type="LoadBalancer",
            annotations=annotations,
            ports=(("TCP", port),),
        )
        self.services[name] = service
        before = self.lb.owned.get(service.key)
        plan = self.lb.reconcile(service)
        assert plan.addresses == self.lb.owned.get(service.key, ())
        if plan.pending:
            # a failed request keeps what it had, unless it may no longer share it
            assert plan.addresses in ((), before or ())

    @rule(name=st.sampled_from(NAMES))
    def delete(self, name: str) -> None:
        service = self.services.pop(name, None)
        if service is not None:
            plan = self.lb.reconcile(
                ServiceView(namespace="default", name=name, type="LoadBalancer", deleting=True)
            )
            assert plan.addresses == () and service.key not in self.lb.owned

    @rule(name=st.sampled_from(NAMES))
    def make_cluster_ip(self, name: str) -> None:
        if name in self.services:
            self.services[name] = ServiceView(namespace="default", name=name, type="ClusterIP")
            assert self.lb.reconcile(self.services[name]).addresses == ()

    @rule()
    def restart(self) -> None:
        """A new controller adopts the Services' status: the same ownership, no conflict."""
        fresh = LoadBalancerAllocator()
        fresh.set_pools(POOLS)
        conflicts = fresh.adopt(self._status(n) for n in self.services)
        assert conflicts == []
        assert fresh.owned == {k: v for k, v in self.lb.owned.items() if v}
        self.lb = fresh

    @invariant()
    def no_address_is_double_allocated(self) -> None:
        holders: dict[IPAddress, list[str]] = {}
        for key, addresses in self.lb.owned.items():
            assert len(set(addresses)) == len(addresses)
            for address in addresses:
                holders.setdefault(address, []).append(key)
        for address, keys in holders.items():
            if len(keys) > 1:  # only Services with one sharing key and no port clash
                shares = [self.lb.shares[k] for k in keys]
                assert all(s.compatible(t) for s in shares for t in shares if s is not t)
            pool = self.lb.allocator.pool(self.lb.allocator.pool_of(address))
            assert address in pool
        used = sum(self.lb.allocator.pool(p.name).used for p in POOLS)
        assert used == len(holders)  # nothing leaked, nothing allocated twice


TestLoadBalancerMachine = LoadBalancerMachine.TestCase
