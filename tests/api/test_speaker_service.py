"""The sart.speaker.v1 API over a real speaker: grpclib's ChannelFor (real gRPC framing, no
port) for the calls, loopback TCP between speakers for the RIBs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.testing import ChannelFor
from netaddr import IPAddress, IPNetwork

from loopback import speaker_config
from sart.api._gen.sart.speaker.v1 import speaker_pb2 as pb
from sart.api._gen.sart.speaker.v1.speaker_grpc import SpeakerApiStub
from sart.api.speaker_service import SpeakerService
from sart.bgp.config import NeighborConfig, password_matches
from sart.bgp.fsm import State
from sart.bgp.speaker import Speaker
from waiting import until

pytestmark = pytest.mark.asyncio
A, B = IPAddress("127.0.0.21"), IPAddress("127.0.0.22")


@pytest_asyncio.fixture
async def api(speaker: Speaker) -> AsyncIterator[SpeakerApiStub]:
    async with ChannelFor([SpeakerService(speaker)]) as channel:
        yield SpeakerApiStub(channel)


async def eventually(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    return await until(check, timeout, 0.05)


async def snapshot(api: SpeakerApiStub) -> tuple[Any, ...]:
    """Everything a caller can read, minus clocks."""
    info = await api.GetBgpInfo(pb.GetBgpInfoRequest())
    info.ClearField("uptime_seconds")
    neighbors = await api.ListNeighbors(pb.ListNeighborsRequest())
    rib = await api.GetRib(pb.GetRibRequest())
    for path in rib.paths:
        path.ClearField("age_seconds")
    return info, neighbors, rib


async def test_health_info_and_paths(api: SpeakerApiStub) -> None:
    await api.Health(pb.HealthRequest())
    info = await api.GetBgpInfo(pb.GetBgpInfoRequest())
    assert (info.asn, info.router_id, info.neighbors) == (65001, "10.255.0.21", 0)
    attributes = pb.PathAttributes(
        origin=pb.ORIGIN_INCOMPLETE,
        med=7,
        local_pref=200,
        communities=["65001:5", "no-export"],
        large_communities=["65001:7:4294967295", "65001:1:2"],
    )
    added = await api.AddPaths(
        pb.AddPathsRequest(prefixes=["10.1.0.0/24", "2001:db8::/48"], attributes=attributes)
    )
    assert added.added == 2
    rib = await api.GetRib(pb.GetRibRequest())
    assert sorted(p.prefix for p in rib.paths) == ["10.1.0.0/24", "2001:db8::/48"]
    path = rib.paths[0]
    assert (path.origin, path.med, path.local_pref, path.best, path.source) == (
        pb.ORIGIN_INCOMPLETE,
        7,
        200,
        True,
        "local",
    )
    assert list(path.communities) == ["65001:5", "NO_EXPORT"]
    assert list(path.large_communities) == ["65001:1:2", "65001:7:4294967295"]
    v6 = await api.GetRib(pb.GetRibRequest(family=pb.FAMILY_IPV6_UNICAST))
    assert [p.prefix for p in v6.paths] == ["2001:db8::/48"]
    covering = await api.GetRib(pb.GetRibRequest(prefixes=["10.1.0.99"], longest_match=True))
    assert [p.prefix for p in covering.paths] == ["10.1.0.0/24"]
    exact = await api.GetRib(pb.GetRibRequest(prefixes=["10.1.0.0/24", "10.9.0.0/24"]))
    assert [p.prefix for p in exact.paths] == ["10.1.0.0/24"]
    deleted = await api.DeletePaths(pb.DeletePathsRequest(prefixes=["10.1.0.0/24", "10.9.0.0/24"]))
    assert deleted.deleted == 1
    info = await api.GetBgpInfo(pb.GetBgpInfoRequest())
    assert (info.rib_ipv4, info.rib_ipv6, info.local_paths) == (0, 1, 1)


async def test_identity_changes_only_without_neighbors(api: SpeakerApiStub) -> None:
    await api.AddPaths(pb.AddPathsRequest(prefixes=["10.2.0.0/24"]))
    await api.SetAs(pb.SetAsRequest(asn=4200000001))
    await api.SetRouterId(pb.SetRouterIdRequest(router_id="10.9.9.9"))
    info = await api.GetBgpInfo(pb.GetBgpInfoRequest())
    assert (info.asn, info.router_id, info.local_paths) == (4200000001, "10.9.9.9", 1)
    await api.AddNeighbor(pb.AddNeighborRequest(neighbor=pb.Neighbor(address="127.0.0.99", asn=1)))
    with pytest.raises(GRPCError) as error:
        await api.SetAs(pb.SetAsRequest(asn=65009))
    assert error.value.status is Status.FAILED_PRECONDITION


async def test_keepalive_time_round_trips(api: SpeakerApiStub) -> None:
    neighbor = pb.Neighbor(address="127.0.0.98", asn=65098, hold_time=9, keepalive_time=2, ttl=4)
    await api.AddNeighbor(pb.AddNeighborRequest(neighbor=neighbor))
    got = (await api.GetNeighbor(pb.GetNeighborRequest(address="127.0.0.98"))).neighbor
    assert (got.config.hold_time, got.config.keepalive_time, got.config.ttl) == (9, 2, 4)
    assert (got.has_password, got.password_digest) == (False, "")


async def test_bfd_round_trips(speaker: Speaker, api: SpeakerApiStub) -> None:
    bfd = pb.Bfd(min_rx_ms=150, min_tx_ms=200, multiplier=4)
    neighbor = pb.Neighbor(address="127.0.0.97", asn=65097, bfd=bfd)
    await api.AddNeighbor(pb.AddNeighborRequest(neighbor=neighbor))
    got = (await api.GetNeighbor(pb.GetNeighborRequest(address="127.0.0.97"))).neighbor
    assert got.config.bfd == bfd
    config = speaker.neighbors[IPAddress("127.0.0.97")].config
    assert config.bfd is not None
    assert (config.bfd.min_rx, config.bfd.min_tx, config.bfd.multiplier) == (150, 200, 4)
    # 0 in a field is its default; no bfd at all is no BFD
    zeros = pb.Neighbor(address="127.0.0.96", asn=65096, bfd=pb.Bfd())
    await api.AddNeighbor(pb.AddNeighborRequest(neighbor=zeros))
    got = (await api.GetNeighbor(pb.GetNeighborRequest(address="127.0.0.96"))).neighbor
    assert got.config.bfd == pb.Bfd(min_rx_ms=300, min_tx_ms=300, multiplier=3)
    await api.AddNeighbor(pb.AddNeighborRequest(neighbor=pb.Neighbor(address="127.0.0.95", asn=1)))
    got = (await api.GetNeighbor(pb.GetNeighborRequest(address="127.0.0.95"))).neighbor
    assert not got.config.HasField("bfd")
    assert speaker.neighbors[IPAddress("127.0.0.95")].config.bfd is None


async def test_neighbor_lifecycle(api: SpeakerApiStub) -> None:
    neighbor = pb.Neighbor(
        address="127.0.0.99", asn=65099, name="tor", passive=True, hold_time=30, password="pw"
    )
    await api.AddNeighbor(pb.AddNeighborRequest(neighbor=neighbor))
    got = (await api.GetNeighbor(pb.GetNeighborRequest(address="127.0.0.99"))).neighbor
    assert (got.config.name, got.config.hold_time, got.has_password) == ("tor", 30, True)
    assert got.config.password == ""  # never returned
    assert password_matches("pw", got.password_digest)  # only whether it is the one sent
    assert not password_matches("other", got.password_digest)
    assert not got.config.HasField("keepalive_time")
    assert got.state == pb.SESSION_STATE_ACTIVE
    await api.SetNeighborAdmin(pb.SetNeighborAdminRequest(address="127.0.0.99", down=True))
    got = (await api.GetNeighbor(pb.GetNeighborRequest(address="127.0.0.99"))).neighbor
    assert (got.config.admin_down, got.state) == (True, pb.SESSION_STATE_IDLE)
    await api.DeleteNeighbor(pb.DeleteNeighborRequest(address="127.0.0.99"))
    assert not (await api.ListNeighbors(pb.ListNeighborsRequest())).neighbors


BAD_CALLS: list[tuple[str, str, Any, Status]] = [
    ("GetNeighbor", "unknown", pb.GetNeighborRequest(address="127.0.0.50"), Status.NOT_FOUND),
    ("GetNeighbor", "not an address", pb.GetNeighborRequest(address="x"), Status.INVALID_ARGUMENT),
    ("DeleteNeighbor", "unknown", pb.DeleteNeighborRequest(address="::9"), Status.NOT_FOUND),
    (
        "SetNeighborAdmin",
        "unknown",
        pb.SetNeighborAdminRequest(address="127.0.0.50", down=True),
        Status.NOT_FOUND,
    ),
    ("AddNeighbor", "missing", pb.AddNeighborRequest(), Status.INVALID_ARGUMENT),
    (
        "AddNeighbor",
        "duplicate",
        pb.AddNeighborRequest(neighbor=pb.Neighbor(address="127.0.0.99", asn=2)),
        Status.ALREADY_EXISTS,
    ),
    (
        "AddNeighbor",
        "ASN 0",
        pb.AddNeighborRequest(neighbor=pb.Neighbor(address="127.0.0.51", asn=0)),
        Status.INVALID_ARGUMENT,
    ),
    (
        "AddNeighbor",
        "hold time 2",
        pb.AddNeighborRequest(neighbor=pb.Neighbor(address="127.0.0.51", asn=2, hold_time=2)),
        Status.INVALID_ARGUMENT,
    ),
    (
        "AddNeighbor",
        "keepalive at the hold time",
        pb.AddNeighborRequest(
            neighbor=pb.Neighbor(address="127.0.0.51", asn=2, hold_time=9, keepalive_time=9)
        ),
        Status.INVALID_ARGUMENT,
    ),
    (
        "AddNeighbor",
        "keepalive beyond the speaker's hold time",
        pb.AddNeighborRequest(
            neighbor=pb.Neighbor(address="127.0.0.51", asn=2, keepalive_time=65535)
        ),
        Status.INVALID_ARGUMENT,
    ),
    (
        "AddNeighbor",
        "BFD multiplier 256",
        pb.AddNeighborRequest(
            neighbor=pb.Neighbor(address="127.0.0.51", asn=2, bfd=pb.Bfd(multiplier=256))
        ),
        Status.INVALID_ARGUMENT,
    ),
    (
        "AddNeighbor",
        "TTL 300",
        pb.AddNeighborRequest(neighbor=pb.Neighbor(address="127.0.0.51", asn=2, ttl=300)),
        Status.INVALID_ARGUMENT,
    ),
    (
        "AddNeighbor",
        "bad family",
        pb.AddNeighborRequest(neighbor=pb.Neighbor(address="127.0.0.51", asn=2, families=[7])),
        Status.INVALID_ARGUMENT,
    ),
    (
        "AddPaths",
        "host bits",
        pb.AddPathsRequest(prefixes=["10.3.0.0/24", "10.3.0.1/24"]),
        Status.INVALID_ARGUMENT,
    ),
    ("AddPaths", "no length", pb.AddPathsRequest(prefixes=["10.3.0.0"]), Status.INVALID_ARGUMENT),
    ("AddPaths", "junk", pb.AddPathsRequest(prefixes=["junk"]), Status.INVALID_ARGUMENT),
    (
        "AddPaths",
        "community",
        pb.AddPathsRequest(
            prefixes=["10.3.0.0/24"], attributes=pb.PathAttributes(communities=["70000:1"])
        ),
        Status.INVALID_ARGUMENT,
    ),
    (
        "AddPaths",
        "large community",
        pb.AddPathsRequest(
            prefixes=["10.3.0.0/24"],
            attributes=pb.PathAttributes(large_communities=["65000:1:4294967296"]),
        ),
        Status.INVALID_ARGUMENT,
    ),
    (
        "AddPaths",
        "next hop",
        pb.AddPathsRequest(prefixes=["10.3.0.0/24"], attributes=pb.PathAttributes(next_hop="x")),
        Status.INVALID_ARGUMENT,
    ),
    ("DeletePaths", "junk", pb.DeletePathsRequest(prefixes=["::/129"]), Status.INVALID_ARGUMENT),
    ("GetRib", "junk", pb.GetRibRequest(prefixes=["x/8"]), Status.INVALID_ARGUMENT),
    ("GetRib", "family", pb.GetRibRequest(family=9), Status.INVALID_ARGUMENT),
    (
        "GetNeighborRib",
        "unknown",
        pb.GetNeighborRibRequest(address="127.0.0.50"),
        Status.NOT_FOUND,
    ),
    ("SetAs", "ASN 0", pb.SetAsRequest(asn=0), Status.INVALID_ARGUMENT),
    ("SetRouterId", "IPv6", pb.SetRouterIdRequest(router_id="::1"), Status.INVALID_ARGUMENT),
    ("SetRouterId", "junk", pb.SetRouterIdRequest(router_id="1.2.3"), Status.INVALID_ARGUMENT),
]


@pytest.mark.parametrize(
    ("method", "request_"),
    [(c[0], c[2]) for c in BAD_CALLS],
    ids=[f"{c[0]}-{c[1]}" for c in BAD_CALLS],
)
async def test_bad_calls_get_the_right_status_and_change_nothing(
    api: SpeakerApiStub, method: str, request_: Any
) -> None:
    expected = next(c[3] for c in BAD_CALLS if c[0] == method and c[2] is request_)
    await api.AddNeighbor(pb.AddNeighborRequest(neighbor=pb.Neighbor(address="127.0.0.99", asn=9)))
    await api.AddPaths(pb.AddPathsRequest(prefixes=["10.4.0.0/24"]))
    before = await snapshot(api)
    with pytest.raises(GRPCError) as error:
        await getattr(api, method)(request_)
    assert error.value.status is expected
    assert error.value.message  # says what was wrong
    assert await snapshot(api) == before
    await api.Health(pb.HealthRequest())  # still serving


async def test_events_stream_and_neighbor_ribs(speaker: Speaker, api: SpeakerApiStub) -> None:
    async with api.WatchEvents.open() as stream:
        await stream.send_message(pb.WatchEventsRequest(), end=True)
        await until(lambda: speaker._subscribers, 5)  # subscribed: no event can be missed
        await api.AddPaths(pb.AddPathsRequest(prefixes=["10.5.0.0/24"]))
        event = await asyncio.wait_for(stream.recv_message(), 5)
        assert event is not None and event.best_path_changed.prefix == "10.5.0.0/24"
        other = Speaker(speaker_config(B, 65002))
        await other.start()
        try:
            await api.AddNeighbor(
                pb.AddNeighborRequest(
                    neighbor=pb.Neighbor(
                        address=str(B), asn=65002, port=other.ports[0], local_address=str(A)
                    )
                )
            )
            other.add_neighbor(
                NeighborConfig(address=A, asn=65001, port=speaker.ports[0], local_address=B)
            )
            states = []
            while pb.SESSION_STATE_ESTABLISHED not in states:
                event = await asyncio.wait_for(stream.recv_message(), 10)
                assert event is not None
                if event.HasField("peer_state_changed"):
                    states.append(event.peer_state_changed.state)
            other.announce([IPNetwork("10.6.0.0/24")])

            async def learned() -> bool:
                rib = await api.GetNeighborRib(pb.GetNeighborRibRequest(address=str(B)))
                return [p.prefix for p in rib.paths] == ["10.6.0.0/24"]

            await eventually(learned)
            received = (await api.GetNeighborRib(pb.GetNeighborRibRequest(address=str(B)))).paths[0]
            assert (received.as_path, received.next_hop, received.best) == ("65002", str(B), True)
            sent = await api.GetNeighborRib(
                pb.GetNeighborRibRequest(address=str(B), direction=pb.RIB_DIRECTION_OUT)
            )
            assert [(p.prefix, p.as_path, p.next_hop) for p in sent.paths] == [
                ("10.5.0.0/24", "65001", str(A))
            ]
            state = (await api.GetNeighbor(pb.GetNeighborRequest(address=str(B)))).neighbor
            assert state.state == pb.SESSION_STATE_ESTABLISHED
            assert (state.prefixes_received, state.prefixes_sent) == (1, 1)
            assert state.peer_router_id == "10.255.0.22" and state.messages_received >= 3
            assert speaker.neighbors[B].state is State.ESTABLISHED
        finally:
            await other.stop()
            await stream.cancel()  # a server stream never ends by itself
