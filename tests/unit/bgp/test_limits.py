"""The maximum-prefix limit (RFC 4486): the pure judgement, the Cease it sends, and the
session held down by the state machine until its IdleHoldTimer or an operator's start."""

from __future__ import annotations

import attrs
import pytest
from netaddr import IPAddress, IPNetwork

from sart.api import convert
from sart.api._gen.sart.speaker.v1 import speaker_pb2 as pb
from sart.bgp.fsm import (
    Config,
    ConnectTcp,
    DropTcp,
    FsmState,
    PrefixLimitWarning,
    SessionDown,
    State,
    held,
)
from sart.bgp.limits import Level, PrefixLimit, announced_family, cease_data, level
from sart.bgp.messages import (
    AsPath,
    FourOctetAsCapability,
    MpReachNlri,
    MultiprotocolCapability,
    NextHop,
    Notification,
    Open,
    Origin,
    Update,
)
from sart.bgp.session import Session
from sart.bgp.wire import decode_stream


def test_levels_and_threshold() -> None:
    limit = PrefixLimit(limit=10)
    assert limit.warning_threshold == 8  # 75% of 10, rounded up
    assert [level(limit, n) for n in (0, 7, 8, 10, 11)] == [
        Level.NORMAL,
        Level.NORMAL,
        Level.WARNING,
        Level.WARNING,
        Level.EXCEEDED,
    ]
    assert PrefixLimit(limit=1, warning_percent=1).warning_threshold == 1
    assert PrefixLimit(limit=3, warning_percent=100).warning_threshold == 3


@pytest.mark.parametrize(
    "kwargs", [{"limit": 0}, {"limit": 5, "warning_percent": 0}, {"limit": 5, "restart_time": -1}]
)
def test_invalid_limits(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        PrefixLimit(**kwargs)  # type: ignore[arg-type]


def test_cease_data_is_afi_safi_and_the_limit() -> None:
    # RFC 4486 4: AFI (2 octets), SAFI (1 octet), the prefix upper bound (4 octets)
    assert cease_data(1, 1, 100) == bytes.fromhex("00010100000064")
    assert cease_data(2, 1, 2**32 - 1) == bytes.fromhex("000201ffffffff")


def test_announced_family() -> None:
    v4 = Update(attributes=(NextHop(IPAddress("192.0.2.2")),), nlri=(IPNetwork("10.0.0.0/24"),))
    reach = MpReachNlri(2, 1, (IPAddress("2001:db8::2"),), (IPNetwork("2001:db8::/48"),))
    assert announced_family(v4) == (1, 1)
    assert announced_family(Update(attributes=(reach,))) == (2, 1)


def _config(asn: int, router: str, peer: int, limit: PrefixLimit | None = None) -> Config:
    local = Open(
        my_as=asn,
        hold_time=9,
        bgp_id=IPAddress(router),
        capabilities=(MultiprotocolCapability(1, 1), FourOctetAsCapability(asn)),
    )
    return Config(local=local, peer_asn=peer, connect_retry_time=5, prefix_limit=limit)


def _established(limit: PrefixLimit) -> tuple[Session, Session]:
    """`ours` (with the limit) and `theirs`, Established over an in-memory link at t=0."""
    ours = Session(_config(65001, "10.0.0.1", 65002, limit))
    theirs = Session(_config(65002, "10.0.0.2", 65001))
    ours.start(0)
    theirs.start(0, passive=True)
    ours.connection_made(0)
    theirs.connection_made(0)
    for _ in range(4):
        theirs.receive_data(ours.data_to_send(), 0)
        ours.receive_data(theirs.data_to_send(), 0)
    assert ours.state is State.ESTABLISHED and theirs.state is State.ESTABLISHED
    return ours, theirs


UPDATE = Update(
    attributes=(Origin(0), AsPath.from_asns(65002), NextHop(IPAddress("10.0.0.2"))),
    nlri=(IPNetwork("10.9.0.0/24"),),
)


def test_warning_once_then_again_only_after_falling_below() -> None:
    ours, _ = _established(PrefixLimit(limit=10))
    assert ours.prefixes_received(7, UPDATE, 1) == []
    assert ours.prefixes_received(8, UPDATE, 1) == [PrefixLimitWarning(8, 10)]
    assert ours.prefixes_received(10, UPDATE, 1) == []  # still above: no second warning
    assert ours.prefixes_received(3, UPDATE, 1) == []
    assert ours.prefixes_received(9, UPDATE, 1) == [PrefixLimitWarning(9, 10)]
    assert ours.state is State.ESTABLISHED


def test_exceeding_sends_cease_1_and_holds_the_session_down_for_the_restart_time() -> None:
    ours, _ = _established(PrefixLimit(limit=10, restart_time=2))
    actions = ours.prefixes_received(11, UPDATE, 5.0)
    assert DropTcp() in actions
    assert any(isinstance(a, SessionDown) and "11 > 10" in a.reason for a in actions)
    assert ours.state is State.IDLE and ours.prefix_limit_exceeded
    ((_, notification),) = decode_stream(ours.data_to_send())
    assert notification == Notification(6, 1, bytes.fromhex("0001010000000a"))
    assert ours.notification_sent == notification

    # A new connection's session starts from where this one left off: held until t=7.
    fsm = ours.fsm
    assert held(fsm, 6.9) and not held(fsm, 7.0)
    again = Session(ours.config, fsm)
    assert again.next_deadline() == 7.0
    assert again.start(6.0, automatic=True) == [] and again.state is State.IDLE
    assert again.handle_timer(7.0) == []
    assert again.start(7.0, automatic=True) == [ConnectTcp()]
    assert again.state is State.CONNECT and not held(again.fsm, 7.0)


def test_restart_time_zero_stays_down_until_an_operator_starts_it() -> None:
    ours, _ = _established(PrefixLimit(limit=1))
    ours.prefixes_received(2, UPDATE, 1.0)
    fsm = ours.fsm
    assert fsm.state is State.IDLE and not fsm.allow_automatic_start
    assert fsm.idle_hold_at is None and held(fsm, 1e9)
    again = Session(ours.config, fsm)
    assert again.next_deadline() is None
    assert again.start(100.0, automatic=True) == [] and again.state is State.IDLE
    assert again.start(100.0) == [ConnectTcp()]  # ManualStart: the operator's
    assert again.fsm.allow_automatic_start


def test_no_limit_never_acts() -> None:
    ours = Session(_config(65001, "10.0.0.1", 65002))
    assert ours.prefixes_received(10**9, UPDATE, 0) == []
    limited = Session(_config(65001, "10.0.0.1", 65002, PrefixLimit(limit=1)))
    assert limited.prefixes_received(10, UPDATE, 0) == []  # not Established: nothing to end


def test_fresh_state_is_not_held() -> None:
    assert not held(FsmState(), 0)
    assert not held(attrs.evolve(FsmState(), idle_hold_at=5.0), 5.0)


def test_the_api_carries_the_limit_both_ways() -> None:
    message = pb.Neighbor(
        address="10.0.0.3",
        asn=65010,
        max_prefixes=100,
        max_prefixes_warning=90,
        max_prefixes_restart=2,
    )
    config = convert.neighbor_config(message)
    assert config.prefix_limit == PrefixLimit(limit=100, warning_percent=90, restart_time=2)
    assert convert.neighbor_message(config) == pb.Neighbor(
        address="10.0.0.3",
        asn=65010,
        port=179,
        families=[pb.FAMILY_IPV4_UNICAST, pb.FAMILY_IPV6_UNICAST],
        max_prefixes=100,
        max_prefixes_warning=90,
        max_prefixes_restart=2,
    )
    plain = convert.neighbor_config(pb.Neighbor(address="10.0.0.3", asn=65010))
    assert plain.prefix_limit is None and plain.max_prefixes_warning == 75
    with pytest.raises(convert.InvalidArgument, match="max_prefixes_warning 0"):
        convert.neighbor_config(
            pb.Neighbor(address="10.0.0.3", asn=65010, max_prefixes=1, max_prefixes_warning=0)
        )
