"""Random event sequences against the RFC 4271 section 8.2.2 table, written out here on its own
(not derived from sart.bgp.fsm): the state reached and the actions emitted must match."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from netaddr import IPAddress

from sart.bgp.codes import ErrorHandling
from sart.bgp.errors import BgpDecodeError
from sart.bgp.fsm import (
    AutomaticStart,
    AutomaticStop,
    BfdDown,
    BgpOpen,
    Config,
    ConnectRetryTimerExpires,
    DelayOpenTimerExpires,
    Deliver,
    Event,
    FsmState,
    HoldTimerExpires,
    IdleHoldTimerExpires,
    KeepAliveMsg,
    KeepaliveTimerExpires,
    ManualStart,
    ManualStop,
    MessageError,
    NotifMsg,
    SendMessage,
    SessionDown,
    SessionUp,
    State,
    TcpConnected,
    TcpConnectionFails,
    UpdateMsg,
    held,
    step,
    update_leaves_state,
)
from sart.bgp.messages import Notification, Open, Update

# Short names, so the table below reads like the RFC state diagram.
I, C, A, OS, OC, E = (  # noqa: E741
    State.IDLE,
    State.CONNECT,
    State.ACTIVE,
    State.OPEN_SENT,
    State.OPEN_CONFIRM,
    State.ESTABLISHED,
)
LOCAL = Open(my_as=65001, hold_time=90, bgp_id=IPAddress("10.0.0.1"))
GOOD_OPEN = BgpOpen(Open(my_as=65002, hold_time=30, bgp_id=IPAddress("10.0.0.2")))
BAD_OPEN = BgpOpen(Open(my_as=65099, hold_time=30, bgp_id=IPAddress("10.0.0.2")))
RESET = MessageError(BgpDecodeError("bad", 3, 10))
WITHDRAW = MessageError(
    BgpDecodeError("bad", 3, 6, handling=ErrorHandling.TREAT_AS_WITHDRAW, recovered=Update())
)
CEASE_1 = Notification(6, 1, bytes.fromhex("00010100000064"))
MAX_PREFIXES_RESTART = AutomaticStop(CEASE_1, "too many", idle_hold_time=30)
MAX_PREFIXES_STAY_DOWN = AutomaticStop(CEASE_1, "too many", idle_hold_time=None)
EVENTS = st.sampled_from(
    [
        ManualStart(),
        ManualStart(passive=True),
        AutomaticStart(),
        ManualStop(),
        ConnectRetryTimerExpires(),
        HoldTimerExpires(),
        KeepaliveTimerExpires(),
        DelayOpenTimerExpires(),
        TcpConnected(),
        TcpConnectionFails(),
        GOOD_OPEN,
        BAD_OPEN,
        RESET,
        WITHDRAW,
        NotifMsg(Notification(6, 2)),
        KeepAliveMsg(),
        UpdateMsg(Update()),
        MAX_PREFIXES_RESTART,
        MAX_PREFIXES_STAY_DOWN,
        IdleHoldTimerExpires(),
        BfdDown("control detection time expired"),
    ]
)
STARTS = (ManualStart, AutomaticStart)


def expected_state(s: FsmState, event: Event, delay_open: bool) -> State:
    """RFC 4271 8.2.2, state by state."""
    state = s.state
    if state is I:
        damped = s.idle_hold_at is not None or not s.allow_automatic_start
        if isinstance(event, AutomaticStart) and damped:
            return I  # RFC 4271 8.1.1: peer oscillation damping holds it in Idle
        if isinstance(event, STARTS):
            return A if event.passive else C
        return I
    if isinstance(event, IdleHoldTimerExpires):
        return state  # the timer only runs in Idle
    if isinstance(event, AutomaticStop):
        return I
    if isinstance(event, STARTS):
        return state  # a start event is ignored outside Idle
    if isinstance(event, ManualStop | BfdDown):
        return I  # BfdDown: as TcpConnectionFails, whatever the state (RFC 5882 4.3)
    if state in (C, A):
        delay_running = s.delay_open_at is not None
        if isinstance(event, ConnectRetryTimerExpires):
            return A if s.passive else C
        if isinstance(event, TcpConnected):
            return state if delay_open else OS
        if isinstance(event, DelayOpenTimerExpires):
            return OS
        if isinstance(event, TcpConnectionFails):
            return A if delay_running else I
        if event == GOOD_OPEN and delay_running:
            return OC
        return I
    if state is OS:
        if isinstance(event, TcpConnectionFails):
            return A
        return OC if event == GOOD_OPEN else I
    if state is OC:
        if isinstance(event, KeepaliveTimerExpires):
            return OC
        return E if isinstance(event, KeepAliveMsg) else I
    keeps = (KeepaliveTimerExpires, KeepAliveMsg, UpdateMsg)
    return E if isinstance(event, keeps) or event is WITHDRAW else I


class FsmMachine(RuleBasedStateMachine):
    @initialize(delay_open=st.booleans())
    def start(self, delay_open: bool) -> None:
        self.config = Config(
            local=LOCAL,
            peer_asn=65002,
            connect_retry_time=5,
            delay_open_time=2 if delay_open else 0,
        )
        self.delay_open = delay_open
        self.state = FsmState()
        self.now = 0.0

    @rule(event=EVENTS, later=st.floats(0, 100))
    def feed(self, event: Event, later: float) -> None:
        self.now += later
        before = self.state
        after, actions = step(before, event, self.config, self.now)
        assert after.state is expected_state(before, event, self.delay_open)

        ups = [a for a in actions if isinstance(a, SessionUp)]
        downs = [a for a in actions if isinstance(a, SessionDown)]
        assert len(ups) == (before.state is OC and after.state is E)
        assert len(downs) == (before.state is E and after.state is not E)
        notifications = [
            a for a in actions if isinstance(a, SendMessage) and isinstance(a.message, Notification)
        ]
        closes_after_open = before.state in (OS, OC, E) and after.state is I
        silent = isinstance(event, TcpConnectionFails | NotifMsg | BfdDown)
        if closes_after_open and not silent:
            assert len(notifications) == 1  # every error path tells the peer why
        if isinstance(event, NotifMsg):
            assert not notifications  # a NOTIFICATION is never answered
        if isinstance(event, AutomaticStop) and before.state is not I:
            # down and damped: automatic starts wait for the IdleHoldTimer or an operator
            assert held(after, self.now)
            assert (after.idle_hold_at is None) == (event.idle_hold_time is None)
            if before.state in (OS, OC, E):
                assert [n.message for n in notifications] == [CEASE_1]
        self.state = after

    @rule()
    def update_in_the_same_read(self) -> None:
        # Another UPDATE at the same instant: where the session skips `step`, `step` agrees.
        message = Update()
        after, actions = step(self.state, UpdateMsg(message), self.config, self.now)
        if update_leaves_state(self.state, self.now):
            assert after == self.state and actions == (Deliver(message),)
        elif self.state.state is E:
            assert after != self.state  # the hold deadline moved
        self.state = after

    @invariant()
    def timers_fit_the_state(self) -> None:
        s = self.state
        if s.state is I:
            assert set(s.deadlines()) <= {"idle_hold"} and s.negotiated is None
        else:
            assert s.idle_hold_at is None and s.allow_automatic_start
        if s.state is OS:
            assert s.hold_at is not None and s.connect_retry_at is None
        if s.state in (OC, E):
            assert s.negotiated is not None and s.connect_retry_at is None
            assert (s.hold_at is None) == (s.negotiated.hold_time == 0)
        if s.state in (C, A):
            assert s.hold_at is None and s.keepalive_at is None


TestFsmMachine = FsmMachine.TestCase
