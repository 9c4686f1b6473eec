"""One BGP session, sans-IO: bytes and time in, bytes and actions out.

Session ties the stream splitter, the codec and the state machine together (the shape of
h11's Connection): the adapter feeds what it reads with `receive_data`, writes what
`data_to_send` returns, calls `handle_timer` at `next_deadline`, and carries out the actions
that need the outside world (ConnectTcp, DropTcp) or the RIB (Deliver, SessionUp,
SessionDown). Messages the state machine sends are encoded here.
"""

from __future__ import annotations

from typing import cast

from sart.bgp.codes import CeaseSubcode, ErrorCode
from sart.bgp.context import DEFAULT_CONTEXT, SessionContext
from sart.bgp.errors import BgpDecodeError
from sart.bgp.frozen import builder
from sart.bgp.fsm import (
    Action,
    AutomaticStart,
    AutomaticStop,
    BfdDown,
    Config,
    Deliver,
    Event,
    FsmState,
    ManualStart,
    ManualStop,
    MessageError,
    PrefixLimitWarning,
    SendMessage,
    SessionUp,
    State,
    TcpConnected,
    TcpConnectionFails,
    event_for,
    expired,
    message_sent,
    next_deadline,
    step,
    update_leaves_state,
)
from sart.bgp.limits import Level, announced_family, cease_data, level
from sart.bgp.messages import Keepalive, Message, Notification, Open, PlainUpdate, Update
from sart.bgp.wire import decode_framed, encode_message
from sart.bgp.wire.framing import MessageSplitter
from sart.errors import BgpUsageError

_new_deliver = builder(Deliver)


class Session:
    def __init__(
        self, config: Config, fsm: FsmState | None = None, *, plain_updates: bool = False
    ) -> None:
        """`fsm`: where the neighbor's last session left off (Idle, maybe held down by an
        IdleHoldTimer), so a new connection honours it. `plain_updates`: deliver the UPDATEs
        a PlainUpdate can carry as one (the speaker's RIB takes them faster); otherwise
        every UPDATE is delivered as an Update."""
        self.config = config
        self.plain_updates = plain_updates
        self._fsm = fsm if fsm is not None else FsmState()
        self._splitter = MessageSplitter()
        self._outgoing = bytearray()
        self.messages_in = 0  # every message read off the wire, malformed ones included
        self.messages_out = 0
        self.notification_sent: Notification | None = None  # the last, for "last error"
        self.notification_received: Notification | None = None
        self.open_received: Open | None = None  # the peer's, for monitoring (BMP Peer Up)
        self.prefix_warning = False  # the warning threshold was crossed and still holds
        self.prefix_limit_exceeded = False

    @property
    def state(self) -> State:
        return self._fsm.state

    @property
    def fsm(self) -> FsmState:
        return self._fsm

    @property
    def _receive_context(self) -> SessionContext:
        negotiated = self._fsm.negotiated
        return DEFAULT_CONTEXT if negotiated is None else negotiated.receive

    def _feed(self, event: Event, now: float) -> list[Action]:
        self._fsm, actions = step(self._fsm, event, self.config, now)
        rest: list[Action] = []
        for action in actions:
            if isinstance(action, SendMessage):
                self._write(action.message, now)
            else:
                if isinstance(action, SessionUp):
                    self._splitter.max_length = action.negotiated.receive.max_message_length
                rest.append(action)
        return rest

    def _write(self, message: Message, now: float) -> None:
        negotiated = self._fsm.negotiated
        ctx = DEFAULT_CONTEXT if negotiated is None else negotiated.send
        self._outgoing += encode_message(message, ctx)
        self.messages_out += 1
        if isinstance(message, Notification):
            self.notification_sent = message
        if isinstance(message, Keepalive | Update):
            self._fsm = message_sent(self._fsm, now)

    def start(self, now: float, *, passive: bool = False, automatic: bool = False) -> list[Action]:
        """ManualStart, or AutomaticStart (which a held-down session ignores)."""
        event = AutomaticStart(passive) if automatic else ManualStart(passive)
        return self._feed(event, now)

    def prefixes_received(self, count: int, update: Update, now: float) -> list[Action]:
        """After `update` the peer's Adj-RIB-In holds `count` paths. Past the prefix limit the
        session ends with Cease / Maximum Number of Prefixes Reached, the family and the
        limit as its data (RFC 4486 4), and stays down for the limit's restart time (or
        until a ManualStart); reaching the warning threshold gives one PrefixLimitWarning,
        and another only after the count fell below it."""
        limit = self.config.prefix_limit
        if limit is None or self.state is not State.ESTABLISHED:
            return []
        now_level = level(limit, count)
        if now_level is Level.EXCEEDED:
            self.prefix_limit_exceeded = True
            afi, safi = announced_family(update)
            notification = Notification(
                ErrorCode.CEASE,
                CeaseSubcode.MAXIMUM_PREFIXES_REACHED,
                cease_data(afi, safi, limit.limit),
            )
            stop = AutomaticStop(
                notification,
                f"maximum number of prefixes reached ({count} > {limit.limit})",
                idle_hold_time=limit.restart_time or None,
            )
            return self._feed(stop, now)
        if now_level is Level.WARNING:
            if self.prefix_warning:
                return []
            self.prefix_warning = True
            return [PrefixLimitWarning(count, limit.limit)]
        self.prefix_warning = False
        return []

    def stop(
        self,
        now: float,
        reason: str = "",
        subcode: int = CeaseSubcode.ADMINISTRATIVE_SHUTDOWN,
    ) -> list[Action]:
        """Close with a Cease NOTIFICATION of this subcode (RFC 4486), `reason` as its RFC 9003
        shutdown communication."""
        return self._feed(ManualStop(subcode=subcode, reason=reason), now)

    def connection_made(self, now: float) -> list[Action]:
        self._splitter = MessageSplitter()
        return self._feed(TcpConnected(), now)

    def connection_lost(self, now: float) -> list[Action]:
        """The peer closed the connection (EOF) or it broke: an FSM event, once."""
        return self._feed(TcpConnectionFails(), now)

    def bfd_down(self, now: float, diagnostic: str = "") -> list[Action]:
        """The BFD session with the peer left Up: down at once (RFC 5882 4.3)."""
        return self._feed(BfdDown(diagnostic), now)

    def receive_data(self, data: bytes, now: float) -> list[Action]:
        """Everything `data` completes, message by message, through the state machine."""
        splitter = self._splitter
        splitter.feed(data)
        actions: list[Action] = []
        append = actions.append
        # What the loop reads of the session changes only when the state machine steps:
        # an UPDATE delivered where the state stays (most of a table) leaves both as they are.
        ctx = self._receive_context
        in_place = update_leaves_state(self._fsm, now)
        plain = in_place and self.plain_updates  # a PlainUpdate is only ever delivered in place
        while self._fsm.state is not State.IDLE:
            try:
                raws = splitter.messages()
            except BgpDecodeError as error:  # a bad header: the stream is lost
                self.messages_in += 1
                actions += self._feed(MessageError(error), now)
                break
            if not raws:
                break
            for count, raw in enumerate(raws, 1):
                try:
                    message = decode_framed(raw, ctx, plain=plain)
                    kind = type(message)
                    if in_place and (kind is Update or kind is PlainUpdate):
                        append(_new_deliver(message))
                        continue
                    if kind is Notification:
                        self.notification_received = message  # type: ignore[assignment]
                    elif kind is Open:
                        self.open_received = message  # type: ignore[assignment]
                    event: Event = event_for(cast("Message", message))  # never a PlainUpdate
                except BgpDecodeError as error:
                    event = MessageError(error)
                actions += self._feed(event, now)
                state: State = self._fsm.state  # (a new name: the loop's test narrowed the old)
                if state is State.IDLE:  # what follows is read by no session
                    self.messages_in += count
                    return actions
                ctx = self._receive_context
                in_place = update_leaves_state(self._fsm, now)
                plain = in_place and self.plain_updates
            self.messages_in += len(raws)
        return actions

    def send(self, message: Update, now: float) -> None:
        """Queue an UPDATE for the peer; only in Established."""
        if self.state is not State.ESTABLISHED:
            raise BgpUsageError(f"cannot send an UPDATE in {self.state.value}")
        self._write(message, now)

    def data_to_send(self) -> bytes:
        data = bytes(self._outgoing)
        self._outgoing.clear()
        return data

    def next_deadline(self) -> float | None:
        return next_deadline(self._fsm)

    def handle_timer(self, now: float) -> list[Action]:
        actions: list[Action] = []
        for event in expired(self._fsm, now):
            actions += self._feed(event, now)
        return actions
