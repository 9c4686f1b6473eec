"""Semantic checks of received next hops (RFC 4271 5.1.3, 6.3): which addresses are refused,
and what the RIB does with routes that carry them."""

from __future__ import annotations

import pytest
from netaddr import IPAddress, IPNetwork

from sart.bgp.messages import AsPath, MpReachNlri, MpUnreachNlri, NextHop, Origin, Update
from sart.bgp.rib import Ignored, NextHopProblem, Rib, Source, next_hop_problem

PEER = Source(IPAddress("192.0.2.2"), 65002, IPAddress("192.0.2.2"))
OURS = IPAddress("192.0.2.1")
OURS6 = IPAddress("2001:db8::1")


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("0.0.0.0", NextHopProblem.UNSPECIFIED),
        ("0.1.2.3", NextHopProblem.UNSPECIFIED),
        ("127.0.0.1", NextHopProblem.LOOPBACK),
        ("127.255.255.254", NextHopProblem.LOOPBACK),
        ("224.0.0.5", NextHopProblem.MULTICAST),
        ("239.255.255.255", NextHopProblem.MULTICAST),
        ("240.0.0.1", NextHopProblem.RESERVED),
        ("255.255.255.254", NextHopProblem.RESERVED),
        ("255.255.255.255", NextHopProblem.BROADCAST),
        ("192.0.2.1", NextHopProblem.OURS),
        ("::", NextHopProblem.UNSPECIFIED),
        ("::1", NextHopProblem.LOOPBACK),
        ("ff02::5", NextHopProblem.MULTICAST),
        ("2001:db8::1", NextHopProblem.OURS),
        # fine
        ("192.0.2.2", None),
        ("1.0.0.1", None),
        ("126.255.255.255", None),
        ("128.0.0.1", None),
        ("223.255.255.255", None),
        ("169.254.10.1", None),  # IPv4 link-local: a valid host address on the link
        ("10.0.0.1", None),
        ("2001:db8::2", None),
        ("fe80::1", None),
        ("::2", None),
        ("fe00::1", None),
    ],
)
def test_next_hop_problem(address: str, problem: NextHopProblem | None) -> None:
    assert next_hop_problem(IPAddress(address), {OURS, OURS6}) is problem


def test_loopback_is_fine_when_the_session_itself_runs_over_loopback() -> None:
    assert next_hop_problem(IPAddress("127.0.0.12"), loopback_session=True) is None
    assert next_hop_problem(IPAddress("::1"), loopback_session=True) is None
    # ...which excuses loopback only
    assert next_hop_problem(IPAddress("0.0.0.0"), loopback_session=True) is not None


def _v4(next_hop: str, *prefixes: str) -> Update:
    return Update(
        attributes=(Origin(0), AsPath.from_asns(65002), NextHop(IPAddress(next_hop))),
        nlri=tuple(IPNetwork(p) for p in prefixes),
    )


def _v6(next_hops: tuple[str, ...], *prefixes: str) -> Update:
    reach = MpReachNlri(
        2, 1, tuple(IPAddress(h) for h in next_hops), tuple(IPNetwork(p) for p in prefixes)
    )
    return Update(attributes=(Origin(0), AsPath.from_asns(65002), reach))


def test_routes_with_a_bad_next_hop_stay_out_of_the_rib_and_are_reported() -> None:
    rib = Rib(local_asn=65000)
    ignored: list[Ignored] = []
    changes = rib.apply_update(
        PEER, _v4("0.0.0.0", "10.1.0.0/24", "10.2.0.0/24"), local_addresses={OURS}, ignored=ignored
    )
    assert changes == [] and rib.count(PEER) == 0 and len(rib) == 0
    assert ignored == [
        Ignored(
            IPAddress("0.0.0.0"),
            NextHopProblem.UNSPECIFIED,
            (IPNetwork("10.1.0.0/24"), IPNetwork("10.2.0.0/24")),
        )
    ]


def test_our_own_address_as_next_hop_is_ignored() -> None:
    rib = Rib(local_asn=65000)
    ignored: list[Ignored] = []
    rib.apply_update(PEER, _v4(str(OURS), "10.1.0.0/24"), local_addresses={OURS}, ignored=ignored)
    assert len(rib) == 0 and [i.problem for i in ignored] == [NextHopProblem.OURS]
    # with no local addresses given, nothing is ours
    rib.apply_update(PEER, _v4(str(OURS), "10.1.0.0/24"))
    assert len(rib) == 1


def test_a_bad_next_hop_replaces_what_the_peer_sent_before() -> None:
    """The newer announcement implicitly withdraws the older one, even though it is unusable."""
    rib = Rib(local_asn=65000)
    rib.apply_update(PEER, _v4("192.0.2.2", "10.1.0.0/24", "10.2.0.0/24"))
    assert rib.count(PEER) == 2
    changes = rib.apply_update(PEER, _v4("224.0.0.1", "10.1.0.0/24"))
    assert [(str(c.prefix), c.after) for c in changes] == [("10.1.0.0/24", ())]
    assert [str(p) for p, _ in rib] == ["10.2.0.0/24"]


def test_one_family_ignored_the_other_kept() -> None:
    rib = Rib(local_asn=65000)
    reach = MpReachNlri(2, 1, (IPAddress("::1"),), (IPNetwork("2001:db8:9::/48"),))
    update = Update(
        attributes=(Origin(0), AsPath.from_asns(65002), NextHop(IPAddress("192.0.2.2")), reach),
        nlri=(IPNetwork("10.1.0.0/24"),),
    )
    ignored: list[Ignored] = []
    rib.apply_update(PEER, update, ignored=ignored)
    assert [str(p) for p, _ in rib] == ["10.1.0.0/24"]
    assert [(str(i.next_hop), i.problem) for i in ignored] == [("::1", NextHopProblem.LOOPBACK)]


def test_ipv6_next_hop_checked_on_the_global_address() -> None:
    rib = Rib(local_asn=65000)
    ignored: list[Ignored] = []
    rib.apply_update(
        PEER,
        _v6(("2001:db8::1", "fe80::1"), "2001:db8:1::/48"),
        local_addresses={OURS6},
        ignored=ignored,
    )
    assert len(rib) == 0 and ignored[0].problem is NextHopProblem.OURS
    rib.apply_update(PEER, _v6(("2001:db8::2", "fe80::1"), "2001:db8:1::/48"))
    (path,) = rib.lookup(IPNetwork("2001:db8:1::/48"))
    assert path.next_hop == IPAddress("2001:db8::2")


def test_withdrawals_in_the_same_update_still_happen() -> None:
    rib = Rib(local_asn=65000)
    rib.apply_update(PEER, _v6(("2001:db8::2",), "2001:db8:1::/48"))
    update = Update(
        attributes=(
            Origin(0),
            AsPath.from_asns(65002),
            MpUnreachNlri(2, 1, (IPNetwork("2001:db8:1::/48"),)),
            MpReachNlri(2, 1, (IPAddress("ff02::1"),), (IPNetwork("2001:db8:2::/48"),)),
        )
    )
    rib.apply_update(PEER, update)
    assert len(rib) == 0


def test_a_session_over_loopback_keeps_loopback_next_hops() -> None:
    rib = Rib(local_asn=65000)
    local_peer = Source(IPAddress("127.0.0.12"), 65002, IPAddress("127.0.0.12"))
    rib.apply_update(local_peer, _v4("127.0.0.12", "10.1.0.0/24"))
    assert len(rib) == 1
    rib.apply_update(PEER, _v4("127.0.0.12", "10.2.0.0/24"))
    assert len(rib) == 1  # from a peer elsewhere, loopback is not a next hop
