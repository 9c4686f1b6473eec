"""The asyncio adapter for BFD single hop (RFC 5881): UDP datagrams to and from the sessions.

One listener per IP version on UDP 3784 takes every control packet, drops those not sent with
a TTL / Hop Limit of 255 (RFC 5881 5), decodes them and hands each to its session: by Your
Discriminator when it is set, by the source address otherwise (6.3 of RFC 5880). Each peer's
session sends from its own socket, bound to a source port in 49152-65535 (RFC 5881 4), TTL 255.
A call_at timer per session is re-armed at the deadline the session asks for; the clock is
the loop's (monotonic). Everything that decides is in `sart.bfd.session`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import sys
from collections.abc import Callable

from netaddr import IPAddress

from sart.bfd.packet import (
    BfdDecodeError,
    ControlPacket,
    SessionState,
    decode_packet,
    encode_packet,
)
from sart.bfd.session import Config, Session, StateChanged
from sart.sockets import family_of, host_address, set_ttl

log = logging.getLogger("sart.bfd")

BFD_PORT = 3784  # RFC 5881 4: single-hop control packets
SOURCE_PORTS = (49152, 65535)  # RFC 5881 4
TTL = 255  # RFC 5881 5 (GTSM, RFC 5082)
IP_RECVTTL = 12  # linux/in.h (not in Python's socket module)
IP_TTL_CMSG = 2  # IP_TTL

StateCallback = Callable[[IPAddress, StateChanged], None]


class _Peer:
    def __init__(self, address: IPAddress, session: Session, sock: socket.socket) -> None:
        self.address = address
        self.session = session
        self.sock = sock
        self.timer: asyncio.TimerHandle | None = None


class BfdEndpoint:
    """BFD sessions with directly connected peers: `start()`, `add_peer`, `remove_peer`,
    `close()`; every state change is passed to `on_change(peer, change)`."""

    def __init__(
        self,
        on_change: StateCallback,
        *,
        port: int = BFD_PORT,
        rng: random.Random | None = None,
    ) -> None:
        self._on_change = on_change
        self._port = port
        self._rng = rng or random.Random()
        self._listeners: list[socket.socket] = []
        self._peers: dict[IPAddress, _Peer] = {}
        self._by_discriminator: dict[int, _Peer] = {}
        self.dropped_ttl = 0
        self.dropped_invalid = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Listen (inside a running event loop)."""
        self._loop = asyncio.get_running_loop()
        for family in (socket.AF_INET, socket.AF_INET6):
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET:
                    sock.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
                    sock.bind(("0.0.0.0", self._port))
                else:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
                    sock.bind(("::", self._port))
                sock.setblocking(False)
            except OSError as error:
                sock.close()
                if family == socket.AF_INET6:
                    log.warning("BFD not listening on IPv6: %s", error)
                    continue
                raise
            self._loop.add_reader(sock.fileno(), self._readable, sock)
            self._listeners.append(sock)

    def close(self) -> None:
        for address in list(self._peers):
            self.remove_peer(address)
        for sock in self._listeners:
            if self._loop is not None:
                self._loop.remove_reader(sock.fileno())
            sock.close()
        self._listeners.clear()

    # --- peers --------------------------------------------------------------------------------

    def add_peer(
        self,
        address: IPAddress,
        *,
        min_tx_us: int,
        min_rx_us: int,
        multiplier: int,
        local_address: IPAddress | None = None,
    ) -> None:
        assert self._loop is not None, "start() first"
        if address in self._peers:
            self.remove_peer(address)
        discriminator = 0
        while discriminator == 0 or discriminator in self._by_discriminator:
            discriminator = self._rng.randrange(1, 2**32)
        config = Config(
            local_discriminator=discriminator,
            desired_min_tx=min_tx_us,
            required_min_rx=min_rx_us,
            detect_mult=multiplier,
        )
        session = Session(config, random=self._rng.random)
        peer = _Peer(address, session, self._sender(address, local_address))
        self._peers[address] = peer
        self._by_discriminator[discriminator] = peer
        session.start(self._loop.time())
        self._flush(peer)

    def remove_peer(self, address: IPAddress) -> None:
        peer = self._peers.pop(address, None)
        if peer is None:
            return
        self._by_discriminator.pop(peer.session.local_discriminator, None)
        if self._loop is not None:
            # Tell the peer we go (RFC 5880 6.8.16), so it does not see a failure.
            peer.session.admin_down(self._loop.time())
            self._flush(peer, arm=False)
        if peer.timer is not None:
            peer.timer.cancel()
        peer.sock.close()

    def state(self, address: IPAddress) -> SessionState | None:
        peer = self._peers.get(address)
        return None if peer is None else peer.session.state

    def session(self, address: IPAddress) -> Session | None:
        peer = self._peers.get(address)
        return None if peer is None else peer.session

    # --- I/O ----------------------------------------------------------------------------------

    def _sender(self, address: IPAddress, local_address: IPAddress | None) -> socket.socket:
        sock = socket.socket(family_of(address), socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            set_ttl(sock, address.version, TTL)
            host = "" if local_address is None else str(local_address)
            for _ in range(64):
                try:
                    sock.bind((host, self._rng.randint(*SOURCE_PORTS)))
                    break
                except OSError:
                    continue
            else:
                raise OSError(f"no free BFD source port for {address}")
        except BaseException:
            sock.close()
            raise
        return sock

    def _flush(self, peer: _Peer, *, arm: bool = True) -> None:
        for packet in peer.session.packets_to_send():
            self._send(peer, packet)
        if arm:
            self._arm(peer)

    def _send(self, peer: _Peer, packet: ControlPacket) -> None:
        with contextlib.suppress(OSError):  # a link down: the detection time will tell
            peer.sock.sendto(encode_packet(packet), (str(peer.address), BFD_PORT))

    def _arm(self, peer: _Peer) -> None:
        assert self._loop is not None
        if peer.timer is not None:
            peer.timer.cancel()
            peer.timer = None
        deadline = peer.session.next_deadline()
        if deadline is not None:
            peer.timer = self._loop.call_at(deadline, self._on_timer, peer)

    def _on_timer(self, peer: _Peer) -> None:
        assert self._loop is not None
        peer.timer = None
        if self._peers.get(peer.address) is not peer:
            return
        changes = peer.session.handle_timer(self._loop.time())
        self._flush(peer)
        self._report(peer, changes)

    def _report(self, peer: _Peer, changes: list[StateChanged]) -> None:
        for change in changes:
            log.info(
                "BFD session %s",
                change.new.name,
                extra={"peer": str(peer.address), "diagnostic": change.diagnostic.name},
            )
            self._on_change(peer.address, change)

    def _readable(self, sock: socket.socket) -> None:
        assert self._loop is not None
        while True:
            try:
                data, ancillary, _, source = sock.recvmsg(512, socket.CMSG_SPACE(4))
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            ttl = None
            for level, kind, value in ancillary:
                if (level, kind) in (
                    (socket.IPPROTO_IP, IP_TTL_CMSG),
                    (socket.IPPROTO_IPV6, socket.IPV6_HOPLIMIT),
                ):
                    ttl = int.from_bytes(value[:4], sys.byteorder) if len(value) >= 4 else value[0]
            if ttl != TTL:
                self.dropped_ttl += 1  # not from a directly connected system (RFC 5881 5)
                continue
            try:
                packet = decode_packet(data)
            except BfdDecodeError:
                self.dropped_invalid += 1
                continue
            address = host_address(source[0])
            if packet.your_discriminator:
                peer = self._by_discriminator.get(packet.your_discriminator)
            else:
                peer = self._peers.get(address)
            if peer is None or peer.address != address:
                self.dropped_invalid += 1
                continue
            changes = peer.session.receive(packet, self._loop.time())
            self._flush(peer)
            self._report(peer, changes)
