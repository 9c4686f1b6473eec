"""Which of our own paths each peer was sent: the WatchEvents `paths_sent` event and the
GetPathsSent call, over a real speaker peering with another on loopback TCP."""

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
from sart.bgp.config import NeighborConfig
from sart.bgp.speaker import Speaker
from waiting import until

pytestmark = pytest.mark.asyncio
A, B = IPAddress("127.0.0.71"), IPAddress("127.0.0.72")
SERVICE, HIDDEN = "10.71.0.1/32", "10.71.0.2/32"


@pytest_asyncio.fixture
async def api(speaker: Speaker) -> AsyncIterator[SpeakerApiStub]:
    async with ChannelFor([SpeakerService(speaker)]) as channel:
        yield SpeakerApiStub(channel)


async def eventually(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    return await until(check, timeout, 0.05)


async def sent(api: SpeakerApiStub, *prefixes: str) -> dict[str, list[str]]:
    response = await api.GetPathsSent(pb.GetPathsSentRequest(prefixes=list(prefixes)))
    return {p.prefix: list(p.peers) for p in response.paths}


async def next_paths_sent(stream: Any) -> Any:
    while True:
        event = await asyncio.wait_for(stream.recv_message(), 10)
        assert event is not None
        if event.HasField("paths_sent"):
            return event.paths_sent


async def test_paths_sent_follow_what_went_out_to_each_peer(
    speaker: Speaker, api: SpeakerApiStub
) -> None:
    """Our path is reported sent to the peer (and the peer has it) once the session is up;
    one with NO_ADVERTISE never; deleting it reports the withdrawal (the peer loses it); the
    session ending empties the peer's set without a withdrawal event."""
    await api.AddPaths(pb.AddPathsRequest(prefixes=[SERVICE]))
    hidden = pb.PathAttributes(communities=["no-advertise"])
    await api.AddPaths(pb.AddPathsRequest(prefixes=[HIDDEN], attributes=hidden))
    assert await sent(api) == {SERVICE: [], HIDDEN: []}  # ours, sent to nobody yet
    other = Speaker(speaker_config(B, 65002))
    await other.start()
    async with api.WatchEvents.open() as stream:
        try:
            await stream.send_message(pb.WatchEventsRequest(), end=True)
            await until(lambda: speaker._subscribers, 5)
            speaker.add_neighbor(
                NeighborConfig(address=B, asn=65002, port=other.ports[0], local_address=A)
            )
            other.add_neighbor(
                NeighborConfig(address=A, asn=65001, port=speaker.ports[0], local_address=B)
            )
            event = await next_paths_sent(stream)
            assert (event.peer, list(event.advertised), list(event.withdrawn)) == (
                str(B),
                [SERVICE],
                [],
            )
            assert await sent(api) == {SERVICE: [str(B)], HIDDEN: []}
            assert await sent(api, SERVICE, "10.99.0.0/24") == {
                SERVICE: [str(B)],
                "10.99.0.0/24": [],
            }
            await eventually(lambda: other.rib.lookup(IPNetwork(SERVICE)))
            assert not other.rib.lookup(IPNetwork(HIDDEN))

            await api.DeletePaths(pb.DeletePathsRequest(prefixes=[SERVICE]))
            event = await next_paths_sent(stream)
            assert (event.peer, list(event.advertised), list(event.withdrawn)) == (
                str(B),
                [],
                [SERVICE],
            )
            assert await sent(api, SERVICE) == {SERVICE: []}
            await eventually(lambda: not other.rib.lookup(IPNetwork(SERVICE)))

            await api.AddPaths(pb.AddPathsRequest(prefixes=[SERVICE]))
            event = await next_paths_sent(stream)
            assert list(event.advertised) == [SERVICE]
            await other.stop()  # the session ends: the peer drops what it had
            await eventually(lambda: speaker.neighbors[B].established is None)
            assert await sent(api) == {SERVICE: [], HIDDEN: []}
        finally:
            await other.stop()
            await stream.cancel()


async def test_get_paths_sent_refuses_what_is_not_a_prefix(api: SpeakerApiStub) -> None:
    with pytest.raises(GRPCError) as error:
        await sent(api, "10.0.0.1/24")
    assert error.value.status is Status.INVALID_ARGUMENT
    assert "host bits" in (error.value.message or "")
