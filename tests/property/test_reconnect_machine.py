"""Random sequences of starts, stops, ended attempts and timer expiries against the dialling
rule written out here on its own (not derived from sart.bgp.reconnect): dial at once when
started, after each attempt wait base x 2^(n-1) capped at 60 s minus up to a quarter, n the
attempts in a row without an Established session (and the base after one that had it)."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from sart.bgp.fsm import ConnectTcp, IdleHoldTimerExpires, ManualStart, ManualStop
from sart.bgp.reconnect import AttemptEnded, Phase, Reconnect, step


def expected_wait(base: float, in_a_row: int) -> tuple[float, float]:
    """The bounds of the wait after `in_a_row` attempts without Established (0: the last one
    had it)."""
    longest = base
    for _ in range(in_a_row - 1):
        longest = min(longest * 2, 60.0)
    longest = min(longest, 60.0)
    return longest * 0.75, longest


class ReconnectMachine(RuleBasedStateMachine):
    @initialize(base=st.floats(0.05, 120.0))
    def start(self, base: float) -> None:
        self.base = base
        self.r = Reconnect()
        self.now = 0.0
        self.model = "stopped"  # stopped / dialling / waiting
        self.in_a_row = 0
        self.wait_until: float | None = None

    def feed(self, event: object) -> tuple[ConnectTcp, ...]:
        self.r, actions = step(self.r, event, self.base, self.now)  # type: ignore[arg-type]
        return actions

    @rule(later=st.floats(0, 200))
    def manual_start(self, later: float) -> None:
        self.now += later
        actions = self.feed(ManualStart())
        if self.model == "stopped":
            assert actions == (ConnectTcp(),)
            self.model, self.in_a_row = "dialling", 0
        else:
            assert actions == ()

    @rule(later=st.floats(0, 200))
    def manual_stop(self, later: float) -> None:
        self.now += later
        assert self.feed(ManualStop()) == ()
        self.model, self.in_a_row, self.wait_until = "stopped", 0, None

    @rule(later=st.floats(0, 200), established=st.booleans(), draw=st.floats(0, 1))
    def attempt_ended(self, later: float, established: bool, draw: float) -> None:
        self.now += later
        assert self.feed(AttemptEnded(established, draw)) == ()
        if self.model != "dialling":
            return  # nothing was being attempted
        self.in_a_row = 0 if established else self.in_a_row + 1
        low, high = expected_wait(self.base, self.in_a_row)
        deadline = self.r.next_deadline()
        assert deadline is not None
        assert low - 1e-9 <= deadline - self.now <= high + 1e-9
        self.model, self.wait_until = "waiting", deadline

    @rule(early=st.booleans())
    def timer(self, early: bool) -> None:
        deadline = self.r.next_deadline()
        if deadline is not None:
            self.now = deadline - 0.001 if early and deadline - 0.001 > self.now else deadline
        dialled = [self.feed(event) for event in self.r.expired(self.now)]
        due = self.model == "waiting" and self.wait_until is not None
        if due and self.now >= self.wait_until:  # type: ignore[operator]
            assert dialled == [(ConnectTcp(),)]
            self.model, self.wait_until = "dialling", None
        else:
            assert dialled == []

    @rule()
    def a_late_expiry_changes_nothing(self) -> None:
        if self.model != "waiting":
            before = self.r
            assert self.feed(IdleHoldTimerExpires()) == () and self.r == before

    @invariant()
    def matches_the_model(self) -> None:
        assert self.r.phase is Phase(self.model)
        assert (self.r.next_deadline() is not None) == (self.model == "waiting")
        assert self.r.failures == self.in_a_row


TestReconnectMachine = ReconnectMachine.TestCase
