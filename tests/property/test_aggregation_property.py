"""Aggregating pools under random allocations and releases: every address a Service holds is
covered by exactly one announced prefix, no prefix is announced without an address in it, each
prefix is announced from exactly the nodes of the Services inside it, and a pool that does not
aggregate announces nothing here (its addresses have their own advertisements)."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import given
from netaddr import IPAddress, IPNetwork

from sart.k8s.reconcile.loadbalancer import LoadBalancerAllocator, PoolView, ServiceView

NODES = st.frozensets(st.sampled_from(["n1", "n2", "n3", "n4"]), max_size=3)


@st.composite
def pools(draw: st.DrawFn) -> tuple[PoolView, PoolView]:
    if draw(st.booleans()):
        length = draw(st.integers(24, 29))
        cidr = IPNetwork(f"10.{draw(st.integers(0, 255))}.0.0/{length}").cidr
        aggregation = draw(st.integers(length, 32))
    else:
        length = draw(st.integers(120, 125))
        cidr = IPNetwork(f"2001:db8:{draw(st.integers(0, 0xFFFF)):x}::/{length}").cidr
        aggregation = draw(st.integers(length, 128))
    aggregating = PoolView(name="agg", cidr=cidr, aggregation_length=aggregation)
    plain = PoolView(name="plain", cidr=IPNetwork("192.168.0.0/28"), auto_assign=True)
    return aggregating, plain


STEPS = st.lists(
    st.tuples(st.integers(0, 11), st.booleans(), st.sampled_from(["agg", "plain"]), NODES),
    max_size=40,
)


@given(pools(), STEPS)
def test_every_address_is_covered_by_exactly_one_announced_prefix(
    views: tuple[PoolView, PoolView], steps: list[tuple[int, bool, str, frozenset[str]]]
) -> None:
    aggregating, plain = views
    lba = LoadBalancerAllocator()
    assert lba.set_pools(views) == []
    nodes_of: dict[str, tuple[str, ...]] = {}
    for index, keep, pool, nodes in steps:
        service = ServiceView(
            namespace="default",
            name=f"s{index}",
            type="LoadBalancer" if keep else "ClusterIP",
            annotations={"sart.terassyi.net/addresspool": pool},
        )
        plan = lba.reconcile(service)
        nodes_of[service.key] = tuple(sorted(nodes))
        # an aggregating pool's addresses get no advertisement of their own; an aggregation
        # length of the host's (32, 128) is one advertisement per address
        own = plain.cidr if aggregating.aggregating else None
        assert own is None or all(a in own for a in plan.attributes)

    announced = lba.aggregate_advertisements(nodes_of)
    if not aggregating.aggregating:
        assert announced == {}
        return
    prefixes = {IPNetwork(str(spec["cidr"])): spec for _, spec in announced.values()}
    held = {
        address: key
        for key, addresses in lba.owned.items()
        for address in addresses
        if address in aggregating.cidr
    }
    for address in held:
        covering = [p for p in prefixes if address in p]
        assert len(covering) == 1, (address, covering)
        assert covering[0].prefixlen == aggregating.aggregation_length
    for prefix, spec in prefixes.items():
        inside = [a for a in held if a in prefix]
        assert inside, f"{prefix} announced without an address in it"
        expected = sorted({n for a in inside for n in nodes_of.get(held[a], ())})
        assert spec["nodes"] == expected
    assert not any(IPAddress(p.first) in plain.cidr for p in prefixes)
