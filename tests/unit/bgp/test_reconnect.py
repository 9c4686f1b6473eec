"""Reconnection (sart.bgp.reconnect): the backoff rule and the dialling machine, with time and
the jitter's draw passed in."""

from __future__ import annotations

import pytest

from sart.bgp.fsm import ConnectTcp, IdleHoldTimerExpires, ManualStart, ManualStop
from sart.bgp.reconnect import (
    BACKOFF_MAX,
    AttemptEnded,
    Phase,
    Reconnect,
    backoff,
    step,
)


@pytest.mark.parametrize(
    ("failures", "wait"),
    [(0, 5.0), (1, 5.0), (2, 10.0), (3, 20.0), (4, 40.0), (5, 60.0), (6, 60.0), (10**6, 60.0)],
)
def test_backoff_doubles_from_the_base_up_to_the_cap(failures: int, wait: float) -> None:
    assert backoff(5.0, failures, 0.0) == wait


def test_the_draw_shortens_the_wait_by_up_to_a_quarter() -> None:
    assert backoff(8.0, 2, 1.0) == 12.0
    assert backoff(8.0, 2, 0.5) == 14.0
    assert backoff(1000.0, 1, 1.0) == BACKOFF_MAX * 0.75  # the cap before the jitter


@pytest.mark.parametrize(("failures", "draw"), [(-1, 0.5), (1, -0.1), (1, 1.5)])
def test_backoff_refuses_what_cannot_be(failures: int, draw: float) -> None:
    with pytest.raises(ValueError, match=r"draw|negative"):
        backoff(5.0, failures, draw)


def test_started_it_dials_at_once_then_waits_longer_after_each_failure() -> None:
    r, actions = step(Reconnect(), ManualStart(), 5.0, 100.0)
    assert actions == (ConnectTcp(),) and r.phase is Phase.DIALLING
    r, actions = step(r, AttemptEnded(established=False, draw=0.0), 5.0, 101.0)
    assert actions == () and r == Reconnect(Phase.WAITING, 1, 106.0)
    assert r.expired(105.9) == [] and r.expired(106.0) == [IdleHoldTimerExpires()]
    r, actions = step(r, IdleHoldTimerExpires(), 5.0, 106.0)
    assert actions == (ConnectTcp(),) and r == Reconnect(Phase.DIALLING, 1)
    r, _ = step(r, AttemptEnded(established=False, draw=0.0), 5.0, 107.0)
    assert r.next_deadline() == 117.0  # twice the base after the second failure in a row


def test_a_session_that_was_established_resets_the_backoff() -> None:
    r = Reconnect(Phase.DIALLING, 4)
    r, _ = step(r, AttemptEnded(established=True, draw=0.0), 5.0, 0.0)
    assert r == Reconnect(Phase.WAITING, 0, 5.0)


def test_stopped_it_never_dials_and_starts_again_from_scratch() -> None:
    r, actions = step(Reconnect(Phase.WAITING, 3, 50.0), ManualStop(), 5.0, 10.0)
    assert r == Reconnect() and actions == ()
    assert step(r, IdleHoldTimerExpires(), 5.0, 60.0) == (r, ())
    assert step(r, ManualStart(), 5.0, 60.0) == (Reconnect(Phase.DIALLING, 0), (ConnectTcp(),))
