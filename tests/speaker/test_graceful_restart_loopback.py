"""Graceful restart as the restarting side (RFC 4724 4.1), over real TCP on loopback: what our
OPEN says, End-of-RIB held until the table is complete (signal or deferral timer), and a stop
that closes the connections without a NOTIFICATION."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from netaddr import IPAddress, IPNetwork

from loopback import speaker_config
from sart.bgp.config import NeighborConfig
from sart.bgp.fsm import Config, Deliver, State
from sart.bgp.messages import (
    IPV4_UNICAST,
    FourOctetAsCapability,
    GracefulRestartCapability,
    MultiprotocolCapability,
    Open,
    Update,
)
from sart.bgp.restart import Completed
from sart.bgp.session import Session
from sart.bgp.speaker import Speaker
from waiting import until

A, B, C = IPAddress("127.0.0.41"), IPAddress("127.0.0.42"), IPAddress("127.0.0.43")
pytestmark = pytest.mark.asyncio


async def eventually(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    return await until(check, timeout, 0.02)


class Router:
    """The peer, a Session driven by hand, that records the UPDATEs it receives."""

    def __init__(self, asn: int, router_id: str) -> None:
        local = Open(
            my_as=asn,
            hold_time=30,
            bgp_id=IPAddress(router_id),
            capabilities=(
                MultiprotocolCapability(1, 1),
                FourOctetAsCapability(asn),
                GracefulRestartCapability(0, 120),
            ),
        )
        self.session = Session(Config(local=local))
        self.updates: list[Update] = []
        self.raw = b""
        self.reader: asyncio.StreamReader
        self.writer: asyncio.StreamWriter
        self.task: asyncio.Task[None] | None = None

    async def connect(self, port: int, source: IPAddress, target: IPAddress) -> None:
        sock = socket.socket()
        sock.bind((str(source), 0))
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (str(target), port))
        self.reader, self.writer = await asyncio.open_connection(sock=sock)
        now = asyncio.get_running_loop().time()
        self.session.start(now)
        self.session.connection_made(now)
        self.writer.write(self.session.data_to_send())
        self.task = asyncio.get_running_loop().create_task(self._read())
        await eventually(lambda: self.session.state is State.ESTABLISHED)

    async def _read(self) -> None:
        while data := await self.reader.read(65536):
            self.raw += data
            for action in self.session.receive_data(data, asyncio.get_running_loop().time()):
                if isinstance(action, Deliver) and isinstance(action.message, Update):
                    self.updates.append(action.message)
            self.writer.write(self.session.data_to_send())

    @property
    def their_restart(self) -> GracefulRestartCapability | None:
        negotiated = self.session.fsm.negotiated
        assert negotiated is not None
        return negotiated.peer_graceful_restart

    @property
    def end_of_rib(self) -> bool:
        return any(u.end_of_rib_family == IPV4_UNICAST for u in self.updates)

    @property
    def prefixes(self) -> set[IPNetwork]:
        return {p for u in self.updates for p in u.nlri}

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        self.writer.close()


def _neighbor(address: IPAddress, asn: int) -> NeighborConfig:
    return NeighborConfig(address=address, asn=asn, passive=True, local_address=A)


@pytest_asyncio.fixture
async def routers() -> AsyncIterator[list[Router]]:
    made: list[Router] = []
    yield made
    for router in made:
        router.close()


async def _speaker(**options: object) -> Speaker:
    config = speaker_config(A, 65001, restarting_side=True, **options)
    speaker = Speaker(config)
    await speaker.start()
    return speaker


async def test_end_of_rib_waits_for_the_signal(routers: list[Router]) -> None:
    speaker = await _speaker(defer_end_of_rib=True, selection_deferral_time=60)
    try:
        speaker.add_neighbor(_neighbor(B, 65002))
        router = Router(65002, "10.255.0.42")
        routers.append(router)
        await router.connect(speaker.ports[0], B, A)
        # Our OPEN: restarted (R bit), IPv4 and IPv6 with their forwarding state kept (F bits)
        capability = router.their_restart
        assert capability is not None
        assert capability.restart_flags == GracefulRestartCapability.RESTART_STATE
        assert [(f.afi, f.safi, f.flags) for f in capability.families] == [
            (1, 1, 0x80),
            (2, 1, 0x80),
        ]
        # the agent puts the path back a little later: sent, but no End-of-RIB yet
        speaker.announce([IPNetwork("10.9.0.0/24")])
        await eventually(lambda: IPNetwork("10.9.0.0/24") in router.prefixes)
        await asyncio.sleep(0.3)
        assert not router.end_of_rib
        assert speaker.end_of_initial_table() is True
        await eventually(lambda: router.end_of_rib)
        assert speaker.initial_table.completed is Completed.SIGNALLED
        assert speaker.end_of_initial_table() is False  # idempotent
    finally:
        await speaker.stop()


async def test_end_of_rib_goes_out_when_the_deferral_timer_expires(
    routers: list[Router],
) -> None:
    speaker = await _speaker(defer_end_of_rib=True, selection_deferral_time=1)
    try:
        speaker.add_neighbor(_neighbor(B, 65002))
        router = Router(65002, "10.255.0.42")
        routers.append(router)
        await router.connect(speaker.ports[0], B, A)
        began = asyncio.get_running_loop().time()
        await eventually(lambda: router.end_of_rib, timeout=5)
        assert asyncio.get_running_loop().time() - began > 0.5
        assert speaker.initial_table.completed is Completed.DEFERRAL_EXPIRED
        assert not router.prefixes  # nothing of ours came back: the router drops the stale
    finally:
        await speaker.stop()


async def test_without_deferral_end_of_rib_follows_the_configured_table(
    routers: list[Router],
) -> None:
    speaker = await _speaker()
    try:
        assert speaker.initial_table.completed is Completed.CONFIGURED
        speaker.add_neighbor(_neighbor(B, 65002))  # added once the table is complete: new
        router = Router(65002, "10.255.0.42")
        routers.append(router)
        await router.connect(speaker.ports[0], B, A)
        await eventually(lambda: router.end_of_rib)
        capability = router.their_restart
        assert capability is not None and capability.restart_flags == 0
        assert capability.families  # still a restarting side: routes kept if we go away
    finally:
        await speaker.stop()


async def test_the_restart_bit_is_only_on_the_first_session(routers: list[Router]) -> None:
    speaker = await _speaker(defer_end_of_rib=True)
    try:
        speaker.add_neighbor(_neighbor(B, 65002))
        first = Router(65002, "10.255.0.42")
        routers.append(first)
        await first.connect(speaker.ports[0], B, A)
        assert first.their_restart is not None and first.their_restart.restart_flags == 8
        first.writer.transport.abort()  # the router's side of the session fails
        await eventually(lambda: speaker.neighbors[B].state is not State.ESTABLISHED)
        second = Router(65002, "10.255.0.42")
        routers.append(second)
        await second.connect(speaker.ports[0], B, A)
        assert second.their_restart is not None and second.their_restart.restart_flags == 0
    finally:
        await speaker.stop()


async def test_a_restarting_side_stops_without_a_notification(routers: list[Router]) -> None:
    speaker = await _speaker()
    speaker.add_neighbor(_neighbor(B, 65002))
    router = Router(65002, "10.255.0.42")
    routers.append(router)
    await router.connect(speaker.ports[0], B, A)
    await eventually(lambda: router.end_of_rib)
    before = len(router.raw)
    await speaker.stop()
    assert router.task is not None
    await asyncio.wait_for(router.task, 5)  # EOF
    assert router.session.notification_received is None
    assert b"\x03\x06" not in router.raw[before:]  # no Cease either
