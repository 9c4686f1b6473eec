"""What a sync of the Adj-RIB-Out changes of our own paths at the peer (`sync_own`): the
speaker reports these once the UPDATEs carrying them are out."""

from __future__ import annotations

from netaddr import IPAddress, IPNetwork

from sart.bgp.codes import WellKnownCommunity
from sart.bgp.context import SessionContext
from sart.bgp.export import AdjRibOut, OwnPathsSent, Peer
from sart.bgp.messages import AsPath, Communities, Origin, Update
from sart.bgp.prefixes import prefix_key
from sart.bgp.rib import Path, Source

PREFIX = IPNetwork("203.0.113.10/32")
OTHER = IPNetwork("203.0.113.11/32")
V6 = IPNetwork("2001:db8:5::1/128")
EBGP = Peer(asn=65100, internal=False, local_asn=65001, local_address=IPAddress("10.0.0.1"))
LOCAL = Source(None, 65001, IPAddress("10.0.0.1"))
FROM_EBGP = Source(IPAddress("10.9.0.1"), 65009, IPAddress("10.9.0.1"))


def _out(versions: frozenset[int] = frozenset({4, 6})) -> AdjRibOut:
    hops = {4: IPAddress("10.0.0.1"), 6: IPAddress("2001:db8::1")}
    return AdjRibOut(EBGP, SessionContext(), versions, hops)


LOCAL_ATTRIBUTES = (Origin(0), AsPath())


def _local(prefix: IPNetwork, *extra: object) -> Path:
    # Paths of one origination share their attribute tuple (as in the speaker's RIB): the
    # Adj-RIB-Out packs routes into UPDATEs by its identity.
    attributes = (*LOCAL_ATTRIBUTES, *extra) if extra else LOCAL_ATTRIBUTES
    return Path.to(prefix, LOCAL, None, attributes)  # type: ignore[arg-type]


def test_own_paths_are_reported_once_announced_and_once_withdrawn() -> None:
    out = _out()
    updates, own = out.sync_own(
        [(prefix_key(PREFIX), _local(PREFIX)), (prefix_key(OTHER), _local(OTHER))]
    )
    assert [u.nlri for u in updates] == [(PREFIX, OTHER)]
    assert own == OwnPathsSent(advertised=(PREFIX, OTHER))
    assert out.sync_own([(prefix_key(PREFIX), _local(PREFIX))]) == (
        [],
        OwnPathsSent(),
    )  # nothing new
    assert not OwnPathsSent()
    updates, own = out.sync_own([(prefix_key(PREFIX), None)])
    assert updates == [Update(withdrawn=(PREFIX,))]
    assert own == OwnPathsSent(withdrawn=(PREFIX,))
    assert out.sync_own([(prefix_key(PREFIX), None)]) == ([], OwnPathsSent())
    assert out.own == {prefix_key(OTHER)}


def test_learned_routes_are_not_ours_and_replacing_ours_is_a_withdrawal_of_ours() -> None:
    out = _out()
    learned = Path.to(
        PREFIX, FROM_EBGP, IPAddress("10.9.0.1"), (Origin(0), AsPath.from_asns(65009))
    )
    updates, own = out.sync_own([(prefix_key(PREFIX), learned)])
    assert updates and not own  # sent, but not one of ours
    updates, own = out.sync_own([(prefix_key(PREFIX), _local(PREFIX))])
    assert updates and own == OwnPathsSent(advertised=(PREFIX,))
    updates, own = out.sync_own(
        [(prefix_key(PREFIX), learned)]
    )  # someone else's route is best again
    assert updates and own == OwnPathsSent(withdrawn=(PREFIX,))


def test_own_paths_the_peer_is_not_sent_are_never_reported() -> None:
    only_v4 = _out(frozenset({4}))
    assert only_v4.sync_own([(prefix_key(V6), _local(V6))]) == ([], OwnPathsSent())
    no_advertise = _local(PREFIX, Communities((WellKnownCommunity.NO_ADVERTISE,)))
    assert _out().sync_own([(prefix_key(PREFIX), no_advertise)]) == ([], OwnPathsSent())


def test_a_route_refresh_resends_without_reporting_again() -> None:
    out = _out()
    out.sync_own([(prefix_key(PREFIX), _local(PREFIX))])
    out.sent.clear()  # what the speaker does on ROUTE-REFRESH: everything goes again
    updates, own = out.sync_own([(prefix_key(PREFIX), _local(PREFIX))])
    assert [u.nlri for u in updates] == [(PREFIX,)] and not own
