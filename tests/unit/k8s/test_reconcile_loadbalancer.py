"""The LoadBalancer reconciler on plain values: no cluster, no client."""

from __future__ import annotations

import attrs
from netaddr import IPAddress, IPNetwork

from sart.k8s.attributes import (
    COMMUNITIES_ANNOTATION,
    LARGE_COMMUNITIES_ANNOTATION,
    LOCAL_PREF_ANNOTATION,
    MED_ANNOTATION,
    Attributes,
)
from sart.k8s.reconcile.loadbalancer import (
    EndpointView,
    LoadBalancerAllocator,
    PoolView,
    ServiceView,
    advertisements,
    aggregate_name,
    aggregates,
    announcing_nodes,
)

DEFAULT = PoolView(name="default-lb-pool", cidr=IPNetwork("10.0.1.0/30"), auto_assign=True)
OTHER = PoolView(name="other", cidr=IPNetwork("10.0.2.0/24"))
V6 = PoolView(name="v6", cidr=IPNetwork("2001:db8::/120"))
TEAM = PoolView(name="team", cidr=IPNetwork("10.0.3.0/24"), namespaces=("team-a",))


def allocator(*pools: PoolView) -> LoadBalancerAllocator:
    made = LoadBalancerAllocator()
    assert made.set_pools(pools or (DEFAULT, OTHER, V6, TEAM)) == []
    return made


def lb(name: str = "web", **kwargs: object) -> ServiceView:
    fields: dict[str, object] = {"type": "LoadBalancer", **kwargs}
    return ServiceView(namespace="default", name=name, **fields)  # type: ignore[arg-type]


def test_default_pool_lowest_free_first_and_stable() -> None:
    lba = allocator()
    plan = lba.reconcile(lb())
    assert plan.ingress == ("10.0.1.1",)  # network address skipped
    assert plan.events[0].message == "allocated 10.0.1.1 from default-lb-pool"
    again = lba.reconcile(lb(ingress=("10.0.1.1",)))
    assert again.ingress == ("10.0.1.1",) and not again.events


def test_named_pools_give_one_address_each_and_specific_addresses() -> None:
    lba = allocator()
    plan = lba.reconcile(lb(annotations={"sart.terassyi.net/addresspool": "other,v6"}))
    assert plan.ingress == ("10.0.2.1", "2001:db8::")  # IPv6 pools have no broadcast to skip
    alias = lba.reconcile(lb("alias", annotations={"sart.terassyi.net/address-pool": "other"}))
    assert alias.ingress == ("10.0.2.2",)
    fixed = lba.reconcile(
        lb("fixed", annotations={"sart.terassyi.net/loadBalancerIPs": "10.0.2.9"})
    )
    assert fixed.ingress == ("10.0.2.9",)
    legacy = lba.reconcile(lb("legacy", load_balancer_ip="10.0.2.10"))
    assert legacy.ingress == ("10.0.2.10",)
    taken = lba.reconcile(lb("late", annotations={"sart.terassyi.net/loadBalancerIPs": "10.0.2.9"}))
    assert taken.ingress == () and taken.pending
    assert taken.events[0].type == "Warning" and "10.0.2.9" in taken.events[0].message


def test_exhaustion_then_release_serves_the_pending_one() -> None:
    lba = allocator()
    first, second = lba.reconcile(lb("a")), lba.reconcile(lb("b"))
    assert (first.ingress, second.ingress) == (("10.0.1.1",), ("10.0.1.2",))  # /30: two usable
    full = lba.reconcile(lb("c"))
    assert full.pending and full.events[0].reason == "PoolExhausted"
    assert "default-lb-pool" in full.events[0].message
    gone = lba.reconcile(lb("a", deleting=True))
    assert gone.ingress == ()
    assert lba.pending == {"default/c"}
    assert lba.reconcile(lb("c")).ingress == ("10.0.1.1",)


def test_type_change_other_class_and_annotation_change() -> None:
    lba = allocator()
    lba.reconcile(lb())
    plan = lba.reconcile(attrs.evolve(lb(), type="ClusterIP"))
    assert plan.ingress == () and plan.events[0].reason == "AddressReleased"
    assert lba.reconcile(lb("x", load_balancer_class="other.io/lb")).ingress == ()
    moved = lba.reconcile(lb(annotations={"sart.terassyi.net/addresspool": "other"}))
    assert moved.ingress == ("10.0.2.1",)
    back = lba.reconcile(lb())
    assert back.ingress == ("10.0.1.1",) and lba.allocator.pool("other").used == 0


def test_bad_requests_keep_what_the_service_has() -> None:
    lba = allocator()
    lba.reconcile(lb())
    for wanted, text in (
        ({"sart.terassyi.net/addresspool": "nope"}, "no AddressPool 'nope'"),
        ({"sart.terassyi.net/loadBalancerIPs": "10.0.2.x"}, "'10.0.2.x' is not an IP address"),
        ({"sart.terassyi.net/addresspool": "team"}, "serves only the namespaces team-a"),
    ):
        plan = lba.reconcile(lb(annotations=wanted))
        assert plan.ingress == ("10.0.1.1",) and text in plan.events[0].message


def test_namespace_limited_pool() -> None:
    lba = allocator()
    service = ServiceView(
        namespace="team-a",
        name="api",
        type="LoadBalancer",
        annotations={"sart.terassyi.net/addresspool": "team"},
    )
    assert lba.reconcile(service).ingress == ("10.0.3.1",)


def test_adopt_rebuilds_and_reports_conflicts() -> None:
    lba = allocator()
    conflicts = lba.adopt(
        [
            lb("a", ingress=("10.0.1.2",)),
            lb("b", ingress=("10.0.1.2",)),
            lb("c", ingress=("192.0.2.1",)),
            lb("d", type="ClusterIP", ingress=("10.0.1.1",)),
        ]
    )
    assert conflicts == [
        "default/b and default/a both claim 10.0.1.2: default/a keeps it",
        "default/c: 192.0.2.1 is in no pool",
    ]
    assert lba.owned == {"default/a": (IPAddress("10.0.1.2"),)}
    assert lba.reconcile(lb("b")).ingress == ("10.0.1.1",)  # afresh, not the contested one


def test_announcing_nodes_cluster_and_local_with_terminating_fallback() -> None:
    speakers = ["a", "b", "c"]
    ready_b = EndpointView("b", ready=True, serving=True, terminating=False)
    leaving_a = EndpointView("a", ready=False, serving=True, terminating=True)
    starting_c = EndpointView("c", ready=False, serving=False, terminating=False)
    gone_x = EndpointView("x", ready=True, serving=True, terminating=False)  # no speaker there
    assert announcing_nodes("Cluster", speakers, []) == ("a", "b", "c")
    assert announcing_nodes("Local", speakers, [ready_b, leaving_a, gone_x]) == ("b",)
    # mid rolling update: nothing ready, the terminating pod still serves: keep announcing it
    assert announcing_nodes("Local", speakers, [leaving_a, starting_c]) == ("a",)
    assert announcing_nodes("Local", speakers, [starting_c]) == ()


def test_advertisements_are_named_by_service_and_address() -> None:
    specs = advertisements(lb(), [IPAddress("10.0.1.1"), IPAddress("2001:db8::1")], ("a",))
    assert specs == {
        "web-10-0-1-1": {
            "cidr": "10.0.1.1/32",
            "type": "service",
            "protocol": "ipv4",
            "nodes": ["a"],
        },
        "web-20010db8000000000000000000000001": {
            "cidr": "2001:db8::1/128",
            "type": "service",
            "protocol": "ipv6",
            "nodes": ["a"],
        },
    }


def _sharing(name: str, port: int, **kwargs: object) -> ServiceView:
    annotations = {"sart.terassyi.net/allow-shared-ip": "team-key"}
    return lb(name, annotations=annotations, ports=(("TCP", port),), **kwargs)


def test_shared_addresses_by_key_when_ports_do_not_clash() -> None:
    lba = allocator()
    first = lba.reconcile(_sharing("http", 80))
    second = lba.reconcile(_sharing("https", 443))
    assert first.ingress == second.ingress == ("10.0.1.1",)
    assert "(shared: 10.0.1.1)" in second.events[0].message
    clash = lba.reconcile(_sharing("other-http", 80))  # port 80 taken on 10.0.1.1
    assert clash.ingress == ("10.0.1.2",)
    stranger = lba.reconcile(lb("plain"))  # no key: never shares; the /30 is full now
    assert stranger.pending
    lba.reconcile(_sharing("http", 80, deleting=True))
    assert lba.allocator.pool("default-lb-pool").used == 2  # https still holds 10.0.1.1
    lba.reconcile(_sharing("https", 443, deleting=True))
    assert lba.allocator.pool("default-lb-pool").used == 1  # the last holder freed it


def test_local_policy_shares_only_with_the_same_selector() -> None:
    lba = allocator()
    one = lba.reconcile(_sharing("a", 80, external_traffic_policy="Local", selector={"app": "x"}))
    same = lba.reconcile(_sharing("b", 81, external_traffic_policy="Local", selector={"app": "x"}))
    other = lba.reconcile(_sharing("c", 82, external_traffic_policy="Local", selector={"app": "y"}))
    assert one.ingress == same.ingress != other.ingress


def test_specific_shared_address_and_adopt_keeps_sharers() -> None:
    lba = allocator()
    wanted = {"sart.terassyi.net/loadBalancerIPs": "10.0.2.5"}
    first = lba.reconcile(_sharing("a", 80))
    assert first.ingress == ("10.0.1.1",)
    fixed = {**wanted, "sart.terassyi.net/allow-shared-ip": "team-key"}
    assert lba.reconcile(lb("p", annotations=fixed, ports=(("TCP", 1),))).ingress == ("10.0.2.5",)
    assert lba.reconcile(lb("q", annotations=fixed, ports=(("TCP", 2),))).ingress == ("10.0.2.5",)
    refused = lba.reconcile(lb("r", annotations=wanted))  # no key: 10.0.2.5 is in use
    assert refused.pending and "in use by default/p, default/q" in refused.events[0].message
    fresh = allocator()
    conflicts = fresh.adopt(
        [
            _sharing("a", 80, ingress=("10.0.1.1",)),
            _sharing("b", 443, ingress=("10.0.1.1",)),
            _sharing("c", 80, ingress=("10.0.1.1",)),  # clashes with a on port 80
        ]
    )
    assert conflicts == ["default/c and default/a both claim 10.0.1.1: default/a keeps it"]
    assert fresh.holders[IPAddress("10.0.1.1")] == {"default/a", "default/b"}


def test_dual_stack_services_get_one_address_per_family_from_the_autoassign_pools() -> None:
    auto6 = PoolView(name="auto6", cidr=IPNetwork("2001:db8:1::/120"), auto_assign=True)
    lba = allocator(DEFAULT, OTHER, auto6)
    dual = lba.reconcile(lb("dual", ip_families=("IPv4", "IPv6")))
    assert dual.ingress == ("10.0.1.1", "2001:db8:1::")
    six = lba.reconcile(lb("six", ip_families=("IPv6",)))
    assert six.ingress == ("2001:db8:1::1",)
    second = PoolView(name="second", cidr=IPNetwork("10.0.9.0/24"), auto_assign=True)
    problems = LoadBalancerAllocator().set_pools([DEFAULT, second])
    assert problems == [
        "AddressPool second is a second autoAssign pool for IPv4 (after default-lb-pool):"
        " not used for autoAssign"
    ]
    only_v4 = allocator(DEFAULT)
    plan = only_v4.reconcile(lb("v6", ip_families=("IPv6",)))
    assert "no AddressPool with autoAssign for IPv6" in plan.events[0].message


def test_a_failed_request_keeps_a_shared_address_only_while_it_may_share() -> None:
    """Found by the state machine: a Service that drops its sharing key and asks for a taken
    address must not keep the address it shared, or a restart would see a conflict."""
    lba = allocator()
    lba.reconcile(lb("p", annotations={"sart.terassyi.net/loadBalancerIPs": "10.0.2.5"}))
    assert lba.reconcile(_sharing("a", 80)).ingress == ("10.0.1.1",)
    assert lba.reconcile(_sharing("b", 81)).ingress == ("10.0.1.1",)
    taken = {"sart.terassyi.net/loadBalancerIPs": "10.0.2.5"}
    plan = lba.reconcile(lb("a", annotations=taken, ports=(("TCP", 80),)))
    assert plan.pending and plan.ingress == ()  # may not share any more: let go
    assert lba.holders[IPAddress("10.0.1.1")] == {"default/b"}
    kept = lba.reconcile(lb("b", annotations=taken, ports=(("TCP", 81),)))
    assert kept.pending and kept.ingress == ("10.0.1.1",)  # now its sole holder: keeps it


def test_named_pools_and_named_addresses_combine_as_in_the_original() -> None:
    """`addresspool: a,b` with `loadBalancerIPs: <an address of b>`: that address from b and
    one address from a; all or nothing; an address outside the named pools is refused."""
    lba = allocator()
    both = {"sart.terassyi.net/addresspool": "default-lb-pool,other",
            "sart.terassyi.net/loadBalancerIPs": "10.0.2.20"}  # fmt: skip
    plan = lba.reconcile(lb(annotations=both))
    assert plan.ingress == ("10.0.2.20", "10.0.1.1") and not plan.pending
    again = lba.reconcile(lb(annotations=both, ingress=plan.ingress))
    assert again.ingress == plan.ingress and not again.events  # satisfied: nothing moves
    lba.reconcile(lb("filler-1"))
    lba.reconcile(lb("filler-2"))  # default-lb-pool (a /30) is full now
    full = dict(both, **{"sart.terassyi.net/loadBalancerIPs": "10.0.2.21"})
    late = lba.reconcile(lb("late", annotations=full))
    assert late.ingress == () and late.pending
    # the named address was not kept half-allocated
    assert IPAddress("10.0.2.21") not in lba.holders
    assert IPAddress("10.0.2.21") not in lba.allocator.pool("other")
    outside = dict(both, **{"sart.terassyi.net/loadBalancerIPs": "2001:db8::5"})
    refused = lba.reconcile(lb("outside", annotations=outside))
    assert refused.ingress == ()
    assert "2001:db8::5 is in none of the pools named" in refused.events[0].message


def test_a_refused_request_does_not_keep_an_address_it_may_no_longer_share() -> None:
    """Found by the state machine's deep run: a Service sharing an address by key, changed to
    a request that cannot be served and no sharing key, kept the shared address, so a restart
    saw two Services claim it. It now keeps only what its new spec allows."""
    lba = allocator()
    shared = {"sart.terassyi.net/allow-shared-ip": "k"}
    first = lba.reconcile(lb("s0", annotations=shared, ports=(("TCP", 2),)))
    second = lba.reconcile(lb("s5", annotations=shared, ports=(("TCP", 1),)))
    assert first.ingress == second.ingress
    refused = {"sart.terassyi.net/addresspool": "other",
               "sart.terassyi.net/loadBalancerIPs": "2001:db8::1"}  # fmt: skip
    plan = lba.reconcile(lb("s0", annotations=refused, ports=(("TCP", 1),)))
    assert plan.ingress == () and plan.events[0].reason == "InvalidRequest"
    fresh = allocator()
    statuses = [
        lb("s5", annotations=shared, ports=(("TCP", 1),), ingress=second.ingress),
        lb("s0", annotations=refused, ports=(("TCP", 1),), ingress=plan.ingress),
    ]
    assert fresh.adopt(statuses) == []


# --- BGP attributes and aggregation ---------------------------------------------------------------

TAGGED = PoolView(
    name="tagged",
    cidr=IPNetwork("10.0.4.0/24"),
    attributes=Attributes.of(communities=["65000:1"], local_pref=200, med=5),
)
AGGREGATED = PoolView(
    name="agg",
    cidr=IPNetwork("10.0.5.0/24"),
    attributes=Attributes.of(communities=["65000:9"]),
    aggregation_length=28,
)


def test_pool_attributes_with_the_service_annotations_over_them() -> None:
    lba = allocator(TAGGED, V6)
    annotations = {
        "sart.terassyi.net/addresspool": "tagged,v6",
        COMMUNITIES_ANNOTATION: "65000:100, no-export",
        LARGE_COMMUNITIES_ANNOTATION: "65000:1:2",
        MED_ANNOTATION: "7",
    }
    plan = lba.reconcile(lb(annotations=annotations))
    v4, v6 = plan.addresses
    # communities: the union; MED: the Service's; LOCAL_PREF: the pool's (the Service says none)
    assert plan.attributes[v4].to_attrs() == (
        "community=65000:1",
        "community=65000:100",
        "community=NO_EXPORT",
        "large-community=65000:1:2",
        "local-pref=200",
        "med=7",
    )
    assert plan.attributes[v6] == Attributes.of(
        communities=["65000:100", "no-export"], large_communities=["65000:1:2"], med=7
    )
    specs = advertisements(lb(), plan.addresses, ("a",), plan.attributes)
    assert specs["web-10-0-4-1"]["attrs"] == list(plan.attributes[v4].to_attrs())
    assert not [e for e in plan.events if e.type == "Warning"]


def test_a_malformed_annotation_is_a_warning_naming_the_service_and_value() -> None:
    lba = allocator(TAGGED)
    annotations = {COMMUNITIES_ANNOTATION: "65000:100,65000:x", LOCAL_PREF_ANNOTATION: "300"}
    plan = lba.reconcile(lb(annotations={"sart.terassyi.net/addresspool": "tagged", **annotations}))
    assert plan.ingress == ("10.0.4.1",)
    (warning,) = [e for e in plan.events if e.type == "Warning"]
    assert warning.reason == "InvalidBGPAttributes"
    assert "Service default/web" in warning.message
    assert f"{COMMUNITIES_ANNOTATION}: '65000:x' is not a community" in warning.message
    # the bad annotation is left out whole; the good one applies, over the pool's
    assert plan.attributes[IPAddress("10.0.4.1")] == Attributes.of(
        communities=["65000:1"], local_pref=300, med=5
    )


def test_no_attributes_no_attrs_field() -> None:
    plan = allocator().reconcile(lb())
    specs = advertisements(lb(), plan.addresses, ("a",), plan.attributes)
    assert "attrs" not in specs["web-10-0-1-1"]


def test_aggregating_pool_announces_covering_prefixes_from_the_union_of_nodes() -> None:
    lba = allocator(AGGREGATED)
    named = {"sart.terassyi.net/addresspool": "agg"}
    first = lba.reconcile(lb("a", annotations=named))
    second = lba.reconcile(lb("b", annotations=named))
    far = lba.reconcile(
        lb("c", annotations={**named, "sart.terassyi.net/loadBalancerIPs": "10.0.5.200"})
    )
    assert (first.ingress, second.ingress, far.ingress) == (
        ("10.0.5.1",),
        ("10.0.5.2",),
        ("10.0.5.200",),
    )
    # no per-address advertisement for an aggregating pool's addresses
    assert first.attributes == {} and advertisements(lb("a"), first.addresses, (), {}) == {}
    nodes = {"default/a": ("n1",), "default/b": ("n2",), "default/c": ("n3",)}
    assert lba.aggregate_advertisements(nodes) == {
        "agg-10-0-5-0-28": (
            "agg",
            {
                "cidr": "10.0.5.0/28",
                "type": "service",
                "protocol": "ipv4",
                "nodes": ["n1", "n2"],
                "attrs": ["community=65000:9"],
            },
        ),
        "agg-10-0-5-192-28": (
            "agg",
            {
                "cidr": "10.0.5.192/28",
                "type": "service",
                "protocol": "ipv4",
                "nodes": ["n3"],
                "attrs": ["community=65000:9"],
            },
        ),
    }
    lba.release("default/c")
    assert list(lba.aggregate_advertisements(nodes)) == ["agg-10-0-5-0-28"]


def test_service_annotations_do_not_apply_to_covering_prefixes() -> None:
    lba = allocator(AGGREGATED)
    annotations = {"sart.terassyi.net/addresspool": "agg", MED_ANNOTATION: "1"}
    plan = lba.reconcile(lb(annotations=annotations))
    (warning,) = [e for e in plan.events if e.type == "Warning"]
    assert warning.reason == "BGPAttributesIgnored" and "10.0.5.1" in warning.message


def test_aggregation_length_of_the_host_is_one_prefix_per_address() -> None:
    host = attrs.evolve(AGGREGATED, aggregation_length=32)
    lba = allocator(host)
    plan = lba.reconcile(lb(annotations={"sart.terassyi.net/addresspool": "agg"}))
    assert list(plan.attributes) == [IPAddress("10.0.5.1")]
    assert lba.aggregate_advertisements({}) == {}


def test_aggregates_cover_v6() -> None:
    pool = PoolView(name="v6agg", cidr=IPNetwork("2001:db8::/64"), aggregation_length=120)
    found = aggregates(pool, {IPAddress("2001:db8::1:5"): ["n1"], IPAddress("2001:db8::1:7"): []})
    assert found == {IPNetwork("2001:db8::1:0/120"): ("n1",)}
    assert aggregate_name("v6agg", IPNetwork("2001:db8::1:0/120")) == (
        "v6agg-20010db8000000000000000000010000-120"
    )
