"""The RFC 4271 section 8 state machine, driven by hand: every timer is a deadline and every
effect an action, so a whole session runs here without a socket or a sleep."""

from __future__ import annotations

import attrs
import pytest
from netaddr import IPAddress

from sart.bgp.codes import ErrorCode, ErrorHandling
from sart.bgp.errors import BgpDecodeError
from sart.bgp.fsm import (
    LARGE_HOLD_TIME,
    BgpOpen,
    Collision,
    Config,
    ConnectRetryTimerExpires,
    ConnectTcp,
    DelayOpenTimerExpires,
    Deliver,
    DropTcp,
    FsmState,
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
    collision,
    event_for,
    expired,
    keep_our_connection,
    message_sent,
    next_deadline,
    step,
)
from sart.bgp.messages import FourOctetAsCapability, Keepalive, Notification, Open, Update

LOCAL = Open(
    my_as=65001,
    hold_time=90,
    bgp_id=IPAddress("10.0.0.1"),
    capabilities=(FourOctetAsCapability(65001),),
)
PEER = Open(
    my_as=65002,
    hold_time=30,
    bgp_id=IPAddress("10.0.0.2"),
    capabilities=(FourOctetAsCapability(65002),),
)
CONFIG = Config(local=LOCAL, peer_asn=65002, connect_retry_time=5)


def _run(
    s: FsmState, *events: object, now: float = 0.0, config: Config = CONFIG
) -> tuple[FsmState, list[object]]:
    actions: list[object] = []
    for event in events:
        s, done = step(s, event, config, now)  # type: ignore[arg-type]
        actions.extend(done)
    return s, actions


def _established(now: float = 0.0) -> FsmState:
    s, _ = _run(FsmState(), ManualStart(), TcpConnected(), BgpOpen(PEER), KeepAliveMsg(), now=now)
    assert s.state is State.ESTABLISHED
    return s


def test_active_open_to_established() -> None:
    s, actions = _run(FsmState(), ManualStart())
    assert (s.state, actions) == (State.CONNECT, [ConnectTcp()])
    assert s.connect_retry_at == 5
    s, actions = _run(s, TcpConnected(), now=1)
    assert (s.state, actions) == (State.OPEN_SENT, [SendMessage(LOCAL)])
    assert (s.connect_retry_at, s.hold_at) == (None, 1 + LARGE_HOLD_TIME)
    s, actions = _run(s, BgpOpen(PEER), now=2)
    assert s.state is State.OPEN_CONFIRM
    assert actions == [SendMessage(Keepalive())]
    assert (s.hold_at, s.keepalive_at) == (32, 12)  # hold 30 = min(90, 30), keepalive 10
    s, actions = _run(s, KeepAliveMsg(), now=3)
    assert s.state is State.ESTABLISHED
    assert len(actions) == 1 and isinstance(actions[0], SessionUp)
    assert actions[0].negotiated.hold_time == 30


def test_a_configured_keepalive_time_drives_the_keepalive_timer() -> None:
    config = attrs.evolve(CONFIG, keepalive_time=4)
    s, _ = _run(FsmState(), ManualStart(), TcpConnected(), BgpOpen(PEER), now=2, config=config)
    assert (s.hold_at, s.keepalive_at) == (32, 6)  # hold 30, keepalive 4 (not 10)
    s, actions = _run(s, KeepAliveMsg(), *expired(s, 6), now=6, config=config)
    assert actions[-1] == SendMessage(Keepalive())
    assert s.keepalive_at == 10
    assert message_sent(s, 7).keepalive_at == 11


def test_passive_start_waits_for_the_peer() -> None:
    s, actions = _run(FsmState(), ManualStart(passive=True))
    assert (s.state, actions) == (State.ACTIVE, [])
    s, actions = _run(s, ConnectRetryTimerExpires(), now=5)
    assert (s.state, actions) == (State.ACTIVE, [])  # passive: never connects out
    s, actions = _run(s, TcpConnected())
    assert (s.state, actions) == (State.OPEN_SENT, [SendMessage(LOCAL)])


def test_connect_retry_tries_again() -> None:
    s, _ = _run(FsmState(), ManualStart())
    assert expired(s, 4.9) == []
    assert expired(s, 5) == [ConnectRetryTimerExpires()]
    s, actions = _run(s, ConnectRetryTimerExpires(), now=5)
    assert (s.state, actions) == (State.CONNECT, [DropTcp(), ConnectTcp()])
    assert next_deadline(s) == 10


def test_delay_open_waits_for_the_peer_s_open() -> None:
    config = Config(local=LOCAL, peer_asn=65002, delay_open_time=2)
    s, actions = _run(FsmState(), ManualStart(), TcpConnected(), config=config)
    assert (s.state, actions) == (State.CONNECT, [ConnectTcp()])
    assert s.delay_open_at == 2
    s, actions = _run(s, BgpOpen(PEER), now=1, config=config)
    assert s.state is State.OPEN_CONFIRM
    assert actions == [SendMessage(LOCAL), SendMessage(Keepalive())]
    s, actions = _run(FsmState(), ManualStart(), TcpConnected(), config=config)
    s, actions = _run(s, DelayOpenTimerExpires(), now=2, config=config)
    assert (s.state, actions) == (State.OPEN_SENT, [SendMessage(LOCAL)])


def test_wrong_peer_as_gets_bad_peer_as_and_no_session() -> None:
    s, _ = _run(FsmState(), ManualStart(), TcpConnected())
    wrong = Open(my_as=65200, hold_time=30, bgp_id=IPAddress("10.0.0.2"))
    s, actions = _run(s, BgpOpen(wrong))
    assert s.state is State.IDLE
    assert actions == [SendMessage(Notification(2, 2, bytes.fromhex("feb0"))), DropTcp()]
    assert s.connect_retry_counter == 1
    assert next_deadline(s) is None


def test_keepalives_and_hold_timer_in_established() -> None:
    s = _established()
    assert expired(s, 10) == [KeepaliveTimerExpires()]
    assert event_for(Keepalive()) == KeepAliveMsg()
    s, actions = _run(s, *expired(s, 10), now=10)
    assert actions == [SendMessage(Keepalive())]
    assert s.keepalive_at == 20
    s, _ = _run(s, KeepAliveMsg(), now=25)
    assert s.hold_at == 55
    s = message_sent(s, 26)
    assert s.keepalive_at == 36
    s, actions = _run(s, *expired(s, 55), now=55)
    assert s.state is State.IDLE
    assert actions[-3:] == [
        SendMessage(Notification(ErrorCode.HOLD_TIMER_EXPIRED, 0)),
        DropTcp(),
        SessionDown("hold timer expired"),
    ]


def test_zero_hold_time_runs_no_timers() -> None:
    peer = Open(my_as=65002, hold_time=0, bgp_id=IPAddress("10.0.0.2"))
    s, _ = _run(FsmState(), ManualStart(), TcpConnected(), BgpOpen(peer), KeepAliveMsg())
    assert s.state is State.ESTABLISHED
    assert next_deadline(s) is None


def test_updates_are_delivered_and_restart_the_hold_timer() -> None:
    s = _established()
    update = Update()
    s, actions = _run(s, UpdateMsg(update), now=20)
    assert actions == [Deliver(update)]
    assert s.hold_at == 50


def test_treat_as_withdraw_keeps_the_session() -> None:
    recovered = Update()
    error = BgpDecodeError(
        "bad origin", 3, 6, handling=ErrorHandling.TREAT_AS_WITHDRAW, recovered=recovered
    )
    s, actions = _run(_established(), MessageError(error))
    assert s.state is State.ESTABLISHED
    assert actions == [Deliver(recovered)]


def test_session_reset_error_sends_its_notification() -> None:
    error = BgpDecodeError("bad nlri", 3, 10)
    s, actions = _run(_established(), MessageError(error))
    assert s.state is State.IDLE
    assert actions[:2] == [SendMessage(Notification(3, 10)), DropTcp()]
    assert isinstance(actions[2], SessionDown)


def test_update_before_established_is_an_fsm_error() -> None:
    s, _ = _run(FsmState(), ManualStart(), TcpConnected())
    s, actions = _run(s, UpdateMsg(Update()))
    assert s.state is State.IDLE
    assert actions == [SendMessage(Notification(ErrorCode.FSM, 1)), DropTcp()]


def test_a_notification_is_never_answered_with_one() -> None:
    s, actions = _run(_established(), NotifMsg(Notification(6, 2)))
    assert s.state is State.IDLE
    assert actions[0] == DropTcp()
    assert not any(isinstance(a, SendMessage) for a in actions)


def test_peer_closing_the_connection_is_an_event_not_an_error() -> None:
    s, actions = _run(_established(), TcpConnectionFails())
    assert (s.state, actions) == (
        State.IDLE,
        [DropTcp(), SessionDown("connection closed", connection_lost=True)],
    )
    s, _ = _run(FsmState(), ManualStart(), TcpConnected())
    s, actions = _run(s, TcpConnectionFails(), now=3)
    assert (s.state, actions) == (State.ACTIVE, [DropTcp()])
    assert s.connect_retry_at == 8


def test_manual_stop_sends_cease_with_the_reason() -> None:
    s, actions = _run(_established(), ManualStop(reason="maintenance"))
    notification = actions[0]
    assert isinstance(notification, SendMessage) and isinstance(notification.message, Notification)
    assert notification.message.shutdown_message == "maintenance"
    assert s == FsmState()


def test_collision_keeps_the_connection_of_the_higher_identifier() -> None:
    assert keep_our_connection(IPAddress("10.0.0.2"), IPAddress("10.0.0.1"))
    assert not keep_our_connection(IPAddress("10.0.0.1"), IPAddress("10.0.0.2"))


HIGH, LOW = IPAddress("10.0.0.2"), IPAddress("10.0.0.1")


@pytest.mark.parametrize(
    ("other", "other_outgoing", "local_id", "restarting", "verdict"),
    [
        # RFC 4271 6.8: against OpenConfirm the higher identifier's connection survives
        (State.OPEN_CONFIRM, True, HIGH, False, Collision.CLOSE_THIS),  # ours stays
        (State.OPEN_CONFIRM, False, HIGH, False, Collision.CLOSE_OTHER),  # theirs goes
        (State.OPEN_CONFIRM, True, LOW, False, Collision.CLOSE_OTHER),  # ours goes
        (State.OPEN_CONFIRM, False, LOW, False, Collision.CLOSE_THIS),  # theirs stays
        # an Established session survives, unless the peer restarted (RFC 4724 4.2)
        (State.ESTABLISHED, True, HIGH, False, Collision.CLOSE_THIS),
        (State.ESTABLISHED, False, LOW, True, Collision.OTHER_LOST),
        # no identifier to compare yet
        (State.OPEN_SENT, True, HIGH, True, Collision.NONE),
        (State.CONNECT, False, LOW, False, Collision.NONE),
    ],
)
def test_collision_rule(
    other: State, other_outgoing: bool, local_id: IPAddress, restarting: bool, verdict: Collision
) -> None:
    peer_id = LOW if local_id == HIGH else HIGH
    assert (
        collision(
            other,
            other_outgoing=other_outgoing,
            local_id=local_id,
            peer_id=peer_id,
            peer_graceful_restart=restarting,
        )
        is verdict
    )
