"""When the speaker dials a neighbor again, sans-IO: the companion of `sart.bgp.fsm` that owns
reconnection.

RFC 4271 leaves to the implementation how a session is restarted after an error (AutomaticStart,
Event 3) and how persistent oscillation is damped (DampPeerOscillations, 8.1.1: AutomaticStart
is held back until the IdleHoldTimer, Event 13, expires). One Session, and so one `FsmState`,
lives per TCP connection; this machine lives per neighbor, across its connections, and says
when the next one is opened:

- a ManualStart dials at once;
- when an attempt ends (the connection could not be opened, or its session, or the peer's
  incoming one, ended) the IdleHoldTimer runs for `backoff(connect_retry_time, failures,
  draw)`: exponential in the attempts in a row that did not reach Established, capped, and
  jittered by a random draw the caller passes in;
- its expiry dials again; a ManualStop ends the dialling.

The transitions are a table keyed by (phase, event), as the FSM's are; deadlines go out, the
caller sleeps until them and feeds `IdleHoldTimerExpires` back.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

import attrs

from sart.bgp.fsm import ConnectTcp, IdleHoldTimerExpires, ManualStart, ManualStop

BACKOFF_MAX = 60.0  # seconds: the longest wait between two attempts
JITTER = 0.25  # the wait is drawn from the last quarter below the exponential one


def backoff(base: float, failures: int, draw: float, cap: float = BACKOFF_MAX) -> float:
    """The wait before the next attempt, after `failures` attempts in a row that did not reach
    Established (0: the last one did): `base` x 2^(failures - 1) (`base` for 0), at most `cap`,
    then shortened by up to JITTER of itself as `draw` (in [0, 1]) says, so that neighbors
    that failed together do not all dial together again."""
    if not 0.0 <= draw <= 1.0:
        raise ValueError(f"the jitter draw must be in [0, 1], not {draw}")
    if failures < 0:
        raise ValueError(f"failures cannot be negative ({failures})")
    # 2.0 ** 1023 is the largest power a float holds; the cap is reached long before.
    exponential = base * 2.0 ** min(max(failures - 1, 0), 1023)
    return min(exponential, cap) * (1.0 - JITTER * draw)


class Phase(enum.Enum):
    STOPPED = "stopped"  # no dialling: passive, administratively down, or not started
    DIALLING = "dialling"  # an attempt runs: our connection opens, or a session runs
    WAITING = "waiting"  # the IdleHoldTimer runs until the next attempt


@attrs.frozen
class AttemptEnded:
    """The attempt is over: our connection failed or its session ended (or the session of a
    connection the peer opened meanwhile)."""

    established: bool  # a session with the neighbor reached Established during the attempt
    draw: float  # the caller's random draw in [0, 1] for the jitter of the wait


Event = ManualStart | ManualStop | AttemptEnded | IdleHoldTimerExpires


@attrs.frozen
class Reconnect:
    phase: Phase = Phase.STOPPED
    failures: int = 0  # attempts in a row that did not reach Established
    dial_at: float | None = None  # the IdleHoldTimer, only WAITING

    def next_deadline(self) -> float | None:
        """When the caller must feed `expired(now)` back, or None."""
        return self.dial_at

    def expired(self, now: float) -> list[Event]:
        return [IdleHoldTimerExpires()] if self.dial_at is not None and self.dial_at <= now else []


Result = tuple[Reconnect, tuple[ConnectTcp, ...]]
Handler = Callable[[Reconnect, Event, float, float], Result]


def _dial_now(r: Reconnect, event: Event, connect_retry_time: float, now: float) -> Result:
    failures = 0 if isinstance(event, ManualStart) else r.failures
    return Reconnect(Phase.DIALLING, failures), (ConnectTcp(),)


def _stop(r: Reconnect, event: Event, connect_retry_time: float, now: float) -> Result:
    return Reconnect(), ()


def _wait(r: Reconnect, event: Event, connect_retry_time: float, now: float) -> Result:
    assert isinstance(event, AttemptEnded)
    failures = 0 if event.established else r.failures + 1
    at = now + backoff(connect_retry_time, failures, event.draw)
    return Reconnect(Phase.WAITING, failures, at), ()


def _ignore(r: Reconnect, event: Event, connect_retry_time: float, now: float) -> Result:
    return r, ()


TRANSITIONS: dict[tuple[Phase, type[Event]], Handler] = {
    (Phase.STOPPED, ManualStart): _dial_now,
    **{(phase, ManualStop): _stop for phase in Phase},
    (Phase.DIALLING, AttemptEnded): _wait,
    (Phase.WAITING, IdleHoldTimerExpires): _dial_now,
}


def step(r: Reconnect, event: Event, connect_retry_time: float, now: float) -> Result:
    """The machine after `event` at `now`, and ConnectTcp when a connection must be opened."""
    handler = TRANSITIONS.get((r.phase, type(event)), _ignore)
    return handler(r, event, connect_retry_time, now)
