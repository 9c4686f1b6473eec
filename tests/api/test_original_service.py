"""The original sart's `sart.v1.BgpApi` over a real speaker, driven with messages built from the
original's contract (our stubs of proto/sart/v1/original_bgp.proto) through grpclib's ChannelFor;
a second speaker on loopback for the sessions and the neighbor RIBs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from google.protobuf.any_pb2 import Any as AnyMessage
from google.protobuf.empty_pb2 import Empty
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError
from grpclib.testing import ChannelFor
from netaddr import IPAddress, IPNetwork

from loopback import speaker_config
from sart.api._gen.sart.speaker.v1 import speaker_pb2 as ours
from sart.api._gen.sart.speaker.v1.speaker_grpc import SpeakerApiStub
from sart.api._gen.sart.v1 import original_bgp_pb2 as pb
from sart.api._gen.sart.v1.original_bgp_grpc import BgpApiStub
from sart.api.original_service import OriginalBgpService
from sart.api.speaker_service import SpeakerService
from sart.bgp.config import NeighborConfig
from sart.bgp.speaker import Speaker
from waiting import until

pytestmark = pytest.mark.asyncio
A, B = IPAddress("127.0.0.31"), IPAddress("127.0.0.32")
IPV4 = pb.AddressFamily(afi=pb.AddressFamily.AFI_IP4, safi=pb.AddressFamily.SAFI_UNICAST)
IPV6 = pb.AddressFamily(afi=pb.AddressFamily.AFI_IP6, safi=pb.AddressFamily.SAFI_UNICAST)


def packed(message: Any) -> AnyMessage:
    holder = AnyMessage()
    holder.Pack(message)
    return holder


@pytest_asyncio.fixture
async def channel(speaker: Speaker) -> AsyncIterator[Any]:
    """Both services on one channel, as `sartd bgp` serves them."""
    async with ChannelFor([SpeakerService(speaker), OriginalBgpService(speaker)]) as made:
        yield made


@pytest.fixture
def api(channel: Any) -> BgpApiStub:
    return BgpApiStub(channel)


async def refused(call: Callable[[], Any], status: Status, text: str) -> None:
    with pytest.raises(GRPCError) as error:
        await call()
    assert error.value.status is status, error.value.message
    assert text in (error.value.message or "")


async def test_health_info_as_and_router_id(api: BgpApiStub, speaker: Speaker) -> None:
    assert await api.Health(pb.HealthRequest()) == Empty()
    info = (await api.GetBgpInfo(pb.GetBgpInfoRequest())).info
    assert (info.asn, info.router_id, info.port, info.multi_path) == (
        65001,
        "10.255.0.31",
        speaker.ports[0],
        False,
    )
    await api.SetAS(pb.SetASRequest(asn=4200000001))
    await api.SetRouterId(pb.SetRouterIdRequest(router_id="10.9.9.9"))
    info = (await api.GetBgpInfo(pb.GetBgpInfoRequest())).info
    assert (info.asn, info.router_id) == (4200000001, "10.9.9.9")
    await refused(lambda: api.SetAS(pb.SetASRequest(asn=0)), Status.INVALID_ARGUMENT, "asn 0")
    await refused(
        lambda: api.SetRouterId(pb.SetRouterIdRequest(router_id="2001:db8::1")),
        Status.INVALID_ARGUMENT,
        "not IPv4",
    )
    # With a neighbor the identity is fixed; the same values again are accepted (the original's
    # agent sets them on every reconcile).
    await api.AddPeer(pb.AddPeerRequest(peer=pb.Peer(asn=65002, address="127.0.0.99")))
    await api.SetAS(pb.SetASRequest(asn=4200000001))
    await api.SetRouterId(pb.SetRouterIdRequest(router_id="10.9.9.9"))
    await refused(
        lambda: api.SetAS(pb.SetASRequest(asn=65009)), Status.FAILED_PRECONDITION, "neighbor"
    )
    await refused(lambda: api.ClearBgpInfo(pb.ClearBgpInfoRequest()), Status.UNIMPLEMENTED, "SetAS")


async def test_configure_multipath(api: BgpApiStub, speaker: Speaker) -> None:
    await api.ConfigureMultiPath(pb.ConfigureMultiPathRequest(enable=True))
    assert speaker.config.multi_path and speaker.rib.multipath
    assert (await api.GetBgpInfo(pb.GetBgpInfoRequest())).info.multi_path
    await api.ConfigureMultiPath(pb.ConfigureMultiPathRequest(enable=False))
    assert not speaker.config.multi_path


async def test_peer_lifecycle_as_the_original_agent_drives_it(
    api: BgpApiStub, speaker: Speaker
) -> None:
    # The original's agent: GetNeighbor, NOT_FOUND -> AddPeer with these fields.
    await refused(
        lambda: api.GetNeighbor(pb.GetNeighborRequest(addr="127.0.0.99")),
        Status.NOT_FOUND,
        "no neighbor 127.0.0.99",
    )
    peer = pb.Peer(
        name="spine1",
        asn=65099,
        address="127.0.0.99",
        families=[IPV4],
        hold_time=30,
        keepalive_time=10,
        passive_open=True,
    )
    await api.AddPeer(pb.AddPeerRequest(peer=peer))
    config = speaker.neighbors[IPAddress("127.0.0.99")].config
    assert (config.name, config.asn, config.hold_time) == ("spine1", 65099, 30)
    assert config.passive
    assert [f.afi for f in config.families] == [1]
    shown = (await api.GetNeighbor(pb.GetNeighborRequest(addr="127.0.0.99"))).peer
    assert (shown.name, shown.asn, shown.address, shown.hold_time, shown.keepalive_time) == (
        "spine1",
        65099,
        "127.0.0.99",
        30,
        10,
    )
    assert (list(shown.families), shown.passive_open, shown.state) == ([IPV4], True, pb.Peer.ACTIVE)
    assert not shown.HasField("uptime")
    await api.AddPeer(pb.AddPeerRequest(peer=pb.Peer(asn=65100, address="127.0.0.98")))
    listed = (await api.ListNeighbor(pb.ListNeighborRequest())).peers
    assert [(p.address, p.asn) for p in listed] == [("127.0.0.98", 65100), ("127.0.0.99", 65099)]
    assert [len(p.families) for p in listed] == [2, 1]  # no families: both unicast ones
    await refused(
        lambda: api.AddPeer(pb.AddPeerRequest(peer=peer)), Status.ALREADY_EXISTS, "already"
    )
    await api.DeletePeer(pb.DeletePeerRequest(addr="127.0.0.99"))
    await api.DeletePeer(pb.DeletePeerRequest(addr="127.0.0.99"))  # gone already: still OK
    assert list(speaker.neighbors) == [IPAddress("127.0.0.98")]
    await refused(lambda: api.AddPeer(pb.AddPeerRequest()), Status.INVALID_ARGUMENT, "peer")
    await refused(
        lambda: api.AddPeer(pb.AddPeerRequest(peer=pb.Peer(asn=0, address="127.0.0.5"))),
        Status.INVALID_ARGUMENT,
        "asn",
    )
    await refused(
        lambda: api.DeletePeer(pb.DeletePeerRequest(addr="nope")),
        Status.INVALID_ARGUMENT,
        "not an IP address",
    )
    multicast = pb.AddressFamily(afi=1, safi=pb.AddressFamily.SAFI_MULTICAST)
    await refused(
        lambda: api.AddPeer(
            pb.AddPeerRequest(peer=pb.Peer(asn=1, address="127.0.0.5", families=[multicast]))
        ),
        Status.UNIMPLEMENTED,
        "multicast",
    )
    assert len(speaker.neighbors) == 1


async def test_paths(api: BgpApiStub, speaker: Speaker) -> None:
    attributes = [
        packed(pb.OriginAttribute(value=2)),
        packed(pb.LocalPrefAttribute(value=200)),
        packed(pb.MultiExitDiscAttribute(value=7)),
        packed(pb.NextHopAttribute(value="192.0.2.1")),
    ]
    request = pb.AddPathRequest(
        family=IPV4, prefixes=["10.1.0.0/24", "10.2.0.0/24"], attributes=attributes
    )
    assert await api.AddPath(request) == pb.AddPathResponse()
    await api.AddPath(pb.AddPathRequest(prefixes=["2001:db8::/48"]))  # no family: any
    paths = (await api.GetPath(pb.GetPathRequest(family=IPV4))).paths
    assert [p.nlri for p in paths] == ["10.1.0.0/24", "10.2.0.0/24"]
    path = paths[0]
    assert (path.origin, path.local_pref, path.med, list(path.next_hops)) == (
        2,
        200,
        7,
        ["192.0.2.1"],
    )
    assert (path.family, path.best, path.peer_asn, path.peer_addr) == (IPV4, True, 65001, "")
    assert list(path.segments) == [] and path.timestamp.seconds > 1_600_000_000
    v6 = (await api.GetPath(pb.GetPathRequest(family=IPV6))).paths
    assert [(p.nlri, p.family) for p in v6] == [("2001:db8::/48", IPV6)]
    one = await api.GetPathByPrefix(pb.GetPathByPrefixRequest(prefix="10.2.0.0/24", family=IPV4))
    assert [p.nlri for p in one.paths] == ["10.2.0.0/24"]
    none = await api.GetPathByPrefix(pb.GetPathByPrefixRequest(prefix="10.3.0.0/24", family=IPV4))
    assert list(none.paths) == []
    await api.DeletePath(pb.DeletePathRequest(family=IPV4, prefixes=["10.1.0.0/24", "10.9.0.0/24"]))
    assert [p.nlri for p in (await api.GetPath(pb.GetPathRequest(family=IPV4))).paths] == [
        "10.2.0.0/24"
    ]
    before = sorted(str(p.prefix) for p in speaker.local_paths())
    await refused(lambda: api.GetPath(pb.GetPathRequest()), Status.INVALID_ARGUMENT, "family")
    await refused(
        lambda: api.AddPath(pb.AddPathRequest(family=IPV6, prefixes=["10.4.0.0/24"])),
        Status.INVALID_ARGUMENT,
        "not of the request's family",
    )
    await refused(
        lambda: api.AddPath(pb.AddPathRequest(prefixes=["10.4.0.1/24"])),
        Status.INVALID_ARGUMENT,
        "host bits",
    )
    as_path = packed(pb.AsPathAttribute(segments=[pb.AsSegment(type=2, elm=[65005])]))
    await refused(
        lambda: api.AddPath(pb.AddPathRequest(prefixes=["10.4.0.0/24"], attributes=[as_path])),
        Status.UNIMPLEMENTED,
        "AsPathAttribute",
    )
    await refused(
        lambda: api.AddPath(
            pb.AddPathRequest(prefixes=["10.4.0.0/24"], attributes=[packed(pb.BgpInfo())])
        ),
        Status.INVALID_ARGUMENT,
        "not a sart.v1 path attribute",
    )
    assert sorted(str(p.prefix) for p in speaker.local_paths()) == before


async def test_sessions_and_neighbor_paths(api: BgpApiStub, speaker: Speaker) -> None:
    other = Speaker(speaker_config(B, 65002))
    await other.start()
    try:
        await api.AddPath(pb.AddPathRequest(family=IPV4, prefixes=["10.5.0.0/24"]))
        # The original's Peer has no port: the other speaker dials us instead.
        await api.AddPeer(pb.AddPeerRequest(peer=pb.Peer(asn=65002, address=str(B))))
        other.add_neighbor(
            NeighborConfig(address=A, asn=65001, port=speaker.ports[0], local_address=B)
        )

        async def established() -> bool:
            peer = (await api.GetNeighbor(pb.GetNeighborRequest(addr=str(B)))).peer
            return peer.state == pb.Peer.ESTABLISHED

        await until(established, 15, 0.05)
        other.announce([IPNetwork("10.6.0.0/24")])

        async def learned() -> list[Any]:
            request = pb.GetNeighborPathRequest(kind=pb.GetNeighborPathRequest.IN, addr=str(B))
            request.family.CopyFrom(IPV4)
            return list((await api.GetNeighborPath(request)).paths)

        (received,) = await until(learned, 10, 0.05)
        assert (received.nlri, received.peer_asn, received.peer_addr, received.best) == (
            "10.6.0.0/24",
            65002,
            str(B),
            True,
        )
        assert [(s.type, list(s.elm)) for s in received.segments] == [
            (pb.AsSegment.AS_SEQUENCE, [65002])
        ]
        out = pb.GetNeighborPathRequest(kind=pb.GetNeighborPathRequest.OUT, addr=str(B))
        out.family.CopyFrom(IPV4)
        sent = (await api.GetNeighborPath(out)).paths
        assert [(p.nlri, list(p.next_hops)) for p in sent] == [("10.5.0.0/24", [str(A)])]
        peer = (await api.GetNeighbor(pb.GetNeighborRequest(addr=str(B)))).peer
        assert peer.router_id == "10.255.0.32" and peer.HasField("uptime")
        assert peer.recv_counter.update >= 1 and peer.send_counter.update >= 1
        unknown = pb.GetNeighborPathRequest(addr=str(B))
        unknown.family.CopyFrom(IPV4)
        await refused(lambda: api.GetNeighborPath(unknown), Status.INVALID_ARGUMENT, "kind")
    finally:
        await other.stop()


async def test_each_name_reaches_its_own_contract(channel: Any) -> None:
    """Our calls under the original's name get UNIMPLEMENTED, not an answer to another message;
    the original's method names under ours likewise."""
    for path, request, reply in [
        ("/sart.v1.BgpApi/AddNeighbor", ours.AddNeighborRequest, ours.AddNeighborResponse),
        ("/sart.v1.BgpApi/ListNeighbors", ours.ListNeighborsRequest, ours.ListNeighborsResponse),
        ("/sart.v1.BgpApi/GetRib", ours.GetRibRequest, ours.GetRibResponse),
        ("/sart.v1.BgpApi/SetAs", ours.SetAsRequest, ours.SetAsResponse),
        ("/sart.speaker.v1.SpeakerApi/AddPeer", pb.AddPeerRequest, Empty),
        ("/sart.speaker.v1.SpeakerApi/DeletePeer", pb.DeletePeerRequest, Empty),
    ]:
        # The error leaves the `async with`: caught inside, grpclib's stream would wait on exit.
        with pytest.raises(GRPCError):
            async with channel.request(path, Cardinality.UNARY_UNARY, request, reply) as stream:
                await stream.send_message(request(), end=True)
                await stream.recv_message()
        # grpclib's server answers an unknown method trailers-only without content-type,
        # which grpclib's client reports as UNKNOWN before reading grpc-status; other
        # clients (tonic, grpcio: test_sartd_cli.py) read UNIMPLEMENTED from the same headers.
        headers = dict(stream._stream.headers or ())
        assert headers.get("grpc-status") == str(Status.UNIMPLEMENTED.value), path
    # And each API answers its own calls on the same channel.
    info = await SpeakerApiStub(channel).GetBgpInfo(ours.GetBgpInfoRequest())
    assert info.asn == 65001
    assert (await BgpApiStub(channel).GetBgpInfo(pb.GetBgpInfoRequest())).info.asn == 65001
