"""The asyncio speaker over real TCP on loopback: two speakers, or a speaker and a hand-driven
Session playing a peer that misbehaves on purpose (goes silent, stops reading).

127.0.0.0/8 is all loopback on Linux, so each speaker gets an address of its own."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import struct
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import pytest_asyncio
from netaddr import IPAddress, IPNetwork

from loopback import speaker_config, started
from sart.bgp.config import NeighborConfig, PathAttributesConfig
from sart.bgp.fsm import Config, State
from sart.bgp.messages import (
    IPV4_UNICAST,
    AsPath,
    FourOctetAsCapability,
    GracefulRestartCapability,
    GracefulRestartFamily,
    MultiprotocolCapability,
    NextHop,
    Open,
    Origin,
    Update,
)
from sart.bgp.session import Session
from sart.bgp.speaker import Speaker
from waiting import until

A, B = IPAddress("127.0.0.11"), IPAddress("127.0.0.12")
pytestmark = pytest.mark.asyncio


async def eventually(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    return await until(check, timeout, 0.02)


def neighbor(
    address: IPAddress, asn: int, port: int, local: IPAddress, **kw: object
) -> NeighborConfig:
    return NeighborConfig(address=address, asn=asn, port=port, local_address=local, **kw)  # type: ignore[arg-type]


@pytest_asyncio.fixture
async def pair() -> AsyncIterator[tuple[Speaker, Speaker]]:
    async with started(speaker_config(A, 65001), speaker_config(B, 65002)) as (a, b):
        yield a, b


def _peer(a: Speaker, b: Speaker, **kw: object) -> None:
    a.add_neighbor(neighbor(B, b.config.asn, b.ports[0], A, **kw))
    b.add_neighbor(neighbor(A, a.config.asn, a.ports[0], B, **kw))


def _established(*speakers: Speaker) -> Callable[[], bool]:
    return lambda: all(n.state is State.ESTABLISHED for s in speakers for n in s.neighbors.values())


async def test_routes_both_ways_withdraw_and_cease(pair: tuple[Speaker, Speaker]) -> None:
    a, b = pair
    _peer(a, b, next_hops=(IPAddress("2001:db8::11"),))
    await eventually(_established(a, b))
    a.announce(
        [IPNetwork("10.1.0.0/24"), IPNetwork("2001:db8:1::/48")],
        PathAttributesConfig(communities=(65001 << 16 | 7,), med=5),
    )
    b.announce([IPNetwork("10.2.0.0/24")])
    await eventually(lambda: len(b.rib) == 3 and len(a.rib) == 3)
    (v4,) = b.rib.lookup(IPNetwork("10.1.0.0/24"))
    assert v4.next_hop == A and v4.med == 5 and list(v4.as_path.asns()) == [65001]
    (v6,) = b.rib.lookup(IPNetwork("2001:db8:1::/48"))
    assert v6.next_hop == IPAddress("2001:db8::11")
    a.withdraw([IPNetwork("10.1.0.0/24")])
    await eventually(lambda: not b.rib.lookup(IPNetwork("10.1.0.0/24")))
    messages_in, messages_out = b.neighbors[A].messages()
    assert messages_in >= 4 and messages_out >= 4  # OPEN, KEEPALIVE, UPDATEs, End-of-RIBs
    await a.neighbors[B].stop("maintenance")
    await eventually(lambda: b.neighbors[A].state is not State.ESTABLISHED)
    assert "CEASE / ADMINISTRATIVE_SHUTDOWN" in b.neighbors[A].stats.last_error
    assert [str(p) for p, _ in b.rib] == ["10.2.0.0/24"]  # only its own route is left


async def test_wrong_peer_as_gets_bad_peer_as(pair: tuple[Speaker, Speaker]) -> None:
    a, b = pair
    a.add_neighbor(neighbor(B, 65999, b.ports[0], A))  # B is 65002
    b.add_neighbor(neighbor(A, 65001, a.ports[0], B))
    await eventually(lambda: "BAD_PEER_AS" in b.neighbors[A].stats.last_error)
    assert a.neighbors[B].state is not State.ESTABLISHED


async def test_collision_leaves_one_connection(pair: tuple[Speaker, Speaker]) -> None:
    a, b = pair
    for _ in range(3):  # both dial at once, again and again
        _peer(a, b)
        await eventually(_established(a, b))
        await eventually(lambda: len(a.neighbors[B].connections) == 1)
        assert len(b.neighbors[A].connections) == 1
        await a.remove_neighbor(B)
        await b.remove_neighbor(A)


async def test_md5_passwords(pair: tuple[Speaker, Speaker]) -> None:
    a, b = pair
    _peer(a, b, password="s3cret")
    await eventually(_established(a, b))
    await a.remove_neighbor(B)
    await b.remove_neighbor(A)
    a.add_neighbor(neighbor(B, 65002, b.ports[0], A, password="one"))
    b.add_neighbor(neighbor(A, 65001, a.ports[0], B, password="other", passive=True))
    await asyncio.sleep(1.5)  # the SYNs carry the wrong signature: dropped by the kernel
    assert a.neighbors[B].state is not State.ESTABLISHED


def routes(prefixes: list[IPNetwork], next_hop: IPAddress, asns: tuple[int, ...]) -> Update:
    attributes = (Origin(0), AsPath.from_asns(*asns), NextHop(next_hop))
    return Update(attributes=attributes, nlri=tuple(prefixes))


class RawPeer:
    """A peer driven by hand: a Session over a plain stream, to misbehave at will."""

    def __init__(self, asn: int, router_id: str, *capabilities: object, hold_time: int = 3):
        local = Open(
            my_as=asn,
            hold_time=hold_time,
            bgp_id=IPAddress(router_id),
            capabilities=(MultiprotocolCapability(1, 1), FourOctetAsCapability(asn), *capabilities),
        )  # type: ignore[arg-type]
        self.session = Session(Config(local=local))
        self.reader: asyncio.StreamReader
        self.writer: asyncio.StreamWriter

    async def connect(
        self, port: int, source: IPAddress, target: IPAddress, receive_buffer: int | None = None
    ) -> None:
        sock = socket.socket()
        if receive_buffer:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.bind((str(source), 0))
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (str(target), port))
        self.reader, self.writer = await asyncio.open_connection(sock=sock)
        now = asyncio.get_running_loop().time()
        self.session.start(now)
        self.session.connection_made(now)
        self.flush()
        while self.session.state is not State.ESTABLISHED:
            data = await asyncio.wait_for(self.reader.read(65536), 5)
            self.session.receive_data(data, asyncio.get_running_loop().time())
            self.flush()

    def flush(self) -> None:
        self.writer.write(self.session.data_to_send())

    def send(self, update: Update) -> None:
        self.session.send(update, asyncio.get_running_loop().time())
        self.flush()


async def test_hold_timer_fires_when_the_peer_goes_silent(pair: tuple[Speaker, Speaker]) -> None:
    a, _ = pair
    a.add_neighbor(neighbor(B, 65002, 1, A, passive=True, hold_time=3))
    peer = RawPeer(65002, "10.255.0.12", hold_time=3)
    await peer.connect(a.ports[0], B, A)
    await eventually(_established(a))
    # from now on the peer says nothing: after 3 s we must send HOLD_TIMER_EXPIRED and close
    data = b""
    while chunk := await asyncio.wait_for(peer.reader.read(65536), 5.0):
        data += chunk
    assert bytes([0x03, 0x04, 0x00]) in data  # NOTIFICATION, Hold Timer Expired, subcode 0
    assert a.neighbors[B].stats.last_error == "sent NOTIFICATION HOLD_TIMER_EXPIRED"


async def test_graceful_restart_keeps_routes_until_end_of_rib(
    pair: tuple[Speaker, Speaker],
) -> None:
    a, _ = pair
    a.add_neighbor(neighbor(B, 65002, 1, A, passive=True))
    gr = GracefulRestartCapability(0, 30, (GracefulRestartFamily(1, 1, 0x80),))
    peer = RawPeer(65002, "10.255.0.12", gr, hold_time=30)
    await peer.connect(a.ports[0], B, A)
    kept, dropped = IPNetwork("10.7.0.0/24"), IPNetwork("10.8.0.0/24")
    update = routes([kept, dropped], next_hop=B, asns=(65002,))
    peer.send(update)
    await eventually(lambda: len(a.rib) == 2)
    peer.writer.transport.abort()  # crash: no NOTIFICATION
    await eventually(lambda: a.neighbors[B].state is not State.ESTABLISHED)
    assert len(a.rib) == 2  # stale, kept
    back = RawPeer(65002, "10.255.0.12", gr, hold_time=30)
    await back.connect(a.ports[0], B, A)
    back.send(routes([kept], next_hop=B, asns=(65002,)))
    await asyncio.sleep(0.2)
    assert len(a.rib) == 2  # still stale until End-of-RIB
    back.send(Update.end_of_rib(IPV4_UNICAST))
    await eventually(lambda: len(a.rib) == 1)
    assert a.rib.lookup(kept)


async def test_a_peer_that_stops_reading_stalls_only_itself(pair: tuple[Speaker, Speaker]) -> None:
    a, b = pair
    _peer(a, b)
    a.add_neighbor(neighbor(IPAddress("127.0.0.13"), 65003, 1, A, passive=True, hold_time=0))
    slow = RawPeer(65003, "10.255.0.13", hold_time=0)
    await slow.connect(a.ports[0], IPAddress("127.0.0.13"), A, receive_buffer=4096)
    slow.writer.transport.pause_reading()  # type: ignore[attr-defined]
    await eventually(_established(a, b))
    # A small send buffer stands for a slow link (loopback would buffer megabytes).
    slow_side = a.neighbors[IPAddress("127.0.0.13")].established
    assert slow_side is not None
    slow_side.writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
    slow_side.writer.transport.set_write_buffer_limits(high=8192)
    prefixes = [IPNetwork(f"10.{i >> 8}.{i & 255}.0/24") for i in range(20_000)]
    a.announce(prefixes)
    await eventually(lambda: len(b.rib) == len(prefixes), timeout=60)
    # the slow peer's socket is full: it still has prefixes owed, the fast one got them all
    assert a.neighbors[IPAddress("127.0.0.13")].pending


async def test_ttl_is_one_for_ebgp_and_255_for_ibgp_or_as_configured(
    pair: tuple[Speaker, Speaker],
) -> None:
    a, b = pair
    _peer(a, b)
    await eventually(_established(a, b))

    def ttl(speaker: Speaker, address: IPAddress) -> int:
        connection = speaker.neighbors[address].established
        assert connection is not None
        sock = connection.writer.get_extra_info("socket")
        return int(sock.getsockopt(socket.IPPROTO_IP, socket.IP_TTL))

    assert ttl(a, B) == ttl(b, A) == 1  # directly connected eBGP (GTSM-like default)
    await a.remove_neighbor(B)
    await b.remove_neighbor(A)
    _peer(a, b, ttl=64)
    await eventually(_established(a, b))
    assert ttl(a, B) == ttl(b, A) == 64


@pytest.mark.parametrize("restarted", [False, True], ids=["plain", "graceful-restart"])
async def test_open_and_keepalive_in_one_read_still_resolve_a_collision(
    pair: tuple[Speaker, Speaker], restarted: bool
) -> None:
    """A second connection whose OPEN and KEEPALIVE arrive in one read goes OpenSent ->
    OpenConfirm -> Established in one call: the collision rule must still run. Without
    graceful restart the new connection is refused (Cease / Connection Collision
    Resolution); with it the old session ends. Never two Established sessions."""
    a, _ = pair
    a.add_neighbor(neighbor(B, 65002, 1, A, passive=True))
    gr = GracefulRestartCapability(0, 30)
    first = RawPeer(65002, "10.255.0.12", gr, hold_time=30)
    await first.connect(a.ports[0], B, A)
    await eventually(_established(a))
    old = a.neighbors[B].established
    second = RawPeer(65002, "10.255.0.12", *((gr,) if restarted else ()), hold_time=30)
    sock = socket.socket()
    sock.bind((str(B), 0))
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (str(A), a.ports[0]))
    second.reader, second.writer = await asyncio.open_connection(sock=sock)
    now = asyncio.get_running_loop().time()
    second.session.start(now)
    second.session.connection_made(now)  # our OPEN is queued, not sent yet
    while second.session.state is not State.OPEN_CONFIRM:
        data = await asyncio.wait_for(second.reader.read(65536), 5)
        second.session.receive_data(data, asyncio.get_running_loop().time())
    second.flush()  # OPEN and KEEPALIVE in one segment
    survivor, loser = (second, first) if restarted else (first, second)
    data = b""
    while chunk := await asyncio.wait_for(loser.reader.read(65536), 5):
        data += chunk  # until the losing connection is closed
    if not restarted:
        assert bytes([0x03, 0x06, 0x07]) in data  # NOTIFICATION, Cease, Collision Resolution
    await eventually(lambda: len(a.neighbors[B].connections) == 1)
    (connection,) = a.neighbors[B].connections
    assert connection.session.state is State.ESTABLISHED
    assert a.neighbors[B].established is connection
    assert (connection is old) is not restarted
    while survivor.session.state is not State.ESTABLISHED:
        data = await asyncio.wait_for(survivor.reader.read(65536), 5)
        survivor.session.receive_data(data, asyncio.get_running_loop().time())
    # the surviving session is the one that carries routes
    survivor.send(routes([IPNetwork("10.10.0.0/24")], next_hop=B, asns=(65002,)))
    await eventually(lambda: a.rib.lookup(IPNetwork("10.10.0.0/24")))
    assert a.neighbors[B].stats.established_count == (2 if restarted else 1)


@contextlib.contextmanager
def cyclic_garbage() -> Iterator[list[object]]:
    """The speaker's objects (sessions, connections, transports, errors) that only the cyclic
    collector would free, made while the block runs."""
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    found: list[object] = []
    try:
        yield found
        gc.collect()
        kinds = (Session, asyncio.BaseTransport, asyncio.StreamReader, BaseException)
        found += [o for o in gc.garbage if isinstance(o, kinds)]
    finally:
        gc.garbage.clear()
        gc.set_debug(0)
        gc.enable()


@pytest.mark.parametrize("fault", ["reset", "eof", "cease", "refused"])
async def test_a_failed_connection_is_freed_without_the_cyclic_collector(
    pair: tuple[Speaker, Speaker], fault: str
) -> None:
    """sartd collects cyclic garbage rarely (cli/sartd.py): a connection that ends, however
    it ends, must be freed by reference counting, or a flapping session grows the process."""
    a, b = pair
    if fault == "refused":
        with socket.socket() as sock:
            sock.bind((str(B), 0))
            closed_port = sock.getsockname()[1]
        with cyclic_garbage() as garbage:
            stats = a.add_neighbor(neighbor(B, 65002, closed_port, A)).stats
            for _ in range(2):  # the first attempt's error is behind the second
                stats.last_error = ""
                await eventually(lambda: "Connect call failed" in stats.last_error)
            await a.remove_neighbor(B)
        assert not garbage
        return
    _peer(a, b)
    await eventually(_established(a, b))
    with cyclic_garbage() as garbage:
        for _ in range(3):
            old = a.neighbors[B].established
            theirs = b.neighbors[A].established
            assert theirs is not None
            if fault == "reset":  # RST, no NOTIFICATION
                linger = struct.pack("ii", 1, 0)
                theirs.writer.get_extra_info("socket").setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, linger
                )
                theirs.writer.transport.abort()
            elif fault == "eof":  # FIN, no NOTIFICATION
                theirs.writer.transport.close()
            else:
                await b.set_admin_down(A, True)
                await b.set_admin_down(A, False)
            await eventually(
                lambda old=old: (
                    a.neighbors[B].established not in (None, old) and _established(a, b)()
                )
            )
        await asyncio.sleep(0.1)  # the closed connections' last callbacks run
    assert not garbage
