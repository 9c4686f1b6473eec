"""Random packets, timer expiries and admin changes against RFC 5880 6.8.6 / 6.8.4 / 6.8.16,
written out here on its own (not derived from sart.bfd.session): the state reached, the
diagnostic, the timers and the packets sent must match."""

from __future__ import annotations

import random

import hypothesis.strategies as st
import pytest
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from sart.bfd.packet import (
    Authentication,
    ControlPacket,
    Diagnostic,
    SessionState,
    decode_packet,
    encode_packet,
)
from sart.bfd.session import Config, Session

AD, D, I, U = SessionState.ADMIN_DOWN, SessionState.DOWN, SessionState.INIT, SessionState.UP  # noqa: E741
MY = 0x1234
REMOTE = 0xABCD
INTERVALS = st.sampled_from([0, 1, 50_000, 300_000, 1_000_000, 2_000_000])


def expected(local: SessionState, received: SessionState) -> SessionState:
    """RFC 5880 6.8.6, the paragraphs after "If bfd.SessionState is AdminDown"."""
    if local is AD:
        return AD
    if received is AD:
        return D
    if local is D:
        return {D: I, I: U}.get(received, D)
    if local is I:
        return U if received in (I, U) else I
    return D if received is D else U


@st.composite
def remote_packets(draw: st.DrawFn) -> ControlPacket:
    state = draw(st.sampled_from(SessionState))
    your = draw(st.sampled_from([MY, MY, 0, 77]))
    if your == 0 and state in (I, U):
        your = MY
    poll = draw(st.booleans())
    return ControlPacket(
        state=state,
        poll=poll,
        final=not poll and draw(st.booleans()),
        detect_mult=draw(st.integers(1, 5)),
        my_discriminator=REMOTE,
        your_discriminator=your,
        desired_min_tx=draw(INTERVALS),
        required_min_rx=draw(INTERVALS),
        authentication=draw(st.sampled_from([None] * 5 + [Authentication(1, b"\0secret")])),
    )


class BfdMachine(RuleBasedStateMachine):
    @initialize(
        tx=st.sampled_from([10_000, 300_000, 2_000_000]),
        rx=st.sampled_from([10_000, 300_000, 2_000_000]),
        mult=st.integers(1, 5),
        seed=st.integers(0, 2**32),
    )
    def start(self, tx: int, rx: int, mult: int, seed: int) -> None:
        self.config = Config(
            local_discriminator=MY, desired_min_tx=tx, required_min_rx=rx, detect_mult=mult
        )
        self.session = Session(self.config, random=random.Random(seed).random)
        self.now = 0.0
        self.session.start(self.now)
        self.sent: list[ControlPacket] = self._sent()
        assert len(self.sent) == 1 and self.sent[0].state is D

    def _sent(self) -> list[ControlPacket]:
        packets = self.session.packets_to_send()
        for packet in packets:
            assert decode_packet(encode_packet(packet)) == packet  # every one is valid
            assert packet.my_discriminator == MY
            assert packet.your_discriminator == self.session.variables.remote_discriminator
            assert packet.detect_mult == self.config.detect_mult
            assert packet.required_min_echo_rx == 0
        return packets

    @rule(packet=remote_packets(), later=st.floats(0, 0.5))
    def receive(self, packet: ControlPacket, later: float) -> None:
        self.now += later
        self.session.handle_timer(self.now)  # what fell due meanwhile comes first
        self._sent()
        before = self.session.variables
        changes = self.session.receive(packet, self.now)
        after = self.session.variables
        sent = self._sent()
        discarded = (
            packet.your_discriminator not in (0, MY)
            or packet.authentication is not None
            or before.state is AD
        )
        if discarded:
            assert after == before and not changes and not sent
            return
        assert after.state is expected(before.state, packet.state)
        assert after.remote_discriminator == REMOTE
        assert after.remote_min_rx == packet.required_min_rx
        # 6.8.4: the detection timer restarts at the remote's multiplier x agreed interval
        agreed = max(after.rx_in_use, packet.desired_min_tx)
        assert after.detect_at == pytest.approx(self.now + packet.detect_mult * agreed / 1e6)
        if after.state is not before.state:
            assert [(c.old, c.new) for c in changes] == [(before.state, after.state)]
            if before.state in (I, U) and after.state is D:
                assert after.local_diag is Diagnostic.NEIGHBOR_SIGNALED_SESSION_DOWN
            if after.remote_min_rx:
                assert sent[0].state is after.state  # the remote is told at once
        else:
            assert not changes
        if packet.poll:
            finals = [p for p in sent if p.final]
            assert len(finals) == 1 and not finals[0].poll  # 6.8.7: F at once, P clear
        else:
            assert not any(p.final for p in sent)
        if packet.final and before.poll and after.state is before.state:
            assert not after.poll  # the Final ends our Poll Sequence

    @rule(later=st.floats(0, 5))
    def wait(self, later: float) -> None:
        before = self.session.variables
        self.now += later
        changes = self.session.handle_timer(self.now)
        after = self.session.variables
        sent = self._sent()
        expired = before.detect_at is not None and before.detect_at <= self.now
        if expired and before.state in (I, U):
            assert after.state is D
            assert after.local_diag is Diagnostic.CONTROL_DETECTION_TIME_EXPIRED
            assert [(c.old, c.new) for c in changes] == [(before.state, D)]
        else:
            assert after.state is before.state and not changes
        if expired:
            assert after.remote_discriminator == 0  # 6.8.1
        if before.tx_at is not None and before.tx_at <= self.now:
            assert sent and all(p.state is after.state for p in sent)
        elif not changes:
            assert not sent

    @rule()
    def admin_down(self) -> None:
        before = self.session.state
        changes = self.session.admin_down(self.now)
        assert self.session.state is AD
        if before is not AD:
            assert self.session.variables.local_diag is Diagnostic.ADMINISTRATIVELY_DOWN
            assert [(c.old, c.new) for c in changes] == [(before, AD)]
        self._sent()

    @rule()
    def admin_up(self) -> None:
        before = self.session.state
        self.session.admin_up(self.now)
        assert self.session.state is (D if before is AD else before)
        self._sent()

    @rule(tx=st.sampled_from([10_000, 300_000, 2_000_000]))
    def change_interval(self, tx: int) -> None:
        before = self.session.variables
        self.config = Config(
            local_discriminator=MY,
            desired_min_tx=tx,
            required_min_rx=self.config.required_min_rx,
            detect_mult=self.config.detect_mult,
        )
        self.session.reconfigure(self.config, self.now)
        after = self.session.variables
        if before.state is U and tx != before.desired_min_tx:
            assert after.poll  # 6.8.3: a change while Up is a Poll Sequence
            assert after.tx_in_use == min(before.tx_in_use, tx)  # slower only after Final

    @invariant()
    def timers_fit_the_state(self) -> None:
        s = self.session.variables
        if s.state is not U:
            assert s.desired_min_tx >= 1_000_000 and not s.poll  # 6.8.3
        else:
            assert s.desired_min_tx == self.config.desired_min_tx
        if s.state is AD:
            assert s.detect_at is None
        if s.remote_min_rx == 0:
            assert s.tx_at is None  # 6.8.7: the remote asked for no packets
        else:
            assert s.tx_at is not None and s.tx_at > self.now - 1e-9
            interval = s.transmit_interval() / 1e6
            assert s.tx_at <= self.now + interval + 1e-9  # jitter only shortens (6.8.7)


TestBfdMachine = BfdMachine.TestCase
