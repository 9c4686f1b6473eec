"""Socket options and addresses of the sockets BGP and BFD open (Linux).

TCP-MD5 signatures (RFC 2385), the TTL / Hop Limit sent (GTSM, RFC 5082; BFD single hop,
RFC 5881 5), the listening and dialling sockets of a BGP speaker with their binding, and the
peer's address as the socket reports it. The speaker and the BFD endpoint use these; nothing
here decides anything about a session.
"""

from __future__ import annotations

import socket
import struct

from netaddr import IPAddress

TCP_MD5SIG = 14  # linux/tcp.h
MD5SIG_MAXKEYLEN = 80  # linux/tcp.h
LISTEN_BACKLOG = 128


def family_of(address: IPAddress) -> socket.AddressFamily:
    return socket.AF_INET if address.version == 4 else socket.AF_INET6


def set_tcp_md5(sock: socket.socket, address: IPAddress, password: str | None) -> None:
    """Sign the segments to and from `address` with `password` (an empty one removes the key):
    struct tcp_md5sig, a sockaddr_storage then the key's length and the key."""
    key = (password or "").encode()
    if address.version == 4:
        sockaddr = struct.pack("=H2s4s", socket.AF_INET, b"\0\0", address.packed)
    else:
        sockaddr = struct.pack("=H2sI16sI", socket.AF_INET6, b"\0\0", 0, address.packed, 0)
    sockaddr = sockaddr.ljust(128, b"\0")
    value = sockaddr + struct.pack("=BBHI", 0, 0, len(key), 0) + key.ljust(MD5SIG_MAXKEYLEN, b"\0")
    sock.setsockopt(socket.IPPROTO_TCP, TCP_MD5SIG, value)


def set_ttl(sock: socket.socket, version: int, ttl: int) -> None:
    """The TTL (IPv4) or Hop Limit (IPv6) of the unicast packets `sock` sends."""
    if version == 4:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
    else:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, ttl)


def host_address(host: str) -> IPAddress:
    """An address as a socket reports it: without an IPv6 zone, an IPv4-mapped one as IPv4."""
    address = IPAddress(host.partition("%")[0])
    if address.version == 6 and address.is_ipv4_mapped():
        address = address.ipv4()
    return address


def listening_socket(address: IPAddress, port: int) -> socket.socket:
    """A non-blocking TCP socket listening on `address` (IPv6 only for an IPv6 one)."""
    sock = socket.socket(family_of(address), socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if address.version == 6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((str(address), port))
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def dialling_socket(
    address: IPAddress, *, ttl: int, password: str | None, local_address: IPAddress | None
) -> socket.socket:
    """A non-blocking TCP socket ready to connect to `address`: signed with `password` if
    any, sending with `ttl`, bound to `local_address` if given."""
    sock = socket.socket(family_of(address), socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        if password:
            set_tcp_md5(sock, address, password)
        set_ttl(sock, address.version, ttl)
        if local_address is not None:
            sock.bind((str(local_address), 0))
    except BaseException:
        sock.close()
        raise
    return sock
