"""sart.fib.plan: from the speaker's Loc-RIB entries to kernel routes, the diff against the
kernel, and the grace rules of `Fib` (time passed in, no kernel, no speaker)."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from netaddr import IPAddress, IPNetwork

from sart.fib.plan import (
    Fib,
    FibConfig,
    LearnedPath,
    Route,
    RouteDiff,
    RouteFilter,
    diff,
    route_for,
    routes_from_rib,
)

CONFIG = FibConfig(grace=10.0)
P1, P2, P6 = IPNetwork("10.1.0.0/24"), IPNetwork("10.2.0.0/24"), IPNetwork("2001:db8:1::/48")


def path(
    prefix: IPNetwork | str, hop: str | None, source: str = "", best: bool = False
) -> LearnedPath:
    return LearnedPath(
        prefix=IPNetwork(prefix),
        next_hop=IPAddress(hop) if hop is not None else None,
        source=source or (hop or "192.0.2.1"),
        best=best,
    )


def route(prefix: IPNetwork | str, *hops: str, metric: int = 20, table: int = 254) -> Route:
    return Route(
        destination=IPNetwork(prefix),
        gateways=tuple(IPAddress(h) for h in hops),
        metric=metric,
        table=table,
    )


# --- route_for ------------------------------------------------------------------------------


def test_one_path_is_one_next_hop_with_the_configured_table_protocol_and_metric() -> None:
    config = FibConfig(table=100, protocol=200, metric=50)
    got = route_for(P1, [path(P1, "10.0.0.2", best=True)], config)
    assert got == Route(
        destination=P1, gateways=(IPAddress("10.0.0.2"),), table=100, protocol=200, metric=50
    )


def test_the_multipath_set_is_every_path_of_the_entry_not_only_the_best() -> None:
    # The API flags only the first path `best`; the others are its multipath peers.
    entry = [path(P1, "10.0.0.3", best=True), path(P1, "10.0.0.2")]
    got = route_for(P1, entry, CONFIG)
    assert got is not None and got.multipath
    assert got.gateways == (IPAddress("10.0.0.2"), IPAddress("10.0.0.3"))  # sorted: a set


def test_ipv6() -> None:
    got = route_for(P6, [path(P6, "2001:db8::2"), path(P6, "2001:db8::3")], CONFIG)
    assert got == route(P6, "2001:db8::2", "2001:db8::3")


def test_a_prefix_we_originate_gets_no_route() -> None:
    assert route_for(P1, [path(P1, None, source="local", best=True)], CONFIG) is None
    assert (
        route_for(P1, [path(P1, "10.0.0.1", source="local"), path(P1, "10.0.0.2")], CONFIG) is None
    )


@pytest.mark.parametrize(
    "hop", [None, "0.0.0.0", "2001:db8::2"], ids=["missing", "unspecified", "other-family"]
)
def test_paths_without_a_usable_next_hop_are_skipped(hop: str | None) -> None:
    assert route_for(P1, [path(P1, hop, source="192.0.2.9")], CONFIG) is None
    got = route_for(P1, [path(P1, hop, source="192.0.2.9"), path(P1, "10.0.0.2")], CONFIG)
    assert got == route(P1, "10.0.0.2")


def test_ipv6_link_local_and_unspecified_next_hops_are_skipped() -> None:
    assert route_for(P6, [path(P6, "fe80::1", source="2001:db8::1")], CONFIG) is None
    assert route_for(P6, [path(P6, "::", source="2001:db8::1")], CONFIG) is None


def test_no_paths_no_route() -> None:
    assert route_for(P1, [], CONFIG) is None


# --- the filter -----------------------------------------------------------------------------


def test_by_default_everything_but_the_default_routes() -> None:
    allow = RouteFilter()
    assert allow.allows(P1) and allow.allows(P6) and allow.allows(IPNetwork("10.0.0.1/32"))
    assert not allow.allows(IPNetwork("0.0.0.0/0"))
    assert not allow.allows(IPNetwork("::/0"))


def test_an_allow_list_takes_what_lies_inside_its_prefixes() -> None:
    allow = RouteFilter(prefixes=(IPNetwork("10.1.0.0/16"), IPNetwork("2001:db8::/32")))
    assert allow.allows(IPNetwork("10.1.0.0/16"))
    assert allow.allows(IPNetwork("10.1.2.3/32"))
    assert allow.allows(P6)
    assert not allow.allows(IPNetwork("10.0.0.0/8"))  # wider than the allowed one
    assert not allow.allows(P2)
    assert not allow.allows(IPNetwork("0.0.0.0/0"))


def test_the_default_route_only_when_named() -> None:
    allow = RouteFilter(prefixes=(IPNetwork("0.0.0.0/0"),))
    assert allow.allows(IPNetwork("0.0.0.0/0"))
    assert allow.allows(P1)
    assert not allow.allows(P6)  # ::/0 is another family


def test_families() -> None:
    allow = RouteFilter(families=frozenset({6}))
    assert allow.allows(P6) and not allow.allows(P1)


def test_a_filtered_prefix_gets_no_route() -> None:
    config = FibConfig(filter=RouteFilter(prefixes=(P2,)))
    assert route_for(P1, [path(P1, "10.0.0.2")], config) is None
    assert route_for(P2, [path(P2, "10.0.0.2")], config) == route(P2, "10.0.0.2")


def test_routes_from_a_whole_rib_group_paths_by_prefix() -> None:
    rib = [
        path(P1, "10.0.0.2", best=True),
        path(P1, "10.0.0.3"),
        path(P2, None, source="local", best=True),
        path(P6, "2001:db8::2", best=True),
    ]
    assert routes_from_rib(rib, CONFIG) == {
        P1: route(P1, "10.0.0.2", "10.0.0.3"),
        P6: route(P6, "2001:db8::2"),
    }


def test_values_are_checked() -> None:
    with pytest.raises(ValueError, match="metric"):
        FibConfig(metric=0)
    with pytest.raises(ValueError, match="protocol"):
        FibConfig(protocol=256)
    with pytest.raises(ValueError, match="grace"):
        FibConfig(grace=-1)


# --- diff -----------------------------------------------------------------------------------


def test_diff_adds_what_is_missing_and_deletes_what_is_not_wanted() -> None:
    desired = {P1: route(P1, "10.0.0.2")}
    observed = [route(P2, "10.0.0.2")]
    assert diff(desired, observed) == RouteDiff((route(P1, "10.0.0.2"),), (route(P2, "10.0.0.2"),))


def test_diff_replaces_changed_next_hops_in_place() -> None:
    desired = {P1: route(P1, "10.0.0.2", "10.0.0.3")}
    assert diff(desired, [route(P1, "10.0.0.2")]) == RouteDiff((desired[P1],), ())


def test_diff_of_equal_sides_is_empty_whatever_the_next_hop_order() -> None:
    assert not diff({P1: route(P1, "10.0.0.2", "10.0.0.3")}, [route(P1, "10.0.0.3", "10.0.0.2")])


def test_a_route_at_another_metric_goes_and_the_right_one_comes() -> None:
    old = route(P1, "10.0.0.2", metric=30)
    assert diff({P1: route(P1, "10.0.0.2")}, [old]) == RouteDiff((route(P1, "10.0.0.2"),), (old,))


ADDRESSES = st.sampled_from(["10.0.0.2", "10.0.0.3", "10.0.0.4"])
PREFIXES = st.sampled_from([P1, P2, IPNetwork("10.3.0.0/24")])
ROUTES = st.builds(
    lambda prefix, hops, metric: route(prefix, *hops, metric=metric),
    PREFIXES,
    st.lists(ADDRESSES, min_size=1, max_size=3),
    st.sampled_from([20, 30]),
)


def apply(kernel: dict[tuple[IPNetwork, int, int], Route], changes: RouteDiff) -> None:
    """A kernel table as a model: routes keyed as the kernel keys them."""
    for r in changes.delete:
        assert r.key in kernel, f"delete of a route that is not there: {r}"
        del kernel[r.key]
    for r in changes.replace:
        kernel[r.key] = r


@given(st.lists(ROUTES), st.lists(ROUTES, unique_by=lambda r: r.key))
def test_applying_the_diff_leaves_exactly_the_desired_routes(
    wanted: list[Route], found: list[Route]
) -> None:
    desired = {r.destination: r for r in wanted}
    kernel = {r.key: r for r in found}
    changes = diff(desired, found)
    apply(kernel, changes)
    assert sorted(kernel.values(), key=str) == sorted(desired.values(), key=str)
    assert not diff(desired, kernel.values())  # idempotent: a restart changes nothing


# --- Fib: events and grace ------------------------------------------------------------------


def kernel_after(fib: Fib, found: Iterable[Route], *steps: RouteDiff) -> set[Route]:
    kernel = {r.key: r for r in found}
    for step in steps:
        apply(kernel, step)
    return set(kernel.values())


def test_events_install_change_and_withdraw() -> None:
    fib = Fib(CONFIG)
    first = fib.synchronise([], [], now=0.0, speaker_uptime=100.0)
    add = fib.best_path_changed(P1, [path(P1, "10.0.0.2", best=True)])
    assert add == RouteDiff((route(P1, "10.0.0.2"),), ())
    ecmp = fib.best_path_changed(P1, [path(P1, "10.0.0.2", best=True), path(P1, "10.0.0.3")])
    assert ecmp == RouteDiff((route(P1, "10.0.0.2", "10.0.0.3"),), ())
    gone = fib.best_path_changed(P1, [])
    assert gone == RouteDiff((), (route(P1, "10.0.0.2", "10.0.0.3"),))
    assert kernel_after(fib, [], first, add, ecmp, gone) == set()
    assert fib.best_path_changed(P1, []) == RouteDiff()  # nothing to remove twice


def test_a_prefix_that_becomes_ours_loses_its_route() -> None:
    fib = Fib(CONFIG)
    fib.synchronise([path(P1, "10.0.0.2")], [], now=0.0, speaker_uptime=100.0)
    changes = fib.best_path_changed(P1, [path(P1, None, source="local", best=True)])
    assert changes == RouteDiff((), (route(P1, "10.0.0.2"),))


def test_a_long_running_speaker_makes_stale_routes_go_at_once() -> None:
    fib = Fib(CONFIG)  # this daemon restarted; the speaker has been up for a while
    found = [route(P1, "10.0.0.2"), route(P2, "10.0.0.9")]
    changes = fib.synchronise([path(P1, "10.0.0.2")], found, now=0.0, speaker_uptime=60.0)
    assert changes == RouteDiff((), (route(P2, "10.0.0.9"),))
    assert fib.next_deadline() is None


def test_a_restarted_speaker_keeps_stale_routes_for_the_rest_of_the_grace_time() -> None:
    fib = Fib(CONFIG)
    found = [route(P1, "10.0.0.2"), route(P2, "10.0.0.9")]
    changes = fib.synchronise([], found, now=100.0, speaker_uptime=2.0)
    assert changes == RouteDiff()
    assert fib.next_deadline() == 108.0
    relearned = fib.best_path_changed(P1, [path(P1, "10.0.0.2")])
    assert relearned == RouteDiff()  # already in the kernel as wanted: not touched
    assert fib.handle_timer(107.9) == RouteDiff()
    assert fib.handle_timer(108.0) == RouteDiff((), (route(P2, "10.0.0.9"),))
    assert fib.next_deadline() is None
    assert fib.installed == {P1: route(P1, "10.0.0.2")}


def test_an_event_for_a_stale_prefix_settles_it_at_once() -> None:
    fib = Fib(CONFIG)
    fib.synchronise([], [route(P2, "10.0.0.9")], now=0.0, speaker_uptime=0.0)
    assert fib.best_path_changed(P2, []) == RouteDiff((), (route(P2, "10.0.0.9"),))
    assert fib.next_deadline() is None


def test_a_conflicting_route_for_a_wanted_prefix_goes_at_once() -> None:
    fib = Fib(CONFIG)
    old = route(P1, "10.0.0.2", metric=99)
    changes = fib.synchronise([path(P1, "10.0.0.2")], [old], now=0.0, speaker_uptime=0.0)
    assert changes == RouteDiff((route(P1, "10.0.0.2"),), (old,))


def test_routes_outlive_a_lost_speaker_for_the_grace_time_then_go() -> None:
    fib = Fib(CONFIG)
    fib.synchronise([path(P1, "10.0.0.2")], [], now=0.0, speaker_uptime=100.0)
    fib.speaker_lost(50.0)
    fib.speaker_lost(55.0)  # retries do not push the deadline
    assert fib.next_deadline() == 60.0
    assert fib.handle_timer(59.0) == RouteDiff()
    assert fib.handle_timer(60.0) == RouteDiff((), (route(P1, "10.0.0.2"),))
    assert fib.installed == {} and fib.next_deadline() is None


def test_a_speaker_back_in_time_cancels_the_flush() -> None:
    fib = Fib(CONFIG)
    fib.synchronise([path(P1, "10.0.0.2")], [], now=0.0, speaker_uptime=100.0)
    fib.speaker_lost(50.0)
    back = fib.synchronise([], [route(P1, "10.0.0.2")], now=52.0, speaker_uptime=0.5)
    assert back == RouteDiff()  # kept as stale while the speaker relearns
    assert fib.next_deadline() == 52.0 + 10.0 - 0.5
    assert fib.handle_timer(62.0) == RouteDiff((), (route(P1, "10.0.0.2"),))


def test_a_flush_takes_the_stale_routes_too() -> None:
    fib = Fib(CONFIG)
    fib.synchronise([path(P1, "10.0.0.2")], [route(P2, "10.0.0.9")], now=0.0, speaker_uptime=0.0)
    fib.speaker_lost(1.0)
    got = fib.handle_timer(11.0)
    assert set(got.delete) == {route(P1, "10.0.0.2"), route(P2, "10.0.0.9")}
    assert fib.stale == {} and fib.installed == {}


def test_no_grace_means_routes_go_when_the_speaker_does() -> None:
    fib = Fib(FibConfig(grace=0))
    fib.synchronise([path(P1, "10.0.0.2")], [route(P2, "10.0.0.9")], now=0.0, speaker_uptime=0.0)
    assert fib.stale == {}  # a speaker up for 0 s is already past a grace of 0
    fib.speaker_lost(5.0)
    assert fib.handle_timer(5.0) == RouteDiff((), (route(P1, "10.0.0.2"),))


EVENTS = st.lists(
    st.tuples(
        PREFIXES,
        st.lists(st.builds(lambda hop: path("10.0.0.0/8", hop), ADDRESSES), max_size=3),
    ),
    max_size=20,
)


@given(st.lists(ROUTES, unique_by=lambda r: r.key), EVENTS)
def test_events_after_a_sync_leave_the_kernel_as_the_final_rib_says(
    found: list[Route], events: list[tuple[IPNetwork, list[LearnedPath]]]
) -> None:
    """Level-based: whatever the kernel held, after a sync and any events the kernel holds the
    routes of the last entry seen per prefix (plus stale routes until their deadline)."""
    fib = Fib(CONFIG)
    kernel = {r.key: r for r in found}
    apply(kernel, fib.synchronise([], found, now=0.0, speaker_uptime=0.0))
    rib: dict[IPNetwork, list[LearnedPath]] = {}
    for prefix, paths in events:
        entry = [LearnedPath(prefix=prefix, next_hop=p.next_hop, source=p.source) for p in paths]
        rib[prefix] = entry
        apply(kernel, fib.best_path_changed(prefix, entry))
    apply(kernel, fib.handle_timer(CONFIG.grace))
    expected = routes_from_rib([p for entry in rib.values() for p in entry], CONFIG)
    assert sorted(kernel.values(), key=str) == sorted(expected.values(), key=str)
    assert fib.installed == expected
