"""Two BFD sessions over an in-memory link with a shared fake clock: the three-way handshake,
the Poll Sequence to the fast intervals, and how long a cut takes to be detected."""

from __future__ import annotations

import random

import pytest

from sart.bfd.packet import Diagnostic, SessionState, decode_packet, encode_packet
from sart.bfd.session import Config, Session, StateChanged

STEP = 0.001


class Pair:
    def __init__(self, tx: int = 300_000, rx: int = 300_000, mult: int = 3) -> None:
        self.a = Session(
            Config(local_discriminator=1, desired_min_tx=tx, required_min_rx=rx, detect_mult=mult),
            random=random.Random(1).random,
        )
        self.b = Session(
            Config(local_discriminator=2, desired_min_tx=tx, required_min_rx=rx, detect_mult=mult),
            random=random.Random(2).random,
        )
        self.now = 0.0
        self.link_up = True
        self.changes: list[tuple[str, float, StateChanged]] = []
        self.a.start(self.now)
        self.b.start(self.now)

    def run(self, seconds: float) -> None:
        end = self.now + seconds
        while self.now < end:
            self.now = round(self.now + STEP, 6)
            for name, session in (("a", self.a), ("b", self.b)):
                for change in session.handle_timer(self.now):
                    self.changes.append((name, self.now, change))
            self._exchange()

    def _exchange(self) -> None:
        moved = True
        while moved:
            moved = False
            for name, src, dst in (("b", self.a, self.b), ("a", self.b, self.a)):
                for packet in src.packets_to_send():
                    moved = True
                    if self.link_up:
                        wire = decode_packet(encode_packet(packet))
                        for change in dst.receive(wire, self.now):
                            self.changes.append((name, self.now, change))


def test_three_way_handshake_then_fast_intervals() -> None:
    pair = Pair()
    pair.run(0.01)
    assert pair.a.state is SessionState.UP and pair.b.state is SessionState.UP
    # Down -> Init -> Up on one side, Down -> Up on the other (RFC 5880 6.2).
    a_path = [(c.old, c.new) for name, _, c in pair.changes if name == "a"]
    assert a_path[-1][1] is SessionState.UP
    pair.run(3.0)  # the Poll Sequences to 300 ms have completed
    for session in (pair.a, pair.b):
        v = session.variables
        assert not v.poll and v.tx_in_use == 300_000 and v.remote_desired_min_tx == 300_000
        assert v.detection_time == pytest.approx(0.9)


@pytest.mark.parametrize("mult", [1, 3, 5])
def test_cut_detected_within_multiplier_times_interval(mult: int) -> None:
    pair = Pair(mult=mult)
    pair.run(5.0)
    assert pair.a.state is SessionState.UP
    cut = pair.now
    pair.link_up = False
    pair.run(2.0)
    downs = [(name, at, c) for name, at, c in pair.changes if c.new is SessionState.DOWN]
    assert {name for name, _, _ in downs} == {"a", "b"}
    for _, at, change in downs:
        assert change.diagnostic is Diagnostic.CONTROL_DETECTION_TIME_EXPIRED
        assert at - cut <= mult * 0.3 + STEP
    # Back up by itself when the link returns.
    pair.link_up = True
    pair.run(5.0)
    assert pair.a.state is SessionState.UP and pair.b.state is SessionState.UP


def test_admin_down_tells_the_remote() -> None:
    pair = Pair()
    pair.run(2.0)
    pair.a.admin_down(pair.now)
    pair.run(0.01)
    assert pair.a.state is SessionState.ADMIN_DOWN
    assert pair.b.state is SessionState.DOWN
    assert pair.b.variables.local_diag is Diagnostic.NEIGHBOR_SIGNALED_SESSION_DOWN
    pair.a.admin_up(pair.now)
    pair.run(3.0)
    assert pair.a.state is SessionState.UP and pair.b.state is SessionState.UP


def test_slow_rate_while_not_up() -> None:
    """RFC 5880 6.8.3: at least 1 s between packets while the session is not Up."""
    session = Session(Config(local_discriminator=9), random=lambda: 0.0)
    session.start(0.0)
    (first,) = session.packets_to_send()
    assert first.state is SessionState.DOWN and first.desired_min_tx == 1_000_000
    assert first.your_discriminator == 0
    assert session.next_deadline() == pytest.approx(1.0)
    session.handle_timer(0.5)
    assert session.packets_to_send() == []


def test_slower_interval_waits_for_the_final() -> None:
    pair = Pair()
    pair.run(3.0)
    config = pair.a.config
    pair.a.reconfigure(
        Config(
            local_discriminator=1,
            desired_min_tx=600_000,
            required_min_rx=config.required_min_rx,
            detect_mult=3,
        ),
        pair.now,
    )
    assert pair.a.variables.poll and pair.a.variables.tx_in_use == 300_000
    pair.run(1.0)
    assert not pair.a.variables.poll and pair.a.variables.tx_in_use == 600_000
    assert pair.b.variables.detection_time == pytest.approx(1.8)
    assert pair.a.state is SessionState.UP and pair.b.state is SessionState.UP
