"""BMP export (sart.bgp.bmp_export) over real TCP on loopback: two speakers peer, one reports
to a collector this test runs; the collector reads the stream message by message."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from netaddr import IPAddress, IPNetwork

from loopback import speaker_config, started
from sart.bgp.bmp_export import BmpExporter
from sart.bgp.config import BmpCollectorConfig, NeighborConfig, PathAttributesConfig
from sart.bgp.context import SessionContext
from sart.bgp.fsm import State
from sart.bgp.messages import Update
from sart.bgp.speaker import Speaker
from sart.bgp.wire import decode_message
from waiting import until

A, B = IPAddress("127.0.0.31"), IPAddress("127.0.0.32")
FOUR_OCTET = SessionContext(four_octet_as=True)  # both speakers announce RFC 6793
INITIATION, PEER_UP, ROUTE_MONITORING, STATISTICS, PEER_DOWN = 4, 3, 0, 1, 2
pytestmark = pytest.mark.asyncio


class Collector:
    """A BMP collector: accepts connections, reads each as a list of (type, body)."""

    def __init__(self) -> None:
        self.connections: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
        self.connections = asyncio.Queue()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self, receive_buffer: int | None = None) -> None:
        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self.connections.put((reader, writer))

        self.server = await asyncio.start_server(accepted, "127.0.0.1", 0)
        sock = self.server.sockets[0]
        if receive_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.port = sock.getsockname()[1]

    async def accept(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.wait_for(self.connections.get(), 10)


async def read_message(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    version, length, kind = struct.unpack("!BIB", await reader.readexactly(6))
    assert version == 3
    return kind, await reader.readexactly(length - 6)


async def read_until(
    reader: asyncio.StreamReader, wanted: Any, timeout: float = 10.0
) -> list[tuple[int, bytes]]:
    """Messages up to the first for which `wanted(kind, body)` holds, that one included."""
    seen = []

    async def read() -> None:
        while True:
            kind, body = await read_message(reader)
            seen.append((kind, body))
            if wanted(kind, body):
                return

    await asyncio.wait_for(read(), timeout)
    return seen


async def until_closed(reader: asyncio.StreamReader) -> None:
    with contextlib.suppress(ConnectionResetError):
        while await reader.read(65536):
            pass


def update_of(body: bytes) -> Update:
    message = decode_message(body[42:], FOUR_OCTET)
    assert isinstance(message, Update)
    return message


def prefixes_in(messages: list[tuple[int, bytes]]) -> set[IPNetwork]:
    return {
        prefix
        for kind, body in messages
        if kind == ROUTE_MONITORING
        for prefix in update_of(body).nlri
    }


def is_end_of_rib(kind: int, body: bytes) -> bool:
    return kind == ROUTE_MONITORING and update_of(body).end_of_rib_family is not None


@pytest_asyncio.fixture
async def pair() -> AsyncIterator[tuple[Speaker, Speaker]]:
    async with started(speaker_config(A, 65001), speaker_config(B, 65002)) as (a, b):
        yield a, b


def peer(a: Speaker, b: Speaker) -> None:
    a.add_neighbor(NeighborConfig(address=B, asn=65002, port=b.ports[0], local_address=A))
    b.add_neighbor(NeighborConfig(address=A, asn=65001, port=a.ports[0], local_address=B))


async def established(a: Speaker) -> None:
    await until(lambda: a.neighbors[B].state is State.ESTABLISHED, 10)


@contextlib.asynccontextmanager
async def exporting(
    speaker: Speaker, collector: Collector, **options: Any
) -> AsyncIterator[BmpExporter]:
    interval = options.pop("statistics_interval", 0)
    config = BmpCollectorConfig(
        address=IPAddress("127.0.0.1"), port=collector.port, statistics_interval=interval
    )
    exporter = BmpExporter(speaker, [config], **options)
    exporter.start()
    try:
        yield exporter
    finally:
        await exporter.stop()


async def test_sessions_routes_statistics_and_resync(pair: tuple[Speaker, Speaker]) -> None:
    a, b = pair
    collector = Collector()
    await collector.start()
    async with exporting(a, collector, statistics_interval=1):
        reader, writer = await collector.accept()
        (_, body), *_ = await read_until(reader, lambda k, _: k == INITIATION)
        assert b"sart" in body
        b.announce([IPNetwork("10.2.0.0/24"), IPNetwork("10.2.1.0/24")])
        peer(a, b)
        up = await read_until(reader, lambda k, _: k == PEER_UP)
        assert struct.unpack_from("!I", up[-1][1], 26)[0] == 65002  # the peer's AS
        live = await read_until(reader, is_end_of_rib)  # B's End-of-RIB, as B sent it
        assert prefixes_in(live) == {IPNetwork("10.2.0.0/24"), IPNetwork("10.2.1.0/24")}
        stats = await read_until(reader, lambda k, _: k == STATISTICS)
        count, kind7, length7, routes = struct.unpack_from("!IHHQ", stats[-1][1], 42)
        assert (count, kind7, length7, routes) == (3, 7, 8, 2)  # and type 9 for each family

        # The collector goes away and comes back: the whole state again (RFC 7854 5).
        writer.close()
        reader, writer = await collector.accept()
        again = await read_until(reader, is_end_of_rib)
        kinds = [kind for kind, _ in again]
        assert kinds[:2] == [INITIATION, PEER_UP]
        assert prefixes_in(again) == {IPNetwork("10.2.0.0/24"), IPNetwork("10.2.1.0/24")}
        assert update_of(again[-1][1]).end_of_rib_family is not None
        (_, dump), *_ = [m for m in again if m[0] == ROUTE_MONITORING]
        assert struct.unpack_from("!II", dump, 34) == (0, 0)  # time of arrival not kept

        await b.stop()  # a Cease to A
        down = await read_until(reader, lambda k, _: k == PEER_DOWN)
        assert down[-1][1][42] == 3  # the remote system closed with a NOTIFICATION
        assert decode_message(down[-1][1][43:]).code == 6  # type: ignore[union-attr]
    terminated = await read_until(reader, lambda k, _: k == 5)
    assert terminated[-1][1][-2:] == b"\x00\x00"  # administratively closed
    writer.close()


async def test_a_collector_that_falls_behind_is_dropped_then_resynced(
    pair: tuple[Speaker, Speaker],
) -> None:
    """More messages than the queue holds: the connection is dropped, the speaker goes on
    unhindered, and the next connection gets the whole table from the RIB."""
    a, b = pair
    collector = Collector()
    await collector.start(receive_buffer=4096)
    async with exporting(a, collector, queue_limit=50):
        reader, writer = await collector.accept()  # and never read
        peer(a, b)
        await established(a)
        prefixes = [IPNetwork(f"10.3.{i // 256}.{i % 256}/32") for i in range(3000)]
        for index, prefix in enumerate(prefixes):  # one UPDATE each: their MEDs differ
            b.announce([prefix], PathAttributesConfig(med=index))
        await until(lambda: len(a.rib) == 3000, 20)
        await asyncio.wait_for(until_closed(reader), 10)  # dropped
        writer.close()
        reader, writer = await collector.accept()
        again = await read_until(reader, is_end_of_rib, timeout=30)
        assert prefixes_in(again) == set(prefixes)
        writer.close()


async def test_an_unreachable_collector_costs_nothing_and_stops_at_once(
    pair: tuple[Speaker, Speaker],
) -> None:
    a, b = pair
    refusing = socket.socket()
    refusing.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    collector = Collector()
    collector.port = refusing.getsockname()[1]
    with refusing:
        async with exporting(a, collector) as exporter:
            b.announce([IPNetwork("10.4.0.0/24")])
            peer(a, b)
            await until(lambda: len(a.rib) == 1, 10)
            assert exporter.collectors[0].link is None
        # exporting() has stopped it: its dialling task is over
        assert exporter.collectors[0].task is not None and exporter.collectors[0].task.done()
