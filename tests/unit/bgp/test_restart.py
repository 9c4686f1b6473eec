"""Graceful restart, restarting side (RFC 4724 4.1): our capability and the End-of-RIB gate,
pure, with time passed in."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from netaddr import IPAddress

from sart.bgp.messages import IPV4_UNICAST, IPV6_UNICAST, GracefulRestartCapability, Open
from sart.bgp.restart import (
    FORWARDING_STATE,
    Completed,
    InitialTable,
    may_send_end_of_rib,
    restart_capability,
)
from sart.bgp.wire import decode_message, encode_message


def test_receiving_only_capability_lists_no_family() -> None:
    capability = restart_capability(120)
    assert capability == GracefulRestartCapability(0, 120, ())


def test_restarting_capability_sets_r_and_f_bits() -> None:
    capability = restart_capability(120, [IPV6_UNICAST, IPV4_UNICAST], restarting=True)
    assert capability.restart_flags == GracefulRestartCapability.RESTART_STATE
    assert [(f.afi, f.safi, f.flags) for f in capability.families] == [
        (1, 1, FORWARDING_STATE),
        (2, 1, FORWARDING_STATE),
    ]


def test_restart_time_fits_twelve_bits() -> None:
    assert restart_capability(100_000).restart_time == 4095
    assert restart_capability(-1).restart_time == 0


def test_capability_round_trips_on_the_wire() -> None:
    capability = restart_capability(90, [IPV4_UNICAST], restarting=True)
    message = Open(
        my_as=65001, hold_time=90, bgp_id=IPAddress("192.0.2.1"), capabilities=(capability,)
    )
    assert decode_message(encode_message(message)) == message
    assert encode_message(message)[-6:-4] == b"\x80\x5a"  # R bit, restart time 90


def test_a_configured_table_is_complete_at_once() -> None:
    table = InitialTable()
    assert table.complete and table.completed is Completed.CONFIGURED
    assert table.next_deadline() is None


def test_waiting_table_opens_on_the_signal() -> None:
    table = InitialTable.waiting(100.0, 60)
    assert not table.complete
    assert table.next_deadline() == 160.0
    assert table.handle_timer(159.9) == table
    signalled = table.signal()
    assert signalled.completed is Completed.SIGNALLED
    assert signalled.next_deadline() is None
    assert signalled.signal() is signalled  # idempotent
    assert signalled.handle_timer(1e9) is signalled  # the timer no longer matters


def test_waiting_table_opens_at_the_deferral_deadline() -> None:
    table = InitialTable.waiting(100.0, 60).handle_timer(160.0)
    assert table.completed is Completed.DEFERRAL_EXPIRED
    assert table.signal() is table  # a late signal says nothing new


def test_no_deferral_time_means_no_wait() -> None:
    assert InitialTable.waiting(0.0, 0).complete


def test_end_of_rib_waits_for_the_table_and_the_initial_updates() -> None:
    waiting, done = InitialTable.waiting(0.0, 60), InitialTable()
    due = {"sent": False, "pending": False, "established": True}
    assert not may_send_end_of_rib(waiting, **due)
    assert may_send_end_of_rib(done, **due)
    assert not may_send_end_of_rib(done, **{**due, "pending": True})
    assert not may_send_end_of_rib(done, **{**due, "sent": True})
    assert not may_send_end_of_rib(done, **{**due, "established": False})


# The gate against a reference: complete iff signalled or the deadline passed, for any
# interleaving of signals and timer calls at non-decreasing times; once complete, for good.
steps = st.lists(
    st.tuples(st.sampled_from(["signal", "timer"]), st.floats(0, 30, allow_nan=False)),
    max_size=20,
)


@given(steps, st.integers(1, 3600))
def test_gate_matches_its_reference(script: list[tuple[str, float]], deferral: int) -> None:
    now = 0.0
    table = InitialTable.waiting(now, deferral)
    signalled = expired = False
    was_complete = False
    for what, advance in script:
        now += advance
        if what == "signal":
            table = table.signal()
            signalled = signalled or not expired
        else:
            table = table.handle_timer(now)
            expired = expired or (not signalled and now >= deferral)
        assert table.complete == (signalled or expired)
        assert (table.next_deadline() is None) == table.complete
        assert table.complete or not was_complete  # never closes again
        was_complete = table.complete
        if signalled:
            assert table.completed is Completed.SIGNALLED
        elif expired:
            assert table.completed is Completed.DEFERRAL_EXPIRED
