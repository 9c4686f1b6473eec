"""The BGP session state machine of RFC 4271 section 8, sans-IO.

`step(state, event, now)` returns the next state and the actions the caller must carry out
(connect, drop the connection, send a message, hand an UPDATE to the RIB). Timers are
deadlines kept in the state; the caller asks `next_deadline` and feeds `expired(state, now)`
events back in. Nothing here sleeps, reads a clock or touches a socket.

The handlers are listed in TRANSITIONS, one per (state, event) pair the RFC names, so the
table can be read beside section 8.2.2. A pair that is not listed is the RFC's "any other
event" of that state (`_other`).
"""

from __future__ import annotations

import enum
from collections.abc import Callable

import attrs
from netaddr import IPAddress

from sart.bgp.codes import CeaseSubcode, ErrorCode, ErrorHandling, FsmSubcode
from sart.bgp.errors import BgpDecodeError
from sart.bgp.limits import PrefixLimit
from sart.bgp.messages import (
    Keepalive,
    Message,
    Notification,
    Open,
    PlainUpdate,
    RouteRefresh,
    Update,
)
from sart.bgp.negotiation import Negotiated, negotiate

LARGE_HOLD_TIME = 240.0  # RFC 4271 8.2.2: "a large value" while waiting for the OPEN


class State(enum.Enum):
    IDLE = "Idle"
    CONNECT = "Connect"
    ACTIVE = "Active"
    OPEN_SENT = "OpenSent"
    OPEN_CONFIRM = "OpenConfirm"
    ESTABLISHED = "Established"


# --- events (RFC 4271 8.1; the numbers are the RFC's) ---------------------------------------


@attrs.frozen
class ManualStart:  # 1 and 4 (passive)
    passive: bool = False


@attrs.frozen
class ManualStop:  # 2
    subcode: int = CeaseSubcode.ADMINISTRATIVE_SHUTDOWN
    reason: str = ""  # sent as an RFC 9003 shutdown communication


@attrs.frozen
class AutomaticStart:  # 3 and 5 (passive): the adapter's restart after a session went down
    passive: bool = False


@attrs.frozen
class AutomaticStop:  # 8: we end the session ourselves (here: too many prefixes, RFC 4486)
    notification: Notification
    reason: str
    # Peer oscillation damping (RFC 4271 8.1.1): automatic starts are ignored until the
    # IdleHoldTimer expires; None: until a ManualStart (AllowAutomaticStart false).
    idle_hold_time: float | None = None


@attrs.frozen
class ConnectRetryTimerExpires:  # 9
    pass


@attrs.frozen
class HoldTimerExpires:  # 10
    pass


@attrs.frozen
class KeepaliveTimerExpires:  # 11
    pass


@attrs.frozen
class DelayOpenTimerExpires:  # 12
    pass


@attrs.frozen
class IdleHoldTimerExpires:  # 13
    pass


@attrs.frozen
class TcpConnected:  # 16 Tcp_CR_Acked (ours) and 17 TcpConnectionConfirmed (theirs)
    pass


@attrs.frozen
class TcpConnectionFails:  # 18: the peer closed, or the connection broke
    pass


@attrs.frozen
class BfdDown:  # 18 TcpConnectionFails as BFD reports it (RFC 5882 4.3): the path is gone
    diagnostic: str = ""


@attrs.frozen
class BgpOpen:  # 19 (and 20 with DelayOpen running)
    message: Open


@attrs.frozen
class MessageError:  # 21 BGPHeaderErr, 22 BGPOpenMsgErr, 28 UpdateMsgErr
    error: BgpDecodeError = attrs.field(eq=False)


@attrs.frozen
class NotifMsg:  # 24 NotifMsgVerErr and 25 NotifMsg
    message: Notification


@attrs.frozen
class KeepAliveMsg:  # 26
    pass


@attrs.frozen
class UpdateMsg:  # 27 (and ROUTE-REFRESH, which RFC 4271 does not know)
    message: Update | RouteRefresh


Event = (
    ManualStart
    | ManualStop
    | AutomaticStart
    | AutomaticStop
    | ConnectRetryTimerExpires
    | HoldTimerExpires
    | KeepaliveTimerExpires
    | DelayOpenTimerExpires
    | IdleHoldTimerExpires
    | TcpConnected
    | TcpConnectionFails
    | BfdDown
    | BgpOpen
    | MessageError
    | NotifMsg
    | KeepAliveMsg
    | UpdateMsg
)


def event_for(message: Message) -> Event:
    """The event a decoded message from the peer is."""
    if isinstance(message, Open):
        return BgpOpen(message)
    if isinstance(message, Notification):
        return NotifMsg(message)
    if isinstance(message, Keepalive):
        return KeepAliveMsg()
    return UpdateMsg(message)


# --- actions ---------------------------------------------------------------------------------


@attrs.frozen
class ConnectTcp:
    pass


@attrs.frozen
class DropTcp:
    pass


@attrs.frozen
class SendMessage:
    message: Message


@attrs.frozen
class Deliver:
    """An UPDATE (or ROUTE-REFRESH) for the RIB; for an RFC 7606 error, the recovered one.
    A PlainUpdate only from a Session made with plain_updates (never from `step`)."""

    message: Update | RouteRefresh | PlainUpdate


@attrs.frozen
class SessionUp:
    negotiated: Negotiated


@attrs.frozen
class SessionDown:
    reason: str
    # The TCP connection failed with no NOTIFICATION either way: what lets a graceful-restart
    # receiver keep the peer's routes (RFC 4724 4.2).
    connection_lost: bool = False


@attrs.frozen
class PrefixLimitWarning:
    """The peer's paths reached the warning threshold of its prefix limit (from
    `Session.prefixes_received`, not from `step`): for the operator."""

    count: int
    limit: int


Action = ConnectTcp | DropTcp | SendMessage | Deliver | SessionUp | SessionDown | PrefixLimitWarning


# --- state -----------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Config:
    """What we are and expect: our OPEN (hold time included), the peer's AS (None: any)."""

    local: Open
    peer_asn: int | None = None
    connect_retry_time: float = 30.0  # RFC 4271 10 suggests 120 s; sart retries sooner
    delay_open_time: float = 0.0  # 0: no DelayOpen (RFC 4271 8.1.1, optional)
    send_notification_without_open: bool = True  # RFC 4271 8.1.1, optional
    prefix_limit: PrefixLimit | None = None  # None: any number of prefixes
    keepalive_time: int | None = None  # None: a third of the negotiated hold time


@attrs.frozen(kw_only=True)
class FsmState:
    state: State = State.IDLE
    passive: bool = False
    connect_retry_counter: int = 0
    connect_retry_at: float | None = None
    hold_at: float | None = None
    keepalive_at: float | None = None
    delay_open_at: float | None = None
    negotiated: Negotiated | None = None
    # Only in Idle, after an AutomaticStop: automatic starts wait for the IdleHoldTimer, or
    # (allow_automatic_start false) for a ManualStart (RFC 4271 8.1.1).
    idle_hold_at: float | None = None
    allow_automatic_start: bool = True

    def deadlines(self) -> dict[str, float]:
        return {
            name: at
            for name, at in (
                ("connect_retry", self.connect_retry_at),
                ("hold", self.hold_at),
                ("keepalive", self.keepalive_at),
                ("delay_open", self.delay_open_at),
                ("idle_hold", self.idle_hold_at),
            )
            if at is not None
        }


def next_deadline(state: FsmState) -> float | None:
    """When the caller must call `expired` next, or None when no timer runs."""
    return min(state.deadlines().values(), default=None)


_TIMER_EVENTS: dict[str, Event] = {
    "connect_retry": ConnectRetryTimerExpires(),
    "hold": HoldTimerExpires(),
    "keepalive": KeepaliveTimerExpires(),
    "delay_open": DelayOpenTimerExpires(),
    "idle_hold": IdleHoldTimerExpires(),
}


def held(state: FsmState, now: float) -> bool:
    """Idle after an AutomaticStop, automatic starts still ignored at `now`."""
    if state.state is not State.IDLE:
        return False
    if not state.allow_automatic_start:
        return True
    return state.idle_hold_at is not None and state.idle_hold_at > now


def expired(state: FsmState, now: float) -> list[Event]:
    """The timer events due at `now`, earliest first."""
    due = sorted((at, name) for name, at in state.deadlines().items() if at <= now)
    return [_TIMER_EVENTS[name] for _, name in due]


Result = tuple[FsmState, tuple[Action, ...]]
Handler = Callable[[FsmState, Event, Config, float], Result]


def _idle(counter: int, *actions: Action) -> Result:
    """Every timer stopped, resources released, back to Idle."""
    return FsmState(connect_retry_counter=counter), actions


def _notify_and_close(
    s: FsmState, notification: Notification, reason: str, *, counter_reset: bool = False
) -> Result:
    down = (SessionDown(reason),) if s.state is State.ESTABLISHED else ()
    counter = 0 if counter_reset else s.connect_retry_counter + 1
    return _idle(counter, SendMessage(notification), DropTcp(), *down)


def _close(s: FsmState, reason: str, *, connection_lost: bool = False) -> Result:
    down = (SessionDown(reason, connection_lost),) if s.state is State.ESTABLISHED else ()
    return _idle(s.connect_retry_counter + 1, DropTcp(), *down)


def _start(s: FsmState, event: Event, config: Config, now: float) -> Result:
    assert isinstance(event, ManualStart | AutomaticStart)
    retry = now + config.connect_retry_time
    s = attrs.evolve(s, idle_hold_at=None, allow_automatic_start=True)  # an operator's start
    if event.passive:
        return attrs.evolve(s, state=State.ACTIVE, passive=True, connect_retry_at=retry), ()
    return attrs.evolve(s, state=State.CONNECT, passive=False, connect_retry_at=retry), (
        ConnectTcp(),
    )


def _automatic_start(s: FsmState, event: Event, config: Config, now: float) -> Result:
    if s.idle_hold_at is not None or not s.allow_automatic_start:
        return s, ()  # damped: only the IdleHoldTimer or an operator starts it again
    return _start(s, event, config, now)


def _idle_hold_expired(s: FsmState, event: Event, config: Config, now: float) -> Result:
    return attrs.evolve(s, idle_hold_at=None), ()


def _automatic_stop(s: FsmState, event: Event, config: Config, now: float) -> Result:
    """RFC 4271 8.2.2, AutomaticStop (Event 8): a Cease (after our OPEN), routes deleted, the
    connection dropped, ConnectRetryCounter + 1, Idle, damped as the event says."""
    assert isinstance(event, AutomaticStop)
    if s.state in _BEFORE_OPEN:
        idle, actions = _idle(s.connect_retry_counter + 1, DropTcp())
    else:
        idle, actions = _notify_and_close(s, event.notification, event.reason)
    if event.idle_hold_time is None:
        idle = attrs.evolve(idle, allow_automatic_start=False)
    else:
        idle = attrs.evolve(idle, idle_hold_at=now + event.idle_hold_time)
    return idle, actions


def _stop(s: FsmState, event: Event, config: Config, now: float) -> Result:
    assert isinstance(event, ManualStop)
    if s.state in (State.CONNECT, State.ACTIVE):
        return _idle(0, DropTcp())
    data = b""
    if event.reason:
        text = event.reason.encode()[:255]
        data = bytes((len(text),)) + text
    notification = Notification(ErrorCode.CEASE, event.subcode, data)
    return _notify_and_close(s, notification, "stopped by the operator", counter_reset=True)


def _retry(s: FsmState, event: Event, config: Config, now: float) -> Result:
    """ConnectRetryTimer expired in Connect or Active: try again (RFC 4271 8.2.2)."""
    drop = (DropTcp(),) if s.state is State.CONNECT else ()
    if s.passive:
        return attrs.evolve(s, connect_retry_at=now + config.connect_retry_time), ()
    return attrs.evolve(
        s, state=State.CONNECT, connect_retry_at=now + config.connect_retry_time, delay_open_at=None
    ), (*drop, ConnectTcp())


def _send_open(s: FsmState, config: Config, now: float) -> Result:
    return attrs.evolve(
        s,
        state=State.OPEN_SENT,
        connect_retry_at=None,
        delay_open_at=None,
        hold_at=now + LARGE_HOLD_TIME,
    ), (SendMessage(config.local),)


def _connected(s: FsmState, event: Event, config: Config, now: float) -> Result:
    if config.delay_open_time > 0:
        return attrs.evolve(
            s, connect_retry_at=None, delay_open_at=now + config.delay_open_time
        ), ()
    return _send_open(s, config, now)


def _delay_open_expired(s: FsmState, event: Event, config: Config, now: float) -> Result:
    return _send_open(s, config, now)


def _connection_fails_before_open(s: FsmState, event: Event, config: Config, now: float) -> Result:
    if s.delay_open_at is not None or s.state is State.OPEN_SENT:
        # RFC 4271 8.2.2: back to Active, listening, with ConnectRetryTimer running again.
        return attrs.evolve(
            s,
            state=State.ACTIVE,
            delay_open_at=None,
            hold_at=None,
            connect_retry_at=now + config.connect_retry_time,
        ), (DropTcp(),)
    return _idle(s.connect_retry_counter + 1, DropTcp())


def _timers_after_open(s: FsmState, negotiated: Negotiated, now: float) -> FsmState:
    hold = negotiated.hold_time
    return attrs.evolve(
        s,
        state=State.OPEN_CONFIRM,
        negotiated=negotiated,
        connect_retry_at=None,
        delay_open_at=None,
        hold_at=now + hold if hold else None,
        keepalive_at=now + negotiated.keepalive_time if hold else None,
    )


def _open_received(s: FsmState, event: Event, config: Config, now: float) -> Result:
    assert isinstance(event, BgpOpen)
    if s.state in (State.CONNECT, State.ACTIVE) and s.delay_open_at is None:
        return _close(s, "OPEN received before ours was due")
    try:
        negotiated = negotiate(
            config.local,
            event.message,
            peer_asn=config.peer_asn,
            keepalive_time=config.keepalive_time,
        )
    except BgpDecodeError as error:
        return _notify_and_close(s, error.to_notification(), f"OPEN refused: {error.reason}")
    sent_open = (SendMessage(config.local),) if s.state is not State.OPEN_SENT else ()
    return _timers_after_open(s, negotiated, now), (*sent_open, SendMessage(Keepalive()))


def _message_error(s: FsmState, event: Event, config: Config, now: float) -> Result:
    assert isinstance(event, MessageError)
    error = event.error
    if s.state is State.ESTABLISHED and error.handling is not ErrorHandling.SESSION_RESET:
        # RFC 7606: the session stays; act on the recovered UPDATE.
        assert error.recovered is not None
        return _hold_restarted(s, now), (Deliver(error.recovered),)
    if s.state in (State.CONNECT, State.ACTIVE) and not config.send_notification_without_open:
        return _close(s, f"malformed message: {error}")
    return _notify_and_close(s, error.to_notification(), f"malformed message: {error}")


def _notification_received(s: FsmState, event: Event, config: Config, now: float) -> Result:
    assert isinstance(event, NotifMsg)
    # Never answered with a NOTIFICATION of our own (RFC 4271 6).
    return _close(s, f"peer sent NOTIFICATION {event.message.description}")


def _connection_lost(s: FsmState, event: Event, config: Config, now: float) -> Result:
    return _close(s, "connection closed", connection_lost=True)


def _bfd_down(s: FsmState, event: Event, config: Config, now: float) -> Result:
    """The BFD session with the peer went down: the connection is dropped at once, without a
    NOTIFICATION (the path is gone), and the routes with it (no graceful-restart keep)."""
    assert isinstance(event, BfdDown)
    why = f": {event.diagnostic}" if event.diagnostic else ""
    return _close(s, f"BFD session down{why}")


def _hold_expired(s: FsmState, event: Event, config: Config, now: float) -> Result:
    notification = Notification(ErrorCode.HOLD_TIMER_EXPIRED, 0)
    return _notify_and_close(s, notification, "hold timer expired")


def _send_keepalive(s: FsmState, event: Event, config: Config, now: float) -> Result:
    assert s.negotiated is not None
    return attrs.evolve(s, keepalive_at=now + s.negotiated.keepalive_time), (
        SendMessage(Keepalive()),
    )


def _hold_restarted(s: FsmState, now: float) -> FsmState:
    at = _hold_deadline(s, now)
    if at == s.hold_at:
        # Every message of one read arrives at one `now`: a full table is a million UPDATEs,
        # and copying the state for each costs more than decoding it.
        return s
    return attrs.evolve(s, hold_at=at)


def _keepalive_confirms(s: FsmState, event: Event, config: Config, now: float) -> Result:
    assert s.negotiated is not None
    established = attrs.evolve(_hold_restarted(s, now), state=State.ESTABLISHED)
    return established, (SessionUp(s.negotiated),)


def _keepalive_received(s: FsmState, event: Event, config: Config, now: float) -> Result:
    return _hold_restarted(s, now), ()


def _update_received(s: FsmState, event: Event, config: Config, now: float) -> Result:
    assert isinstance(event, UpdateMsg)
    return _hold_restarted(s, now), (Deliver(event.message),)


def _ignore(s: FsmState, event: Event, config: Config, now: float) -> Result:
    return s, ()


_FSM_SUBCODES = {
    State.OPEN_SENT: FsmSubcode.UNEXPECTED_MESSAGE_IN_OPEN_SENT,
    State.OPEN_CONFIRM: FsmSubcode.UNEXPECTED_MESSAGE_IN_OPEN_CONFIRM,
    State.ESTABLISHED: FsmSubcode.UNEXPECTED_MESSAGE_IN_ESTABLISHED,
}


def _other(s: FsmState, event: Event, config: Config, now: float) -> Result:
    """The RFC's "any other event" of each state."""
    if s.state is State.IDLE:
        return s, ()  # RFC 4271 8.2.2: ignored in Idle
    if s.state in (State.CONNECT, State.ACTIVE):
        return _close(s, f"{type(event).__name__} in {s.state.value}")
    notification = Notification(ErrorCode.FSM, _FSM_SUBCODES[s.state])
    return _notify_and_close(s, notification, f"{type(event).__name__} in {s.state.value}")


_BEFORE_OPEN = (State.CONNECT, State.ACTIVE)
_AFTER_CONNECT = (
    State.CONNECT,
    State.ACTIVE,
    State.OPEN_SENT,
    State.OPEN_CONFIRM,
    State.ESTABLISHED,
)
_AFTER_OPEN = (State.OPEN_SENT, State.OPEN_CONFIRM, State.ESTABLISHED)

TRANSITIONS: dict[tuple[State, type[Event]], Handler] = {
    (State.IDLE, ManualStart): _start,
    (State.IDLE, AutomaticStart): _automatic_start,
    (State.IDLE, IdleHoldTimerExpires): _idle_hold_expired,
    **{(state, AutomaticStop): _automatic_stop for state in _AFTER_CONNECT},
    # The IdleHoldTimer runs only in Idle; a late expiry elsewhere changes nothing.
    **{(state, IdleHoldTimerExpires): _ignore for state in _AFTER_CONNECT},
    **{(state, ManualStop): _stop for state in _AFTER_CONNECT},
    **{(state, ManualStart): _ignore for state in _AFTER_CONNECT},
    **{(state, AutomaticStart): _ignore for state in _AFTER_CONNECT},
    **{(state, ConnectRetryTimerExpires): _retry for state in _BEFORE_OPEN},
    **{(state, TcpConnected): _connected for state in _BEFORE_OPEN},
    **{(state, DelayOpenTimerExpires): _delay_open_expired for state in _BEFORE_OPEN},
    **{(state, TcpConnectionFails): _connection_fails_before_open for state in _BEFORE_OPEN},
    (State.OPEN_SENT, TcpConnectionFails): _connection_fails_before_open,
    **{(state, BgpOpen): _open_received for state in (*_BEFORE_OPEN, State.OPEN_SENT)},
    **{(state, MessageError): _message_error for state in _AFTER_CONNECT},
    **{(state, NotifMsg): _notification_received for state in _AFTER_CONNECT},
    **{(state, BfdDown): _bfd_down for state in _AFTER_CONNECT},
    **{(state, HoldTimerExpires): _hold_expired for state in _AFTER_OPEN},
    (State.OPEN_CONFIRM, TcpConnectionFails): _connection_lost,
    (State.ESTABLISHED, TcpConnectionFails): _connection_lost,
    (State.OPEN_CONFIRM, KeepaliveTimerExpires): _send_keepalive,
    (State.ESTABLISHED, KeepaliveTimerExpires): _send_keepalive,
    (State.OPEN_CONFIRM, KeepAliveMsg): _keepalive_confirms,
    (State.ESTABLISHED, KeepAliveMsg): _keepalive_received,
    (State.ESTABLISHED, UpdateMsg): _update_received,
}


def step(s: FsmState, event: Event, config: Config, now: float) -> Result:
    """The state after `event` at time `now`, and what the caller must do."""
    handler = TRANSITIONS.get((s.state, type(event)), _other)
    return handler(s, event, config, now)


def update_leaves_state(s: FsmState, now: float) -> bool:
    """Whether an UPDATE received at `now` leaves `s` exactly as it is, asking only for its
    Deliver: in Established, with the hold deadline already `now`'s (the rest of one read).
    What `step` gives then, without building the event and its result for each of a full
    table's million UPDATEs (a test holds the two equal)."""
    return s.state is State.ESTABLISHED and s.hold_at == _hold_deadline(s, now)


def _hold_deadline(s: FsmState, now: float) -> float | None:
    """When the HoldTimer restarted at `now` expires (None: a hold time of 0 runs none)."""
    assert s.negotiated is not None
    hold = s.negotiated.hold_time
    return now + hold if hold else None


def message_sent(s: FsmState, now: float) -> FsmState:
    """Sending a KEEPALIVE or UPDATE restarts the KeepaliveTimer (RFC 4271 10)."""
    if s.keepalive_at is None or s.negotiated is None:
        return s
    at = now + s.negotiated.keepalive_time
    if at == s.keepalive_at:  # UPDATEs sent in one go: one copy of the state, not one each
        return s
    return attrs.evolve(s, keepalive_at=at)


def keep_our_connection(local_id: IPAddress, remote_id: IPAddress) -> bool:
    """Connection collision (RFC 4271 6.8): with two connections to one peer, the one the
    speaker with the higher BGP identifier opened survives. True: keep the connection we
    opened and close the peer's (with a Cease / Connection Collision Resolution)."""
    return int(local_id) > int(remote_id)


class Collision(enum.Enum):
    """What RFC 4271 6.8 makes of a connection that has just received the peer's OPEN and
    another connection to the same peer."""

    NONE = "none"  # the other one knows no BGP identifier yet: nothing to compare
    CLOSE_THIS = "close this"  # with a Cease / Connection Collision Resolution
    CLOSE_OTHER = "close other"  # likewise
    OTHER_LOST = "other lost"  # the peer restarted: its Established session ends as if its
    # TCP connection failed, so its routes are kept stale (RFC 4724 4.2)


def collision(
    other: State,
    *,
    other_outgoing: bool,
    local_id: IPAddress,
    peer_id: IPAddress,
    peer_graceful_restart: bool,
) -> Collision:
    """The rule between this connection (in OpenConfirm, the peer's identifier `peer_id` read)
    and one in state `other`, opened by us if `other_outgoing`: against OpenConfirm the higher
    identifier's connection survives; an Established session survives a new connection unless
    the peer announced graceful restart, whose new connection means it restarted."""
    if other is State.ESTABLISHED:
        return Collision.OTHER_LOST if peer_graceful_restart else Collision.CLOSE_THIS
    if other is State.OPEN_CONFIRM:
        ours_survives = keep_our_connection(local_id, peer_id)
        return Collision.CLOSE_OTHER if ours_survives != other_outgoing else Collision.CLOSE_THIS
    return Collision.NONE
