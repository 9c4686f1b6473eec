"""One BFD session in asynchronous mode (RFC 5880 6.2, 6.8), sans-IO.

`step(state, event, config, now, jitter)` returns the next state and the actions to carry out
(send a control packet, report a state change). Timers are deadlines kept in the state: the
periodic transmission (6.8.7, jittered by the `jitter` in [0, 1) the caller draws) and the
detection time (6.8.4). `Session` is the facade an adapter drives: `receive(packet, now)`,
`handle_timer(now)`, `next_deadline()`, `packets_to_send()`.

Intervals are microseconds, as on the wire and in the RFC; `now` and deadlines are seconds.
Only asynchronous mode: no Demand mode, no Echo function (we advertise Required Min Echo RX
Interval 0), no authentication (a packet carrying one is discarded, 6.8.6).
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from sart.bfd.packet import ControlPacket, Diagnostic, SessionState

SLOW_TX = 1_000_000  # RFC 5880 6.8.3: Desired Min TX Interval at least 1 s while not Up
US = 1e-6

AdminDown_, Down, Init, Up = (
    SessionState.ADMIN_DOWN,
    SessionState.DOWN,
    SessionState.INIT,
    SessionState.UP,
)

# RFC 5880 6.8.6, "If bfd.SessionState is ...": (our state, the Sta of the packet received) ->
# (our next state, the diagnostic set when the session goes down). Our AdminDown discards
# every packet (not listed).
RECEIVED: dict[tuple[SessionState, SessionState], tuple[SessionState, Diagnostic | None]] = {
    (Down, AdminDown_): (Down, None),
    (Down, Down): (Init, None),
    (Down, Init): (Up, None),
    (Down, Up): (Down, None),
    (Init, AdminDown_): (Down, Diagnostic.NEIGHBOR_SIGNALED_SESSION_DOWN),
    (Init, Down): (Init, None),
    (Init, Init): (Up, None),
    (Init, Up): (Up, None),
    (Up, AdminDown_): (Down, Diagnostic.NEIGHBOR_SIGNALED_SESSION_DOWN),
    (Up, Down): (Down, Diagnostic.NEIGHBOR_SIGNALED_SESSION_DOWN),
    (Up, Init): (Up, None),
    (Up, Up): (Up, None),
}

# RFC 5880 6.8.4: the Detection Time passed without a packet.
DETECTION_EXPIRED: dict[SessionState, tuple[SessionState, Diagnostic | None]] = {
    Down: (Down, None),
    Init: (Down, Diagnostic.CONTROL_DETECTION_TIME_EXPIRED),
    Up: (Down, Diagnostic.CONTROL_DETECTION_TIME_EXPIRED),
}


def _positive(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not 1 <= value <= 2**32 - 1:
        raise ValueError(f"{attribute.name} {value} must be in 1..2**32-1")


@attrs.frozen(kw_only=True)
class Config:
    """bfd.LocalDiscr, bfd.DesiredMinTxInterval, bfd.RequiredMinRxInterval, bfd.DetectMult."""

    local_discriminator: int = attrs.field(validator=_positive)
    desired_min_tx: int = attrs.field(default=300_000, validator=_positive)  # microseconds
    required_min_rx: int = attrs.field(default=300_000, validator=_positive)  # microseconds
    detect_mult: int = attrs.field(default=3, validator=attrs.validators.in_(range(1, 256)))


# --- events ----------------------------------------------------------------------------------


@attrs.frozen
class Start:
    """The session begins (in Down), transmitting at once."""


@attrs.frozen
class ControlReceived:
    packet: ControlPacket


@attrs.frozen
class DetectionTimeExpires:
    pass


@attrs.frozen
class TransmitTimerExpires:
    pass


@attrs.frozen
class AdminDown:  # RFC 5880 6.8.16
    pass


@attrs.frozen
class AdminUp:  # RFC 5880 6.8.16
    pass


@attrs.frozen
class ParametersChanged:
    """`config` now holds other intervals: a Poll Sequence if Up (6.8.3)."""


Event = (
    Start
    | ControlReceived
    | DetectionTimeExpires
    | TransmitTimerExpires
    | AdminDown
    | AdminUp
    | ParametersChanged
)


# --- actions ---------------------------------------------------------------------------------


@attrs.frozen
class SendPacket:
    packet: ControlPacket


@attrs.frozen
class StateChanged:
    old: SessionState
    new: SessionState
    diagnostic: Diagnostic


Action = SendPacket | StateChanged


# --- state -----------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class BfdState:
    """The state variables of RFC 5880 6.8.1 (bfd.X) and the two deadlines."""

    state: SessionState = Down  # bfd.SessionState
    remote_state: SessionState = Down  # bfd.RemoteSessionState
    remote_discriminator: int = 0  # bfd.RemoteDiscr
    local_diag: Diagnostic = Diagnostic.NONE  # bfd.LocalDiag
    remote_min_rx: int = 1  # bfd.RemoteMinRxInterval
    remote_desired_min_tx: int = 0  # the last Desired Min TX Interval received
    remote_detect_mult: int = 0  # the last Detect Mult received
    # What we advertise (bfd.DesiredMinTxInterval, bfd.RequiredMinRxInterval) and what we use
    # meanwhile: an increase of our TX or a decrease of our RX waits for the Final (6.8.3).
    desired_min_tx: int = SLOW_TX
    required_min_rx: int = SLOW_TX
    tx_in_use: int = SLOW_TX
    rx_in_use: int = SLOW_TX
    poll: bool = False  # a Poll Sequence of ours runs (6.5)
    tx_at: float | None = None
    detect_at: float | None = None

    @property
    def detection_time(self) -> float | None:
        """Seconds (6.8.4, asynchronous mode): the remote's Detect Mult times the agreed
        interval, the larger of our RequiredMinRxInterval and its last Desired Min TX."""
        if self.remote_detect_mult == 0:
            return None
        interval = max(self.rx_in_use, self.remote_desired_min_tx)
        return self.remote_detect_mult * interval * US

    def transmit_interval(self) -> int:
        """6.8.7: the larger of our DesiredMinTxInterval and the remote's RequiredMinRx."""
        return max(self.tx_in_use, self.remote_min_rx)

    def deadlines(self) -> dict[str, float]:
        return {
            name: at
            for name, at in (("transmit", self.tx_at), ("detection", self.detect_at))
            if at is not None
        }


def next_deadline(s: BfdState) -> float | None:
    return min(s.deadlines().values(), default=None)


def expired(s: BfdState, now: float) -> list[Event]:
    """The timer events due at `now`, detection first (a late packet must not mask it)."""
    events: list[Event] = []
    if s.detect_at is not None and s.detect_at <= now:
        events.append(DetectionTimeExpires())
    if s.tx_at is not None and s.tx_at <= now:
        events.append(TransmitTimerExpires())
    return events


def jittered(interval: int, detect_mult: int, jitter: float) -> float:
    """6.8.7: reduced by 0 to 25 %, or to 75..90 % with a Detect Mult of 1; seconds."""
    factor = 0.75 + 0.15 * jitter if detect_mult == 1 else 1.0 - 0.25 * jitter
    return interval * factor * US


Result = tuple[BfdState, tuple[Action, ...]]
Handler = Callable[[BfdState, Event, Config, float, float], Result]


def _packet(s: BfdState, config: Config, *, final: bool = False) -> ControlPacket:
    return ControlPacket(
        diagnostic=s.local_diag,
        state=s.state,
        poll=s.poll and not final,
        final=final,
        detect_mult=config.detect_mult,
        my_discriminator=config.local_discriminator,
        your_discriminator=s.remote_discriminator,
        desired_min_tx=s.desired_min_tx,
        required_min_rx=s.required_min_rx,
        required_min_echo_rx=0,
    )


def _schedule(s: BfdState, config: Config, now: float, jitter: float) -> BfdState:
    """The next periodic packet; none while the remote asks for none (RemoteMinRx 0)."""
    if s.remote_min_rx == 0:
        return attrs.evolve(s, tx_at=None)
    delay = jittered(s.transmit_interval(), config.detect_mult, jitter)
    return attrs.evolve(s, tx_at=now + delay)


def _reschedule(s: BfdState, config: Config, now: float, jitter: float) -> BfdState:
    """After the intervals changed: no packets if the remote wants none (6.8.7), the next one
    sooner if the interval got shorter than the wait, one again if the remote wants them."""
    if s.remote_min_rx == 0:
        return attrs.evolve(s, tx_at=None)
    if s.tx_at is None or s.tx_at > now + s.transmit_interval() * US:
        return _schedule(s, config, now, jitter)
    return s


def _intervals(s: BfdState, config: Config) -> BfdState:
    """What we advertise in our state (slow while not Up, 6.8.3); a change while Up is a Poll
    Sequence, a change otherwise takes effect at once."""
    tx = config.desired_min_tx if s.state is Up else max(config.desired_min_tx, SLOW_TX)
    rx = config.required_min_rx
    if s.state is not Up:
        return attrs.evolve(
            s, desired_min_tx=tx, required_min_rx=rx, tx_in_use=tx, rx_in_use=rx, poll=False
        )
    if (tx, rx) == (s.desired_min_tx, s.required_min_rx):
        return s
    return attrs.evolve(
        s,
        desired_min_tx=tx,
        required_min_rx=rx,
        tx_in_use=min(s.tx_in_use, tx),  # a faster TX at once, a slower after the Final
        rx_in_use=max(s.rx_in_use, rx),  # a slower RX at once, a faster after the Final
        poll=True,
    )


def _change_state(
    s: BfdState,
    new: SessionState,
    diagnostic: Diagnostic | None,
    config: Config,
    now: float,
    jitter: float,
) -> Result:
    """Into `new`: the intervals of that state, a packet at once telling the remote."""
    if new is s.state:
        return s, ()
    old = s.state
    s = attrs.evolve(s, state=new)
    if diagnostic is not None:
        s = attrs.evolve(s, local_diag=diagnostic)
    elif new is Up:
        s = attrs.evolve(s, local_diag=Diagnostic.NONE)
    s = _intervals(s, config)
    changed = StateChanged(old, new, s.local_diag)
    if s.remote_min_rx == 0:
        return attrs.evolve(s, tx_at=None), (changed,)
    s = _schedule(s, config, now, jitter)
    return s, (changed, SendPacket(_packet(s, config)))


def _start(s: BfdState, event: Event, config: Config, now: float, jitter: float) -> Result:
    if s.tx_at is not None:
        return s, ()
    s = _intervals(s, config)
    return _schedule(s, config, now, jitter), (SendPacket(_packet(s, config)),)


def _receive(s: BfdState, event: Event, config: Config, now: float, jitter: float) -> Result:
    assert isinstance(event, ControlReceived)
    p = event.packet
    # 6.8.6, the checks that need the session (the rest are decode_packet's).
    if p.your_discriminator not in (0, config.local_discriminator):
        return s, ()
    if p.authentication is not None:
        return s, ()  # A bit set, no authentication in use
    if s.state is AdminDown_:
        return s, ()
    actions: list[Action] = []
    s = attrs.evolve(
        s,
        remote_discriminator=p.my_discriminator,
        remote_state=p.state,
        remote_min_rx=p.required_min_rx,
        remote_desired_min_tx=p.desired_min_tx,
        remote_detect_mult=p.detect_mult,
    )
    if p.final and s.poll:
        s = attrs.evolve(s, poll=False, tx_in_use=s.desired_min_tx, rx_in_use=s.required_min_rx)
    new, diagnostic = RECEIVED[(s.state, p.state)]
    s, changed = _change_state(s, new, diagnostic, config, now, jitter)
    actions += changed
    if p.poll:
        actions.append(SendPacket(_packet(s, config, final=True)))  # 6.8.7, at once
    s = _reschedule(s, config, now, jitter)
    assert s.detection_time is not None
    return attrs.evolve(s, detect_at=now + s.detection_time), tuple(actions)


def _detection_expired(
    s: BfdState, event: Event, config: Config, now: float, jitter: float
) -> Result:
    new, diagnostic = DETECTION_EXPIRED[s.state]
    # 6.8.1: bfd.RemoteDiscr is zeroed when a Detection Time passes without a packet.
    s = attrs.evolve(s, detect_at=None, remote_discriminator=0, remote_state=Down)
    return _change_state(s, new, diagnostic, config, now, jitter)


def _transmit(s: BfdState, event: Event, config: Config, now: float, jitter: float) -> Result:
    packet = _packet(s, config)
    return _schedule(s, config, now, jitter), (SendPacket(packet),)


def _admin_down(s: BfdState, event: Event, config: Config, now: float, jitter: float) -> Result:
    s = attrs.evolve(s, detect_at=None)
    return _change_state(s, AdminDown_, Diagnostic.ADMINISTRATIVELY_DOWN, config, now, jitter)


def _admin_up(s: BfdState, event: Event, config: Config, now: float, jitter: float) -> Result:
    return _change_state(s, Down, None, config, now, jitter)


def _parameters(s: BfdState, event: Event, config: Config, now: float, jitter: float) -> Result:
    return _reschedule(_intervals(s, config), config, now, jitter), ()


def _ignore(s: BfdState, event: Event, config: Config, now: float, jitter: float) -> Result:
    return s, ()


_RUNNING = (Down, Init, Up)
TRANSITIONS: dict[tuple[SessionState, type[Event]], Handler] = {
    **{(state, Start): _start for state in SessionState},
    **{(state, ControlReceived): _receive for state in SessionState},
    **{(state, DetectionTimeExpires): _detection_expired for state in _RUNNING},
    **{(state, TransmitTimerExpires): _transmit for state in SessionState},
    **{(state, AdminDown): _admin_down for state in _RUNNING},
    (AdminDown_, AdminUp): _admin_up,
    **{(state, ParametersChanged): _parameters for state in SessionState},
}


def step(s: BfdState, event: Event, config: Config, now: float, jitter: float) -> Result:
    """The state after `event` at `now`, and what the caller must do; `jitter` in [0, 1)."""
    handler = TRANSITIONS.get((s.state, type(event)), _ignore)
    return handler(s, event, config, now, jitter)


class Session:
    """The facade an adapter drives: packets and time in, packets and state changes out."""

    def __init__(self, config: Config, *, random: Callable[[], float]) -> None:
        self.config = config
        self._random = random
        self._state = BfdState()
        self._outgoing: list[ControlPacket] = []
        self.packets_in = 0
        self.packets_out = 0

    @property
    def state(self) -> SessionState:
        return self._state.state

    @property
    def variables(self) -> BfdState:
        return self._state

    @property
    def local_discriminator(self) -> int:
        return self.config.local_discriminator

    def _feed(self, event: Event, now: float) -> list[StateChanged]:
        self._state, actions = step(self._state, event, self.config, now, self._random())
        changes: list[StateChanged] = []
        for action in actions:
            if isinstance(action, SendPacket):
                self._outgoing.append(action.packet)
            else:
                changes.append(action)
        return changes

    def start(self, now: float) -> list[StateChanged]:
        return self._feed(Start(), now)

    def receive(self, packet: ControlPacket, now: float) -> list[StateChanged]:
        self.packets_in += 1
        return self._feed(ControlReceived(packet), now)

    def handle_timer(self, now: float) -> list[StateChanged]:
        changes: list[StateChanged] = []
        for event in expired(self._state, now):
            changes += self._feed(event, now)
        return changes

    def next_deadline(self) -> float | None:
        return next_deadline(self._state)

    def packets_to_send(self) -> list[ControlPacket]:
        packets, self._outgoing = self._outgoing, []
        self.packets_out += len(packets)
        return packets

    def admin_down(self, now: float) -> list[StateChanged]:
        return self._feed(AdminDown(), now)

    def admin_up(self, now: float) -> list[StateChanged]:
        return self._feed(AdminUp(), now)

    def reconfigure(self, config: Config, now: float) -> list[StateChanged]:
        """New intervals or multiplier (the same discriminator): a Poll Sequence if Up."""
        if config.local_discriminator != self.config.local_discriminator:
            raise ValueError("the local discriminator of a session does not change")
        self.config = config
        return self._feed(ParametersChanged(), now)
