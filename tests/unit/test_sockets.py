"""The socket options BGP and BFD set (sart.sockets), on real sockets of this machine."""

from __future__ import annotations

import socket

import pytest
from netaddr import IPAddress

from sart.sockets import dialling_socket, host_address, listening_socket, set_tcp_md5, set_ttl


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("fe80::1%eth0", "fe80::1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("2001:db8::1", "2001:db8::1"),
    ],
)
def test_host_address_drops_the_zone_and_unmaps_ipv4(host: str, address: str) -> None:
    assert host_address(host) == IPAddress(address)


def test_dialling_socket_is_bound_and_sends_with_the_ttl_asked_for() -> None:
    sock = dialling_socket(
        IPAddress("127.0.0.2"), ttl=7, password="secret", local_address=IPAddress("127.0.0.1")
    )
    with sock:
        assert sock.getsockopt(socket.IPPROTO_IP, socket.IP_TTL) == 7
        assert sock.getsockname()[0] == "127.0.0.1"
        assert not sock.getblocking()


def test_listening_socket_on_ipv6_takes_no_ipv4_and_accepts_md5_keys() -> None:
    with listening_socket(IPAddress("::1"), 0) as sock:
        assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
        set_tcp_md5(sock, IPAddress("::1"), "secret")
        set_tcp_md5(sock, IPAddress("::1"), None)  # removes the key again
        set_ttl(sock, 6, 255)
        assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS) == 255
