"""Two Sessions talking over an in-memory link with a shared clock: the whole protocol,
bytes included, without a socket."""

from __future__ import annotations

from netaddr import IPAddress, IPNetwork

from sart.bgp.fsm import Config, ConnectTcp, Deliver, DropTcp, SessionDown, SessionUp, State
from sart.bgp.messages import (
    AsPath,
    FourOctetAsCapability,
    MultiprotocolCapability,
    NextHop,
    Notification,
    Open,
    Origin,
    PlainUpdate,
    Update,
)
from sart.bgp.session import Session
from sart.bgp.wire import decode_stream


def _config(asn: int, router: str, peer: int, hold: int = 9) -> Config:
    local = Open(
        my_as=asn,
        hold_time=hold,
        bgp_id=IPAddress(router),
        capabilities=(MultiprotocolCapability(1, 1), FourOctetAsCapability(asn)),
    )
    return Config(local=local, peer_asn=peer, connect_retry_time=5)


class Pair:
    """Two sessions and the wire between them, one byte string at a time."""

    def __init__(self) -> None:
        self.a = Session(_config(65001, "10.0.0.1", 65002))
        self.b = Session(_config(65002, "10.0.0.2", 65001))
        self.actions: dict[str, list[object]] = {"a": [], "b": []}

    def pump(self, now: float) -> None:
        for _ in range(10):
            moved = False
            for name, source, sink in (("a", self.a, self.b), ("b", self.b, self.a)):
                data = source.data_to_send()
                if data:
                    moved = True
                    other = "b" if name == "a" else "a"
                    # deliver in two pieces, as TCP may
                    half = len(data) // 2
                    self.actions[other] += sink.receive_data(data[:half], now)
                    self.actions[other] += sink.receive_data(data[half:], now)
            if not moved:
                return

    def establish(self) -> None:
        assert self.a.start(0) == [ConnectTcp()]
        assert self.b.start(0, passive=True) == []
        self.a.connection_made(0.1)
        self.b.connection_made(0.1)
        self.pump(0.2)


def test_two_sessions_establish_and_exchange_an_update() -> None:
    pair = Pair()
    pair.establish()
    assert pair.a.state is State.ESTABLISHED and pair.b.state is State.ESTABLISHED
    assert any(isinstance(a, SessionUp) for a in pair.actions["a"])
    update = Update(
        attributes=(Origin(0), AsPath.from_asns(65001), NextHop(IPAddress("10.0.0.1"))),
        nlri=(IPNetwork("203.0.113.10/32"),),
    )
    pair.a.send(update, 1)
    pair.pump(1)
    assert pair.actions["b"][-1] == Deliver(update)


def test_plain_updates_are_delivered_in_place_and_only_those() -> None:
    """A session made with plain_updates: the first UPDATE of a read steps the state machine
    (its hold timer restarts) and comes as an Update; the rest of the read, where the state
    stays, come as PlainUpdates when they can be one; a withdrawal never is."""
    pair = Pair()
    pair.b.plain_updates = True
    pair.establish()
    route = Update(
        attributes=(Origin(0), AsPath.from_asns(65001), NextHop(IPAddress("10.0.0.1"))),
        nlri=(IPNetwork("203.0.113.10/32"),),
    )
    withdrawal = Update(withdrawn=(IPNetwork("203.0.113.10/32"),))
    for update in (route, route, withdrawal, route):
        pair.a.send(update, 1)
    actions = pair.b.receive_data(pair.a.data_to_send(), 1)
    delivered = [a.message for a in actions if isinstance(a, Deliver)]
    assert [type(m) for m in delivered] == [Update, PlainUpdate, Update, PlainUpdate]
    assert [m.update() if isinstance(m, PlainUpdate) else m for m in delivered] == [
        route,
        route,
        withdrawal,
        route,
    ]


def test_keepalives_keep_the_session_up_and_silence_ends_it() -> None:
    pair = Pair()
    pair.establish()
    now = 0.2
    while now < 30:  # both sides keep each other alive
        now += 1
        for session in (pair.a, pair.b):
            deadline = session.next_deadline()
            if deadline is not None and deadline <= now:
                session.handle_timer(now)
        pair.pump(now)
    assert pair.a.state is State.ESTABLISHED
    # b freezes: a's hold timer (9 s) fires and a tells b why
    deadline = pair.a.next_deadline()
    assert deadline is not None
    actions = pair.a.handle_timer(now + 9)
    assert pair.a.state is State.IDLE
    assert DropTcp() in actions and any(isinstance(a, SessionDown) for a in actions)
    sent = list(decode_stream(pair.a.data_to_send()))
    assert sent[-1][1] == Notification(4, 0)


def test_garbage_from_the_peer_resets_with_the_right_notification() -> None:
    pair = Pair()
    pair.establish()
    actions = pair.b.receive_data(b"\x00" * 19, 2)
    assert pair.b.state is State.IDLE
    assert DropTcp() in actions
    assert list(decode_stream(pair.b.data_to_send()))[-1][1] == Notification(1, 1)


def test_peer_eof_is_one_event() -> None:
    pair = Pair()
    pair.establish()
    actions = pair.a.connection_lost(3)
    assert pair.a.state is State.IDLE
    assert actions == [DropTcp(), SessionDown("connection closed", connection_lost=True)]
    assert pair.a.receive_data(b"", 3) == []
