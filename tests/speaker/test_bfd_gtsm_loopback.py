"""The BFD adapter (`sart.bfd.udp`) over real UDP on loopback, for each IP version: a control
packet sent with a TTL / Hop Limit below 255 is dropped and counted (RFC 5881 5, GTSM), the
same packet sent with 255 reaches its session."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import pytest
from netaddr import IPAddress

from sart.bfd.packet import ControlPacket, SessionState, encode_packet
from sart.bfd.session import StateChanged
from sart.bfd.udp import BfdEndpoint
from waiting import until

pytestmark = pytest.mark.asyncio


def free_udp_port() -> int:
    """A UDP port free on both IPv4 and IPv6 loopback right now."""
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(("::", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def sender(address: IPAddress, hops: int) -> Iterator[socket.socket]:
    """A UDP socket that sends to `address` with `hops` as its TTL / Hop Limit."""
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        if family == socket.AF_INET:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, hops)
        else:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, hops)
        yield sock


@pytest.mark.parametrize("loopback", ["127.0.0.1", "::1"])
async def test_only_packets_sent_with_255_hops_reach_the_session(loopback: str) -> None:
    peer = IPAddress(loopback)
    changes: list[StateChanged] = []
    port = free_udp_port()
    endpoint = BfdEndpoint(lambda _, change: changes.append(change), port=port)
    endpoint.start()
    try:
        endpoint.add_peer(peer, min_tx_us=300_000, min_rx_us=300_000, multiplier=3)
        down = encode_packet(ControlPacket(my_discriminator=7, state=SessionState.DOWN))

        with sender(peer, 64) as far:
            far.sendto(down, (loopback, port))
        await until(lambda: endpoint.dropped_ttl == 1, 5)
        assert endpoint.state(peer) is SessionState.DOWN and changes == []

        with sender(peer, 255) as near:
            near.sendto(down, (loopback, port))
        await until(lambda: endpoint.state(peer) is SessionState.INIT, 5)
        assert endpoint.dropped_ttl == 1 and endpoint.dropped_invalid == 0
        assert [c.new for c in changes] == [SessionState.INIT]
    finally:
        endpoint.close()
