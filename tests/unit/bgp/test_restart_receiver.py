"""Graceful restart, receiving side (sart.bgp.restart_receiver): what is kept, until when, and
what the RIB is told, with time passed in."""

from __future__ import annotations

from netaddr import IPAddress

from sart.bgp.messages import (
    IPV4_UNICAST,
    IPV6_UNICAST,
    GracefulRestartCapability,
    GracefulRestartFamily,
)
from sart.bgp.restart_receiver import DropPaths, MarkStale, StalePaths, SweepStale
from sart.bgp.rib import Source

PEER = Source(IPAddress("192.0.2.2"), 65002, IPAddress("10.0.0.2"))
OTHER = Source(IPAddress("192.0.2.2"), 65002, IPAddress("10.0.0.9"))
CAPABLE = GracefulRestartCapability(0, 90, (GracefulRestartFamily(1, 1, 0x80),))
BOTH = frozenset({IPV4_UNICAST, IPV6_UNICAST})


def down(
    kept: StalePaths,
    *,
    lost: bool = True,
    capability: GracefulRestartCapability | None = CAPABLE,
    honour: bool = True,
    now: float = 100.0,
) -> tuple[StalePaths, tuple[object, ...]]:
    return kept.session_down(
        PEER,
        connection_lost=lost,
        capability=capability,
        honour=honour,
        restart_time=120,
        now=now,
    )


def test_a_lost_connection_keeps_the_paths_stale_for_the_shorter_restart_time() -> None:
    kept, actions = down(StalePaths())
    assert actions == (MarkStale(PEER),)
    assert kept == StalePaths(PEER, 190.0)
    mine = GracefulRestartCapability(0, 600, CAPABLE.families)
    assert down(StalePaths(), capability=mine)[0].deadline == 220.0  # ours is shorter


def test_any_other_end_drops_the_paths_at_once() -> None:
    no_families = GracefulRestartCapability(0, 90, ())
    for kept, actions in (
        down(StalePaths(), lost=False),  # a NOTIFICATION was sent or received
        down(StalePaths(), capability=None),  # the peer cannot restart gracefully
        down(StalePaths(), capability=no_families),  # it keeps no forwarding state
        down(StalePaths(), honour=False),  # configured off, or we stop
    ):
        assert kept == StalePaths() and actions == (DropPaths(PEER),)


def test_the_restart_timer_drops_everything_when_the_peer_is_not_back() -> None:
    kept, _ = down(StalePaths())
    assert kept.expired(189.9) == (kept, ())
    assert kept.expired(190.0) == (StalePaths(), (DropPaths(PEER),))


def test_back_the_peer_has_the_stale_path_time_and_the_last_end_of_rib_sweeps() -> None:
    kept, _ = down(StalePaths())
    kept, actions = kept.session_up(PEER, BOTH, 120, 150.0)
    assert actions == () and kept.deadline == 270.0 and kept.back
    kept, actions = kept.end_of_rib(IPV4_UNICAST)
    assert actions == () and kept.end_of_rib_due == {IPV6_UNICAST}
    assert kept.end_of_rib(IPV6_UNICAST) == (StalePaths(), (SweepStale(PEER),))


def test_the_stale_path_timer_sweeps_what_was_not_sent_again() -> None:
    kept, _ = down(StalePaths())
    kept, _ = kept.session_up(PEER, BOTH, 120, 150.0)
    assert kept.expired(270.0) == (StalePaths(), (SweepStale(PEER),))


def test_a_different_speaker_coming_back_drops_the_kept_paths() -> None:
    kept, _ = down(StalePaths())
    assert kept.session_up(OTHER, BOTH, 120, 150.0) == (StalePaths(), (DropPaths(PEER),))


def test_end_of_rib_before_a_restart_or_without_one_changes_nothing() -> None:
    assert StalePaths().end_of_rib(IPV4_UNICAST) == (StalePaths(), ())
    kept, _ = down(StalePaths())
    assert kept.end_of_rib(IPV4_UNICAST) == (kept, ())  # not back yet


def test_stopping_drops_what_is_kept() -> None:
    kept, _ = down(StalePaths())
    assert kept.stopped() == (StalePaths(), (DropPaths(PEER),))
    assert StalePaths().stopped() == (StalePaths(), ())
