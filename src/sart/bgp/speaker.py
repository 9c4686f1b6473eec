"""The asyncio BGP speaker: sockets and timers around the sans-IO core.

Everything that decides lives elsewhere: `Session` (codec + RFC 4271 state machine) per TCP
connection, `Reconnect` (when a neighbor is dialled again), `StalePaths` (a graceful-restart
peer's routes kept while it comes back, RFC 4724 4.2), `Rib` for the decision process,
`AdjRibOut` for what each peer is sent; socket options are `sart.sockets`'. This module only
moves bytes, sleeps until the deadlines those return and feeds the timer events back, and
applies the connection collision rule (RFC 4271 6.8) between the two connections a peer may
have.

Flow control: each connection reads one chunk, runs it through the codec and the RIB, and only
then reads again, so a fast peer is slowed by TCP rather than buffered in memory. What a peer
must be sent is a set of prefixes marked dirty; its own writer turns them into UPDATEs from the
Loc-RIB as its socket drains, so a slow peer delays only itself and costs a set, not a queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

import attrs
from netaddr import IPAddress, IPNetwork

from sart.bfd.packet import SessionState as BfdState
from sart.bfd.session import StateChanged as BfdStateChanged
from sart.bfd.udp import BfdEndpoint
from sart.bgp import reconnect
from sart.bgp.codes import CeaseSubcode
from sart.bgp.config import (
    NeighborConfig,
    PathAttributesConfig,
    SpeakerConfig,
    password_digest,
)
from sart.bgp.export import AdjRibOut, OwnPathsSent, Peer
from sart.bgp.fsm import (
    Action,
    Collision,
    Config,
    Deliver,
    DropTcp,
    FsmState,
    ManualStart,
    ManualStop,
    PrefixLimitWarning,
    SessionDown,
    SessionUp,
    State,
    collision,
    held,
)
from sart.bgp.messages import (
    AsPath,
    Communities,
    EnhancedRouteRefreshCapability,
    ExtendedMessageCapability,
    Family,
    FourOctetAsCapability,
    LargeCommunities,
    LocalPref,
    MpReachNlri,
    MultiExitDisc,
    MultiprotocolCapability,
    Open,
    Origin,
    PathAttribute,
    PlainUpdate,
    RouteRefresh,
    RouteRefreshCapability,
    Update,
)
from sart.bgp.negotiation import Negotiated
from sart.bgp.prefixes import prefix_key
from sart.bgp.reconnect import AttemptEnded, Phase, Reconnect
from sart.bgp.reconnect import Event as ReconnectEvent
from sart.bgp.restart import InitialTable, may_send_end_of_rib, restart_capability
from sart.bgp.restart_receiver import Action as KeptAction
from sart.bgp.restart_receiver import MarkStale, StalePaths, SweepStale
from sart.bgp.rib import Change, Ignored, NextHopProblem, Path, Rib, Source
from sart.bgp.session import Session
from sart.errors import BgpUsageError
from sart.sockets import (
    dialling_socket,
    family_of,
    host_address,
    listening_socket,
    set_tcp_md5,
    set_ttl,
)

log = logging.getLogger("sart.bgp")

READ_SIZE = 65536
WRITE_BATCH = 2048  # prefixes turned into UPDATEs between two waits for the socket to drain


def _now() -> float:
    return time.monotonic()


def _close_writer(writer: asyncio.StreamWriter) -> None:
    """Close the transport, and free it: before 3.12, CPython's socket transport keeps a bound
    method of itself after close() (gh-100348), a reference cycle that leaves every closed
    connection to the cyclic collector (which sartd runs rarely, see cli/sartd.py)."""
    writer.close()
    transport = writer.transport
    if sys.version_info < (3, 12) and hasattr(transport, "_read_ready_cb"):
        transport._read_ready_cb = None


@attrs.define
class NeighborStats:
    messages_in: int = 0  # of the sessions that ended; add the live ones' (Neighbor.messages)
    messages_out: int = 0
    updates_in: int = 0
    updates_out: int = 0
    prefixes_received: int = 0  # NLRI announced to us, over the session's life
    established_at: float | None = None  # monotonic
    established_count: int = 0
    last_error: str = ""
    routes_ignored: int = 0  # their next hop failed the check (RFC 4271 6.3), ever
    prefix_limit_warnings: int = 0  # times the warning threshold was crossed
    prefix_limit_exceeded: int = 0  # sessions ended by the prefix limit


@attrs.frozen
class PeerStateChanged:
    address: IPAddress
    state: State
    reason: str = ""


@attrs.frozen
class BestPathChanged:
    change: Change


@attrs.frozen
class PathsSent:
    """Our own paths whose UPDATEs to the neighbor at `address` have been handed to the
    kernel (`advertised`), or whose withdrawal has (`withdrawn`): see Speaker._write_loop."""

    address: IPAddress
    advertised: tuple[IPNetwork, ...] = ()
    withdrawn: tuple[IPNetwork, ...] = ()


SpeakerEvent = PeerStateChanged | BestPathChanged | PathsSent


class SessionMonitor(Protocol):
    """Told of each session's start and end and of every UPDATE a peer sends, as the speaker
    handles them (sart.bgp.bmp_export, sart.cli.mrt_log): a call returns at once and never
    blocks."""

    def session_up(self, neighbor: Neighbor) -> None: ...

    def session_down(self, neighbor: Neighbor, session: Session, down: SessionDown) -> None: ...

    def updates_received(self, neighbor: Neighbor, updates: Sequence[Update]) -> None: ...


class _Connection:
    """One TCP connection to a neighbor and the Session over it."""

    def __init__(
        self,
        session: Session,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        outgoing: bool,
    ) -> None:
        self.session = session
        self.reader = reader
        self.writer = writer
        self.outgoing = outgoing
        self.local_address = host_address(writer.get_extra_info("sockname")[0])
        self.closed = False

    def flush(self) -> None:
        """Hand what the session has to send to the socket (a last NOTIFICATION included)."""
        data = self.session.data_to_send()
        if data and not self.writer.is_closing():
            self.writer.write(data)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.flush()
            _close_writer(self.writer)
            # After the transport has told the reader how the connection ended (call_soon).
            asyncio.get_running_loop().call_soon(self._forget_failure)

    def _forget_failure(self) -> None:
        """Drop the traceback of the error the connection failed with. The reader keeps the
        error, and its traceback the frames it went through (ours, a write's or a read's),
        which hold this connection and so the reader: a cycle only the cyclic collector
        would free."""
        failure = self.reader.exception()
        if failure is not None:
            failure.__traceback__ = None


class Neighbor:
    """A configured peer: its connections, its routes' source, what it was sent."""

    def __init__(self, config: NeighborConfig, speaker: Speaker) -> None:
        self.config = config
        self._speaker = speaker
        self.connections: list[_Connection] = []
        self.established: _Connection | None = None
        self.negotiated: Negotiated | None = None
        self.source: Source | None = None
        self.adj_out: AdjRibOut | None = None
        self.pending: dict[int, None] = {}  # prefixes to redo, by prefix_key, in order
        # Our own paths the peer has been sent on this session, as far as the bytes are out.
        self.own_sent: dict[int, IPNetwork] = {}
        self.wake = asyncio.Event()
        self.stats = NeighborStats()
        self.stale = StalePaths()  # a restarting peer's routes, kept (RFC 4724 4.2)
        self.connecting = False
        self.reconnect = Reconnect()  # when we dial it next (sart.bgp.reconnect)
        self.disconnected = asyncio.Event()  # set while it has no connection
        self.disconnected.set()
        # Restarting side: the Restart State bit goes in our OPENs until a session is up.
        self.restarting = False
        # The last session's Idle state while the prefix limit holds the neighbor down.
        self.held: FsmState | None = None
        self.own_addresses: frozenset[IPAddress] = frozenset()  # ours on the session
        self.next_hop_logged: set[NextHopProblem] = set()  # causes logged this session
        self._stale_timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        # What the API shows of its TCP-MD5 password: a salted digest, never the password.
        self.password_digest = password_digest(config.password) if config.password else ""

    @property
    def address(self) -> IPAddress:
        return self.config.address

    @property
    def internal(self) -> bool:
        return self.config.asn == self._speaker.config.asn

    @property
    def state(self) -> State:
        """The most advanced state of its connections; without one, Connect while we dial,
        Active while we wait for the peer, Idle when down by configuration."""
        if self.connections:
            order = list(State)
            return max((c.session.state for c in self.connections), key=order.index)
        if self.config.admin_down or self._stopping:
            return State.IDLE
        if self.held is not None and held(self.held, _now()):
            return State.IDLE
        return State.CONNECT if self.connecting else State.ACTIVE

    def messages(self) -> tuple[int, int]:
        """Messages received and sent, over every session with this neighbor."""
        live = [c.session for c in self.connections]
        return (
            self.stats.messages_in + sum(s.messages_in for s in live),
            self.stats.messages_out + sum(s.messages_out for s in live),
        )

    def spawn(self, coroutine: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def start(self) -> None:
        self._stopping = False
        dials = not self.config.passive and not self.config.admin_down
        if dials and self.redial(ManualStart()):
            self.spawn(self._speaker._connect_loop(self))

    def redial(self, event: ReconnectEvent) -> bool:
        """Feed the reconnect machine; True when a connection must be opened now."""
        retry_time = self._speaker.config.connect_retry_time
        self.reconnect, dial = reconnect.step(self.reconnect, event, retry_time, _now())
        return bool(dial)

    async def stop(
        self,
        reason: str,
        subcode: int = CeaseSubcode.ADMINISTRATIVE_SHUTDOWN,
        *,
        graceful: bool = False,
    ) -> None:
        """Close the sessions with a Cease; `graceful`: without a NOTIFICATION, the TCP
        connection just closes, so a graceful-restart peer keeps our routes (RFC 4724 4.2)."""
        self._stopping = True
        self.redial(ManualStop())
        for connection in list(self.connections):
            if graceful:
                self._speaker._act(self, connection, connection.session.connection_lost(_now()))
                connection.close()
            else:
                self._speaker._close(self, connection, reason, subcode)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._speaker._keep(self, self.stale.stopped())

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def stale_source(self) -> Source | None:
        """Whose routes are kept stale while the peer restarts, if any."""
        return self.stale.source

    def arm_stale_timer(self, deadline: float | None, callback: Any) -> None:
        if self._stale_timer is not None:
            self._stale_timer.cancel()
            self._stale_timer = None
        if deadline is not None:
            loop = asyncio.get_running_loop()
            self._stale_timer = loop.call_later(max(deadline - _now(), 0.0), callback)


class Speaker:
    """A BGP speaker: `await start()`, then announce/withdraw local paths, add/remove
    neighbors, read the RIB; `await stop()` closes every session with a Cease."""

    def __init__(self, config: SpeakerConfig) -> None:
        self.config = config
        self.rib = Rib(
            local_asn=config.asn, multipath=config.multi_path, relax_as=config.multi_path_relax
        )
        self.local_source = Source(None, config.asn, config.router_id)
        self.neighbors: dict[IPAddress, Neighbor] = {}
        self._servers: list[asyncio.Server] = []
        self._subscribers: list[asyncio.Queue[SpeakerEvent]] = []
        self.monitors: list[SessionMonitor] = []
        self.ports: list[int] = []  # the ports listened on (useful with port 0)
        self.transitions: dict[tuple[IPAddress, State], int] = {}  # for metrics
        self.started_at = _now()
        self.bfd: BfdEndpoint | None = None  # opened with the first neighbor that has BFD
        # Complete once start() has loaded the configured paths, or, deferred, once signalled.
        self.initial_table = InitialTable(None)
        self._deferral_timer: asyncio.TimerHandle | None = None
        # Our paths' attribute tuples by value (few: one per attribute configuration).
        self._local_attributes: dict[tuple[PathAttribute, ...], tuple[PathAttribute, ...]] = {}

    # --- life cycle ---------------------------------------------------------------------------

    @property
    def listening(self) -> bool:
        """Whether the speaker accepts connections (started and not stopped): for /readyz."""
        return bool(self._servers) and all(server.is_serving() for server in self._servers)

    async def start(self) -> None:
        if self.config.defer_end_of_rib:
            now = _now()
            self.initial_table = InitialTable.waiting(now, self.config.selection_deferral_time)
            deadline = self.initial_table.next_deadline()
            if deadline is not None:
                loop = asyncio.get_running_loop()
                self._deferral_timer = loop.call_later(deadline - now, self._deferral_expired)
        for address in self.config.listen_addresses:
            await self._listen(address)
        for neighbor_config in self.config.neighbors:
            self.add_neighbor(neighbor_config)
        for path in self.config.paths:
            self.announce(path.prefixes, path.attributes)
        if not self.config.defer_end_of_rib:
            self._table_completed(InitialTable())  # the configured paths are the table
        log.info(
            "speaker started",
            extra={
                "asn": self.config.asn,
                "router_id": str(self.config.router_id),
                "ports": self.ports,
            },
        )

    async def stop(self, reason: str = "speaker shutting down") -> None:
        """Close every session: with a Cease, or, on the restarting side (RFC 4724), by
        closing the connections only, so that the peers keep our routes until we are back."""
        for server in self._servers:
            server.close()
        if self._deferral_timer is not None:
            self._deferral_timer.cancel()
            self._deferral_timer = None
        graceful = self.config.restarting_side
        await asyncio.gather(*(n.stop(reason, graceful=graceful) for n in self.neighbors.values()))
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        if self.bfd is not None:
            self.bfd.close()
            self.bfd = None
        log.info("speaker stopped", extra={"reason": reason, "graceful": graceful})

    # --- graceful restart, restarting side ------------------------------------------------------

    def end_of_initial_table(self) -> bool:
        """Our table is complete (the agent re-added every path): End-of-RIB may go out.
        False when it was complete already."""
        return self._table_completed(self.initial_table.signal())

    def _deferral_expired(self) -> None:
        self._deferral_timer = None
        self._table_completed(self.initial_table.handle_timer(_now()))

    def _table_completed(self, table: InitialTable) -> bool:
        if table == self.initial_table or not table.complete:
            return False
        self.initial_table = table
        if self._deferral_timer is not None:
            self._deferral_timer.cancel()
            self._deferral_timer = None
        assert table.completed is not None
        log.info(
            "initial table complete, End-of-RIB released",
            extra={"why": table.completed.value, "paths": self.rib.count(self.local_source)},
        )
        for neighbor in self.neighbors.values():
            neighbor.wake.set()
        return True

    async def _listen(self, address: IPAddress) -> None:
        port = self.ports[0] if self.ports and self.config.port == 0 else self.config.port
        try:
            sock = listening_socket(address, port)
        except OSError as error:
            if address.version == 6 and self._servers:
                log.warning("not listening on %s: %s", address, error)
                return
            raise
        for neighbor in self.config.neighbors:
            if neighbor.password and neighbor.address.version == address.version:
                set_tcp_md5(sock, neighbor.address, neighbor.password)
        server = await asyncio.start_server(self._accept, sock=sock)
        self._servers.append(server)
        if not self.ports:
            self.ports.append(sock.getsockname()[1])

    # --- neighbors ----------------------------------------------------------------------------

    def add_neighbor(self, config: NeighborConfig) -> Neighbor:
        if config.address in self.neighbors:
            raise BgpUsageError(f"neighbor {config.address} already exists")
        neighbor = Neighbor(config, self)
        # Added while we come back (before our table is complete): our first OPENs to it say
        # we restarted. One added later is a new neighbor, with no routes of ours to keep.
        neighbor.restarting = self.config.restarting_side and not self.initial_table.complete
        self.neighbors[config.address] = neighbor
        if config.password:
            for server in self._servers:
                for sock in server.sockets:
                    if sock.family == family_of(config.address):
                        set_tcp_md5(sock, config.address, config.password)
        neighbor.start()
        if config.bfd is not None:
            if self.bfd is None:
                self.bfd = BfdEndpoint(self._bfd_changed)
                self.bfd.start()
            self.bfd.add_peer(
                config.address,
                min_tx_us=config.bfd.min_tx * 1000,
                min_rx_us=config.bfd.min_rx * 1000,
                multiplier=config.bfd.multiplier,
                local_address=config.local_address,
            )
        self._publish(PeerStateChanged(config.address, neighbor.state, "configured"))
        return neighbor

    def _bfd_changed(self, address: IPAddress, change: BfdStateChanged) -> None:
        """BFD left Up: every session with the neighbor goes down at once (RFC 5882 4.3)."""
        neighbor = self.neighbors.get(address)
        if neighbor is None or change.old is not BfdState.UP:
            return
        diagnostic = change.diagnostic.name.lower().replace("_", " ")
        for connection in list(neighbor.connections):
            self._act(neighbor, connection, connection.session.bfd_down(_now(), diagnostic))
            connection.close()

    async def remove_neighbor(self, address: IPAddress) -> None:
        neighbor = self._neighbor(address)
        await neighbor.stop("peer deconfigured", CeaseSubcode.PEER_DECONFIGURED)
        del self.neighbors[address]
        if self.bfd is not None:
            self.bfd.remove_peer(address)

    async def set_admin_down(self, address: IPAddress, down: bool) -> None:
        neighbor = self._neighbor(address)
        neighbor.config = attrs.evolve(neighbor.config, admin_down=down)
        if down:
            await neighbor.stop("administratively down")
        else:
            if neighbor.held is not None:
                # Down after too many prefixes: the operator's start ends the wait (and the
                # connect loop waiting it out).
                await neighbor.stop("started again by the operator")
                neighbor.held = None
            neighbor.start()

    def _neighbor(self, address: IPAddress) -> Neighbor:
        neighbor = self.neighbors.get(address)
        if neighbor is None:
            raise BgpUsageError(f"no neighbor {address}")
        return neighbor

    def _fsm_config(self, neighbor: NeighborConfig, *, restarting: bool = False) -> Config:
        hold = neighbor.hold_time if neighbor.hold_time is not None else self.config.hold_time
        families = neighbor.families
        # Receiving side only (no families) unless we are a restarting side too; the Restart
        # State bit on the first sessions after we started (RFC 4724 3, 4.1).
        restart_families = families if self.config.restarting_side else ()
        graceful_restart = restart_capability(
            self.config.graceful_restart_time, restart_families, restarting=restarting
        )
        capabilities: list[Any] = [MultiprotocolCapability(f.afi, f.safi) for f in families]
        capabilities += [
            RouteRefreshCapability(),
            EnhancedRouteRefreshCapability(),
            FourOctetAsCapability(self.config.asn),
            ExtendedMessageCapability(),
            graceful_restart,
        ]
        local = Open(
            my_as=self.config.asn,
            hold_time=hold,
            bgp_id=self.config.router_id,
            capabilities=tuple(capabilities),
        )
        return Config(
            local=local,
            peer_asn=neighbor.asn,
            connect_retry_time=self.config.connect_retry_time,
            prefix_limit=neighbor.prefix_limit,
            keepalive_time=neighbor.keepalive_time,
        )

    def _new_session(self, neighbor: Neighbor, *, passive: bool) -> Session:
        """A Session for a new connection; still Idle when the prefix limit holds the
        neighbor down (its IdleHoldTimer is the session's deadline)."""
        now = _now()
        config = self._fsm_config(neighbor.config, restarting=neighbor.restarting)
        session = Session(config, neighbor.held, plain_updates=True)
        if neighbor.held is None:
            session.start(now, passive=passive)
            return session
        session.handle_timer(now)  # the IdleHoldTimer may have run out
        session.start(now, passive=passive, automatic=True)
        if session.state is not State.IDLE:
            neighbor.held = None
        return session

    # --- local paths --------------------------------------------------------------------------

    def announce(
        self, prefixes: Iterable[IPNetwork], attributes: PathAttributesConfig | None = None
    ) -> list[Change]:
        """Originate paths to these prefixes (replacing our earlier ones)."""
        config = attributes or PathAttributesConfig()
        shared: list[PathAttribute] = [Origin(config.origin), AsPath()]
        if config.med is not None:
            shared.append(MultiExitDisc(config.med))
        if config.local_pref is not None:
            shared.append(LocalPref(config.local_pref))
        if config.communities:
            shared.append(Communities(tuple(sorted(set(config.communities)))))
        if config.large_communities:
            large = sorted(set(config.large_communities), key=attrs.astuple)
            shared.append(LargeCommunities(tuple(large)))
        # One tuple for equal attributes, whichever call gave them: the Adj-RIBs-Out pack
        # routes into UPDATEs by the identity of their attributes.
        common = self._local_attributes.setdefault(tuple(shared), tuple(shared))
        now = _now()
        paths = [
            Path.to(IPNetwork(p).cidr, self.local_source, config.next_hop, common, 0, now)
            for p in prefixes
        ]
        changes = self.rib.announce(paths)
        self._propagate(changes)
        return changes

    def withdraw(self, prefixes: Iterable[IPNetwork]) -> list[Change]:
        changes = self.rib.withdraw(self.local_source, [(IPNetwork(p).cidr, 0) for p in prefixes])
        self._propagate(changes)
        return changes

    def local_paths(self) -> Iterator[Path]:
        return self.rib.paths_from(self.local_source)

    # --- global settings ----------------------------------------------------------------------

    def set_identity(self, *, asn: int | None = None, router_id: IPAddress | None = None) -> None:
        """Change our AS or BGP identifier: only while no neighbor is configured (every
        session would have to restart). Our own paths move to the new identity."""
        if self.neighbors:
            raise BgpUsageError("the AS and router id can only change while no neighbor exists")
        self.config = attrs.evolve(
            self.config,
            asn=self.config.asn if asn is None else asn,
            router_id=self.config.router_id if router_id is None else router_id,
        )
        old = self.local_source
        self.local_source = Source(None, self.config.asn, self.config.router_id)
        self.rib.local_asn = self.config.asn
        moved = [path._replace(source=self.local_source) for path in self.rib.paths_from(old)]
        self.rib.drop_source(old)
        self.rib.announce(moved)

    def set_multipath(self, enable: bool, relax_as: bool = False) -> None:
        self.config = attrs.evolve(self.config, multi_path=enable, multi_path_relax=relax_as)
        self.rib.multipath, self.rib.relax_as = enable, relax_as
        self._propagate(self.rib.reselect_all())

    # --- events -------------------------------------------------------------------------------

    def subscribe(self, maxsize: int = 10000) -> asyncio.Queue[SpeakerEvent]:
        """A queue of PeerStateChanged / BestPathChanged; a subscriber that falls `maxsize`
        behind loses the oldest events, never blocks the speaker."""
        queue: asyncio.Queue[SpeakerEvent] = asyncio.Queue(maxsize)
        self._subscribers.append(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[SpeakerEvent]) -> None:
        with contextlib.suppress(ValueError):
            self._subscribers.remove(queue)

    def _publish(self, event: SpeakerEvent) -> None:
        if isinstance(event, PeerStateChanged):
            key = (event.address, event.state)
            self.transitions[key] = self.transitions.get(key, 0) + 1
        for queue in self._subscribers:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(event)

    def _propagate(self, changes: list[Change]) -> None:
        """Loc-RIB changes: every established peer's writer learns which prefixes to redo."""
        if not changes:
            return
        for neighbor in self.neighbors.values():
            adj_out = neighbor.adj_out
            if adj_out is None:
                continue
            pending, sent, source = neighbor.pending, adj_out.sent, neighbor.source
            for change in changes:
                key = change.key
                # A peer's own routes never go back to it: skip them unless it holds
                # something of ours for that prefix that must now be withdrawn.
                if change.after and change.after[0].source is source and key not in sent:
                    continue
                pending[key] = None
            if pending:
                neighbor.wake.set()
        if self._subscribers:
            for change in changes:
                self._publish(BestPathChanged(change))

    # --- connections --------------------------------------------------------------------------

    async def _connect_loop(self, neighbor: Neighbor) -> None:
        """Dial the neighbor when its reconnect machine says so (sart.bgp.reconnect): at once
        when started, then after each attempt at the deadline it returns."""
        while not neighbor.stopping:
            deadline = neighbor.reconnect.next_deadline()
            if deadline is not None:
                await asyncio.sleep(max(deadline - _now(), 0.0))
                for event in neighbor.reconnect.expired(_now()):
                    neighbor.redial(event)
                continue
            if neighbor.reconnect.phase is not Phase.DIALLING:
                return
            was_up = neighbor.stats.established_count
            if not await self._attempt(neighbor):
                return  # held down until an operator starts it again
            established = neighbor.stats.established_count > was_up
            neighbor.redial(AttemptEnded(established, random.random()))

    async def _attempt(self, neighbor: Neighbor) -> bool:
        """One attempt: wait out a connection the peer opened, or open ours and run its
        session to the end. False when the prefix limit holds the neighbor down for good."""
        if neighbor.connections:
            await neighbor.disconnected.wait()
            return True
        session = self._new_session(neighbor, passive=False)
        while session.state is State.IDLE:
            deadline = session.next_deadline()  # the prefix limit's IdleHoldTimer
            if deadline is None:
                return False
            await asyncio.sleep(max(deadline - _now(), 0.0))
            session = self._new_session(neighbor, passive=False)
        # The ConnectRetryTimer: a connection not made by then ends the attempt.
        connect_retry_at = session.next_deadline()
        assert connect_retry_at is not None
        neighbor.connecting = True
        try:
            reader, writer = await asyncio.wait_for(
                self._open(neighbor.config), timeout=max(connect_retry_at - _now(), 0.0)
            )
        except (OSError, TimeoutError) as error:
            error.__traceback__ = None  # its frames hold the connect's future, which holds it
            session.connection_lost(_now())
            neighbor.stats.last_error = f"connect: {error or 'timed out'}"
            return True
        finally:
            neighbor.connecting = False
        await self._run(neighbor, _Connection(session, reader, writer, outgoing=True))
        return True

    async def _open(
        self, config: NeighborConfig
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        sock = dialling_socket(
            config.address,
            ttl=self._ttl(config),
            password=config.password,
            local_address=config.local_address,
        )
        try:
            await asyncio.get_running_loop().sock_connect(sock, (str(config.address), config.port))
        except BaseException:
            sock.close()
            raise
        return await asyncio.open_connection(sock=sock, limit=READ_SIZE * 4)

    def _ttl(self, config: NeighborConfig) -> int:
        if config.ttl is not None:
            return config.ttl
        return 255 if config.asn == self.config.asn else 1

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        address = host_address(writer.get_extra_info("peername")[0])
        neighbor = self.neighbors.get(address)
        session = None
        if neighbor is not None and not neighbor.config.admin_down and not neighbor.stopping:
            session = self._new_session(neighbor, passive=True)
        if neighbor is None or session is None or session.state is State.IDLE:
            why = "not a configured neighbor" if neighbor is None else "administratively down"
            if session is not None:
                why = "held down after too many prefixes"
            log.warning("connection from %s refused: %s", address, why)
            _close_writer(writer)
            return
        sock = writer.get_extra_info("socket")
        if sock is not None:
            set_ttl(sock, neighbor.address.version, self._ttl(neighbor.config))
        await self._run(neighbor, _Connection(session, reader, writer, outgoing=False))

    async def _run(self, neighbor: Neighbor, connection: _Connection) -> None:
        """Drive one connection until its session is back in Idle."""
        neighbor.connections.append(connection)
        neighbor.disconnected.clear()
        session = connection.session
        try:
            self._act(neighbor, connection, session.connection_made(_now()))
            connection.flush()
            while session.state is not State.IDLE and not connection.closed:
                deadline = session.next_deadline()
                timeout = None if deadline is None else max(deadline - _now(), 0.0)
                try:
                    data = await asyncio.wait_for(connection.reader.read(READ_SIZE), timeout)
                except TimeoutError:
                    actions = session.handle_timer(_now())
                except OSError as error:
                    neighbor.stats.last_error = str(error)
                    actions = session.connection_lost(_now())
                else:
                    now = _now()
                    actions = (
                        session.receive_data(data, now) if data else session.connection_lost(now)
                    )
                    actions += session.handle_timer(now)
                self._act(neighbor, connection, actions)
                if session.state is State.OPEN_CONFIRM:
                    assert session.fsm.negotiated is not None
                    self._resolve_collision(neighbor, connection, session.fsm.negotiated)
                connection.flush()
        finally:
            if session.state is not State.IDLE:
                # Cancelled (the speaker stops) or the socket failed: the session ends here.
                self._act(neighbor, connection, session.connection_lost(_now()))
            connection.close()
            neighbor.connections.remove(connection)
            if not neighbor.connections:
                neighbor.disconnected.set()
            received, sent = session.notification_received, session.notification_sent
            if received is not None:
                neighbor.stats.last_error = f"peer sent NOTIFICATION {received.description}"
            elif sent is not None:
                neighbor.stats.last_error = f"sent NOTIFICATION {sent.description}"
            neighbor.stats.messages_in += session.messages_in
            neighbor.stats.messages_out += session.messages_out
            if session.prefix_limit_exceeded:
                neighbor.stats.prefix_limit_exceeded += 1
                neighbor.held = session.fsm  # Idle, damped: the next session waits it out
            self._publish(PeerStateChanged(neighbor.address, neighbor.state))

    def _close(
        self, neighbor: Neighbor, connection: _Connection, reason: str, subcode: int
    ) -> None:
        self._act(neighbor, connection, connection.session.stop(_now(), reason, subcode))
        connection.close()

    def _resolve_collision(
        self, neighbor: Neighbor, connection: _Connection, negotiated: Negotiated
    ) -> None:
        """RFC 4271 6.8, once this connection knows the peer's BGP identifier."""
        for other in neighbor.connections:
            if other is connection or other.closed:
                continue
            verdict = collision(
                other.session.state,
                other_outgoing=other.outgoing,
                local_id=self.config.router_id,
                peer_id=negotiated.peer_id,
                peer_graceful_restart=negotiated.peer_graceful_restart is not None,
            )
            if verdict is Collision.NONE:
                continue
            if verdict is Collision.OTHER_LOST:
                self._act(neighbor, other, other.session.connection_lost(_now()))
                other.close()
                continue
            loser = other if verdict is Collision.CLOSE_OTHER else connection
            self._close(
                neighbor,
                loser,
                "connection collision",
                CeaseSubcode.CONNECTION_COLLISION_RESOLUTION,
            )
            if loser is connection:
                return

    def _act(self, neighbor: Neighbor, connection: _Connection, actions: list[Action]) -> None:
        routes: list[Update | PlainUpdate] = []  # UPDATEs in a row with routes: one RIB call
        for action in actions:
            if type(action) is Deliver:
                message = action.message
                kind = type(message)
                if kind is PlainUpdate or (
                    kind is Update and (message.nlri or not message.end_of_rib_family)  # type: ignore[union-attr]
                ):
                    routes.append(message)  # type: ignore[arg-type]
                    continue
            if routes:
                self._deliver_routes(neighbor, connection, routes)
                routes = []
            if isinstance(action, Deliver):
                assert not isinstance(action.message, PlainUpdate)  # a route: taken above
                self._deliver(neighbor, connection, action.message)
            elif isinstance(action, SessionUp):
                # An OPEN and a KEEPALIVE read together take a session through OpenConfirm
                # within one call: the collision rule runs here too, before it takes over.
                self._resolve_collision(neighbor, connection, action.negotiated)
                if not connection.closed:
                    self._session_up(neighbor, connection, action.negotiated)
            elif isinstance(action, SessionDown):
                self._session_down(neighbor, connection, action)
            elif isinstance(action, DropTcp):
                connection.close()
            elif isinstance(action, PrefixLimitWarning):
                neighbor.stats.prefix_limit_warnings += 1
                log.warning(
                    "prefix limit warning",
                    extra={
                        "neighbor": str(neighbor.address),
                        "prefixes": action.count,
                        "limit": action.limit,
                    },
                )
        if routes:
            self._deliver_routes(neighbor, connection, routes)

    def _session_up(
        self, neighbor: Neighbor, connection: _Connection, negotiated: Negotiated
    ) -> None:
        if (
            neighbor.config.router_id is not None
            and negotiated.peer_id != neighbor.config.router_id
        ):
            log.warning(
                "neighbor %s identifies as %s, configured router_id %s",
                neighbor.address,
                negotiated.peer_id,
                neighbor.config.router_id,
            )
        source = Source(
            neighbor.address, negotiated.peer_asn, negotiated.peer_id, neighbor.internal
        )
        restart_time = self.config.graceful_restart_time
        self._keep(
            neighbor, neighbor.stale.session_up(source, negotiated.families, restart_time, _now())
        )
        neighbor.established = connection
        neighbor.negotiated = negotiated
        neighbor.source = source
        neighbor.restarting = False  # the peer knows we are back
        versions = frozenset(4 if f.afi == 1 else 6 for f in negotiated.families if f.safi == 1)
        next_hops = {connection.local_address.version: connection.local_address}
        next_hops.update((address.version, address) for address in neighbor.config.next_hops)
        peer = Peer(
            asn=negotiated.peer_asn,
            internal=neighbor.internal,
            local_asn=self.config.asn,
            local_address=connection.local_address,
            address=neighbor.address,
        )
        neighbor.adj_out = AdjRibOut(peer, negotiated.send, versions, next_hops)
        neighbor.pending = dict.fromkeys(self.rib.keys())
        neighbor.stats.established_at = _now()
        neighbor.stats.established_count += 1
        neighbor.stats.prefixes_received = 0
        neighbor.own_addresses = frozenset((connection.local_address,))
        neighbor.next_hop_logged = set()
        neighbor.spawn(self._write_loop(neighbor, connection, negotiated.families))
        log.info(
            "session up",
            extra={
                "neighbor": str(neighbor.address),
                "asn": negotiated.peer_asn,
                "router_id": str(negotiated.peer_id),
                "hold_time": negotiated.hold_time,
                "families": sorted(str(f) for f in negotiated.families),
            },
        )
        for monitor in self.monitors:
            monitor.session_up(neighbor)
        self._publish(PeerStateChanged(neighbor.address, State.ESTABLISHED))

    def _session_down(self, neighbor: Neighbor, connection: _Connection, down: SessionDown) -> None:
        if neighbor.established is not connection:
            return
        for monitor in self.monitors:
            monitor.session_down(neighbor, connection.session, down)
        neighbor.established = None
        neighbor.adj_out = None
        neighbor.pending = {}
        neighbor.own_sent = {}  # the peer drops what it had with the session
        neighbor.wake.set()  # the writer sees the session gone and ends
        neighbor.stats.last_error = down.reason
        neighbor.stats.established_at = None
        source = neighbor.source
        negotiated = neighbor.negotiated
        neighbor.source = None
        assert source is not None and negotiated is not None
        now = _now()
        kept = neighbor.stale.session_down(
            source,
            connection_lost=down.connection_lost,
            capability=negotiated.peer_graceful_restart,
            honour=neighbor.config.graceful_restart and not neighbor.stopping,
            restart_time=self.config.graceful_restart_time,
            now=now,
        )
        self._keep(neighbor, kept)
        if neighbor.stale.deadline is not None:
            log.info(
                "session down, routes kept for graceful restart",
                extra={
                    "neighbor": str(neighbor.address),
                    "reason": down.reason,
                    "for": neighbor.stale.deadline - now,
                },
            )
        else:
            log.info(
                "session down", extra={"neighbor": str(neighbor.address), "reason": down.reason}
            )
        self._publish(PeerStateChanged(neighbor.address, connection.session.state, down.reason))

    def _keep(self, neighbor: Neighbor, kept: tuple[StalePaths, tuple[KeptAction, ...]]) -> None:
        """Carry out what the graceful-restart receiver decided (sart.bgp.restart_receiver)
        on the RIB, and arm its timer at the deadline it returns."""
        neighbor.stale, actions = kept
        for action in actions:
            if isinstance(action, MarkStale):
                self.rib.mark_stale(action.source)
            elif isinstance(action, SweepStale):
                self._propagate(self.rib.sweep_stale(action.source))
            else:
                self._propagate(self.rib.drop_source(action.source))
        neighbor.arm_stale_timer(
            neighbor.stale.deadline, lambda: self._keep(neighbor, neighbor.stale.expired(_now()))
        )

    def _deliver(
        self, neighbor: Neighbor, connection: _Connection, message: Update | RouteRefresh
    ) -> None:
        if neighbor.established is not connection or neighbor.source is None:
            return
        if type(message) is RouteRefresh:
            # Send everything again (RFC 2918 3).
            assert neighbor.adj_out is not None
            neighbor.adj_out.sent.clear()
            neighbor.pending = dict.fromkeys(self.rib.keys())
            neighbor.wake.set()
            return
        assert isinstance(message, Update)
        family = message.end_of_rib_family
        assert family is not None  # the rest go to _deliver_routes
        for monitor in self.monitors:
            monitor.updates_received(neighbor, (message,))
        stats = neighbor.stats
        stats.updates_in += 1
        log.info(
            "end of RIB received",
            extra={
                "neighbor": str(neighbor.address),
                "family": str(family),
                "prefixes": stats.prefixes_received,
            },
        )
        self._keep(neighbor, neighbor.stale.end_of_rib(family))

    def _deliver_routes(
        self, neighbor: Neighbor, connection: _Connection, updates: list[Update | PlainUpdate]
    ) -> None:
        """UPDATEs that announce or withdraw routes, in the order received."""
        source = neighbor.source
        if neighbor.established is not connection or source is None:
            return
        if self.monitors:
            full = [u.update() if type(u) is PlainUpdate else u for u in updates]
            for monitor in self.monitors:
                monitor.updates_received(neighbor, full)  # type: ignore[arg-type]
        stats = neighbor.stats
        stats.updates_in += len(updates)
        received = 0
        for update in updates:
            received += len(update.nlri)
            if type(update) is PlainUpdate:
                continue  # IPv4 alone
            for attribute in update.attributes:
                if type(attribute) is MpReachNlri:
                    received += len(attribute.nlri)
        stats.prefixes_received += received
        ignored: list[Ignored] = []
        now = _now()
        changes = self.rib.apply_updates(
            source, updates, now, local_addresses=neighbor.own_addresses, ignored=ignored
        )
        self._propagate(changes)
        for routes in ignored:
            stats.routes_ignored += len(routes.prefixes)
            if routes.problem not in neighbor.next_hop_logged:
                neighbor.next_hop_logged.add(routes.problem)
                log.warning(
                    "routes ignored: their next hop is %s (RFC 4271 6.3)",
                    routes.problem.value,
                    extra={
                        "neighbor": str(neighbor.address),
                        "next_hop": str(routes.next_hop),
                        "example": str(routes.prefixes[0]),
                        "prefixes": len(routes.prefixes),
                    },
                )
        session = connection.session
        if session.config.prefix_limit is not None:
            count = self.rib.count(source)
            last = updates[-1]
            if isinstance(last, PlainUpdate):
                last = last.update()
            self._act(neighbor, connection, session.prefixes_received(count, last, now))

    async def _write_loop(
        self, neighbor: Neighbor, connection: _Connection, families: frozenset[Family]
    ) -> None:
        """Turn the neighbor's dirty prefixes into UPDATEs as its socket drains; End-of-RIB
        for every family once the initial table is out (RFC 4724 2)."""
        session = connection.session
        end_of_rib_sent = False
        # drain() returns once every byte is in the kernel: what _sent reports has left us.
        connection.writer.transport.set_write_buffer_limits(high=0)
        while neighbor.established is connection and not connection.closed:
            adj_out = neighbor.adj_out
            assert adj_out is not None
            while neighbor.pending and neighbor.established is connection:
                keys = []
                for key in neighbor.pending:
                    keys.append(key)
                    if len(keys) >= WRITE_BATCH:
                        break
                pending, best = neighbor.pending, self.rib.best
                for key in keys:
                    del pending[key]
                updates, own = adj_out.sync_own([(key, best(key)) for key in keys])
                if session.state is not State.ESTABLISHED:
                    return
                now = _now()  # one instant for the batch: the FSM state is copied once
                for update in updates:
                    session.send(update, now)
                neighbor.stats.updates_out += len(updates)
                connection.flush()
                try:
                    await connection.writer.drain()
                except OSError:
                    return  # the reader sees the connection fail and ends the session
                if own and neighbor.established is connection:
                    self._sent(neighbor, own)
            if may_send_end_of_rib(
                self.initial_table,
                sent=end_of_rib_sent,
                pending=bool(neighbor.pending),
                established=session.state is State.ESTABLISHED,
            ):
                for family in sorted(families, key=lambda f: (f.afi, f.safi)):
                    session.send(Update.end_of_rib(family), _now())
                connection.flush()
                end_of_rib_sent = True
            neighbor.wake.clear()
            if not neighbor.pending:
                await neighbor.wake.wait()

    def _sent(self, neighbor: Neighbor, own: OwnPathsSent) -> None:
        """The UPDATEs carrying these changes of our own paths are in the kernel's send
        buffer: the peer gets them unless the connection fails (and the session with it)."""
        for prefix in own.withdrawn:
            neighbor.own_sent.pop(prefix_key(prefix), None)
        for prefix in own.advertised:
            neighbor.own_sent[prefix_key(prefix)] = prefix
        self._publish(PathsSent(neighbor.address, own.advertised, own.withdrawn))

    # --- reading state ------------------------------------------------------------------------

    def own_paths_sent(
        self, prefixes: Iterable[IPNetwork] | None = None
    ) -> dict[IPNetwork, list[IPAddress]]:
        """The neighbors a path of ours to each prefix has been sent to on their current
        sessions, as PathsSent told it: of `prefixes`, or of every path we originate (and any
        prefix still held by a neighbor whose withdrawal has not gone out yet)."""
        if prefixes is None:
            wanted = {prefix_key(p.prefix): p.prefix for p in self.local_paths()}
            for neighbor in self.neighbors.values():
                wanted.update(neighbor.own_sent)
        else:
            wanted = {prefix_key(p): p for p in prefixes}
        order = sorted(self.neighbors.items(), key=lambda item: item[0].sort_key())
        return {
            prefix: [address for address, n in order if key in n.own_sent]
            for key, prefix in wanted.items()
        }

    def uptime(self, neighbor: Neighbor) -> float | None:
        at = neighbor.stats.established_at
        return None if at is None else _now() - at
