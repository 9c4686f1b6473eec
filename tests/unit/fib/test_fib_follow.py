"""sart.fib.follow against real speakers on loopback (their API on a unix socket) and a model
of the kernel's table: the follower's protocol with the API (watch, table, events, reconnect,
grace), without root. tests/interop/test_fib.py runs it against the real kernel."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from grpclib.protocol import H2Protocol
from grpclib.server import Server
from netaddr import IPAddress, IPNetwork

from loopback import speaker_config
from sart.api.speaker_service import SpeakerService
from sart.bgp.config import NeighborConfig
from sart.bgp.speaker import Speaker
from sart.fib.follow import FibStats, Follower
from sart.fib.kernel import KernelError
from sart.fib.plan import FibConfig, Route
from waiting import until

A, B, C = IPAddress("127.0.0.61"), IPAddress("127.0.0.62"), IPAddress("127.0.0.63")
P1, P2 = IPNetwork("10.61.1.0/24"), IPNetwork("10.61.2.0/24")

pytestmark = pytest.mark.asyncio


class ModelKernel:
    """A kernel table as a dict keyed the way the kernel keys routes."""

    def __init__(self, *routes: Route) -> None:
        self.table = {r.key: r for r in routes}
        self.refuse: set[IPNetwork] = set()

    async def routes(self) -> list[Route]:
        return list(self.table.values())

    async def replace(self, route: Route) -> None:
        if route.destination in self.refuse:
            raise KernelError(route, "replace", 101, "Network is unreachable")
        self.table[route.key] = route

    async def delete(self, route: Route) -> None:
        self.table.pop(route.key, None)

    def gateways(self) -> dict[IPNetwork, list[str]]:
        return {r.destination: [str(g) for g in r.gateways] for r in self.table.values()}


def route(prefix: IPNetwork, *hops: IPAddress) -> Route:
    return Route(destination=prefix, gateways=hops)


class DroppingServer(Server):
    """A grpclib Server that can also cut its open connections, as a speaker process that
    exits does (Server.close() leaves them open)."""

    def __init__(self, handlers: list[Any]) -> None:
        super().__init__(handlers)
        self.transports: list[asyncio.BaseTransport] = []

    def _protocol_factory(self) -> H2Protocol:
        protocol = super()._protocol_factory()
        made = protocol.connection_made

        def connection_made(transport: asyncio.BaseTransport) -> None:
            self.transports.append(transport)
            made(transport)

        protocol.connection_made = connection_made  # type: ignore[method-assign]
        return protocol

    def drop_connections(self) -> None:
        for transport in self.transports:
            transport.close()


class Rig:
    """Speaker A (the node's, multipath on, API on a unix socket) and two peers B and C (same
    AS, so their paths tie) that announce prefixes to it."""

    def __init__(self, socket: Path) -> None:
        self.socket = socket
        self.a: Speaker | None = None
        self.server: DroppingServer | None = None
        self.peers: dict[IPAddress, Speaker] = {}

    async def start_node(self) -> Speaker:
        self.a = Speaker(speaker_config(A, 65001, multi_path=True))
        await self.a.start()
        self.server = DroppingServer([SpeakerService(self.a)])
        await self.server.start(path=str(self.socket))
        for address, peer in self.peers.items():
            self.a.add_neighbor(
                NeighborConfig(address=address, asn=65002, port=peer.ports[0], local_address=A)
            )
            await peer.remove_neighbor(A)  # and again at A's new port
            peer.add_neighbor(
                NeighborConfig(address=A, asn=65001, port=self.a.ports[0], local_address=address)
            )
        return self.a

    async def stop_node(self) -> None:
        assert self.a is not None and self.server is not None
        self.server.close()
        self.server.drop_connections()
        await self.a.stop()
        await self.server.wait_closed()
        self.a = self.server = None

    async def add_peer(self, address: IPAddress) -> Speaker:
        assert self.a is not None
        peer = Speaker(speaker_config(address, 65002))
        await peer.start()
        self.peers[address] = peer
        self.a.add_neighbor(
            NeighborConfig(address=address, asn=65002, port=peer.ports[0], local_address=A)
        )
        peer.add_neighbor(
            NeighborConfig(address=A, asn=65001, port=self.a.ports[0], local_address=address)
        )
        return peer

    async def close(self) -> None:
        if self.a is not None:
            await self.stop_node()
        for peer in self.peers.values():
            await peer.stop()


@pytest_asyncio.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    made = Rig(tmp_path / "bgp.sock")
    await made.start_node()
    yield made
    await made.close()


async def following(
    rig: Rig, kernel: ModelKernel, **options: object
) -> tuple[Follower, asyncio.Task[None]]:
    config = options.pop("config", FibConfig(grace=30.0))
    follower = Follower(
        f"unix:{rig.socket}",
        config,  # type: ignore[arg-type]
        kernel,
        retry=0.05,
        max_retry=0.2,
        **options,  # type: ignore[arg-type]
    )
    return follower, asyncio.create_task(follower.run())


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def stats(follower: Follower, check: Callable[[FibStats], bool]) -> Callable[[], bool]:
    return lambda: check(follower.statistics())


async def test_table_then_events_ecmp_and_withdraw(rig: Rig) -> None:
    leftover = route(IPNetwork("10.99.0.0/24"), IPAddress("127.0.0.99"))  # a previous run's
    kernel = ModelKernel(leftover)
    b = await rig.add_peer(B)
    b.announce([P1])
    assert rig.a is not None
    await until(lambda: rig.a is not None and rig.a.rib.lookup(P1), 10)
    # The speaker has been up for longer than the grace: the leftover goes at once.
    follower, task = await following(rig, kernel, config=FibConfig(grace=0.0))
    try:
        await until(lambda: kernel.gateways() == {P1: [str(B)]}, 10)
        c = await rig.add_peer(C)
        c.announce([P1, P2])
        await until(lambda: kernel.gateways() == {P1: [str(B), str(C)], P2: [str(C)]}, 10)
        b.withdraw([P1])
        await until(lambda: kernel.gateways() == {P1: [str(C)], P2: [str(C)]}, 10)
        rig.a.announce([P2])  # the node originates it now: no kernel route for it
        await until(lambda: kernel.gateways() == {P1: [str(C)]}, 10)
        got = follower.statistics()
        assert got.connected and got.connections == 1 and got.errors == 0
        assert got.removed == 2  # the leftover, P2 (a change is a replace, not a removal)
        assert got.installed == 4  # P1 via B, P1 via B and C, P2, P1 via C
        assert got.routes == 1 and got.events >= 4
    finally:
        await stop(task)


async def test_routes_outlive_the_speaker_for_the_grace_time(rig: Rig) -> None:
    kernel = ModelKernel()
    b = await rig.add_peer(B)
    b.announce([P1])
    follower, task = await following(rig, kernel, config=FibConfig(grace=1.0))
    try:
        await until(lambda: kernel.gateways() == {P1: [str(B)]}, 10)
        await rig.stop_node()
        await until(stats(follower, lambda s: not s.connected), 5)
        assert kernel.gateways() == {P1: [str(B)]}  # kept meanwhile
        await until(lambda: not kernel.table, 5)
        assert follower.statistics().routes == 0
    finally:
        await stop(task)


async def test_a_restarted_speaker_keeps_routes_then_sweeps_the_stale_ones(rig: Rig) -> None:
    kernel = ModelKernel()
    b = await rig.add_peer(B)
    b.announce([P1, P2])
    follower, task = await following(rig, kernel, config=FibConfig(grace=2.0))
    try:
        await until(lambda: set(kernel.gateways()) == {P1, P2}, 10)
        await rig.stop_node()
        await until(stats(follower, lambda s: not s.connected), 5)
        b.withdraw([P2])  # while the node's speaker is down
        await rig.start_node()  # comes back with an empty table, and relearns P1 from B
        await until(stats(follower, lambda s: s.connections == 2), 10)
        assert set(kernel.gateways()) == {P1, P2}  # P2 is stale, kept for now
        await until(lambda: kernel.gateways() == {P1: [str(B)]}, 10)  # then swept
        assert follower.statistics().errors == 0
    finally:
        await stop(task)


async def test_a_refused_route_is_counted_and_retried_at_the_next_resync(rig: Rig) -> None:
    kernel = ModelKernel()
    kernel.refuse.add(P1)
    b = await rig.add_peer(B)
    b.announce([P1])
    follower, task = await following(rig, kernel, resync_interval=0.2)
    try:
        await until(stats(follower, lambda s: s.errors >= 1), 10)
        assert kernel.table == {}
        kernel.refuse.clear()
        await until(lambda: kernel.gateways() == {P1: [str(B)]}, 10)
        assert follower.statistics().synchronisations >= 2
    finally:
        await stop(task)


async def test_a_speaker_that_is_not_there_yet(tmp_path: Path) -> None:
    kernel = ModelKernel(route(P1, B))
    follower = Follower(
        f"unix:{tmp_path / 'none.sock'}", FibConfig(grace=0.3), kernel, retry=0.05, max_retry=0.1
    )
    task = asyncio.create_task(follower.run())
    try:
        await until(stats(follower, lambda s: s.attempts >= 3), 5)
        assert not follower.statistics().connected
        # Never reached: routes found in the kernel are not ours to judge, they stay.
        assert kernel.table
    finally:
        await stop(task)
