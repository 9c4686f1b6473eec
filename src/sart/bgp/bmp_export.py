"""BMP export (RFC 7854), asyncio: the speaker as a monitored router, dialing each configured
collector and reporting its sessions there. The messages are `sart.bgp.bmp`'s.

Each collector gets, on every connection: Initiation; for each session then Established,
Peer Up, the routes held from that peer as Route Monitoring and an End-of-RIB per family;
then, as they happen, Peer Up, Route Monitoring of every UPDATE received, Peer Down, and a
Stats Report per session every `statistics_interval`; Termination when the speaker stops.

The speaker never waits for a collector. What the speaker tells this module (a
`SessionMonitor`) goes into a bounded queue per collector connection and is encoded and
written as the socket drains. A collector that falls QUEUE_LIMIT messages behind is dropped
(the connection is reset) and dialled again with backoff; the new connection starts over
from the speaker's state (resync) instead of buffering without bound. While a collector is
not connected nothing is queued for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import socket
import time
from collections import deque
from collections.abc import Sequence

import attrs

from sart import __version__
from sart.bgp.bmp import (
    PeerHeader,
    Statistic,
    StatType,
    TerminationReason,
    adj_rib_in_updates,
    encode_initiation,
    encode_peer_down,
    encode_peer_up,
    encode_route_monitorings,
    encode_statistics,
    encode_termination,
    peer_down,
)
from sart.bgp.config import BmpCollectorConfig
from sart.bgp.context import SessionContext
from sart.bgp.fsm import SessionDown
from sart.bgp.messages import IPV4_UNICAST, IPV6_UNICAST, Family, Update
from sart.bgp.prefixes import key_version
from sart.bgp.reconnect import backoff
from sart.bgp.rib import Path
from sart.bgp.session import Session
from sart.bgp.speaker import Neighbor, Speaker

log = logging.getLogger("sart.bgp.bmp")

QUEUE_LIMIT = 100_000  # BMP messages waiting for one collector; one more drops the connection
DUMP_BATCH = 2048  # paths packed into UPDATEs between two waits for the socket to drain
RETRY_BASE = 1.0  # seconds: the first wait before dialling a collector again
CONNECT_TIMEOUT = 10.0  # seconds a dial may take (an unreachable host answers nothing)
SCAN_SLICE = 50_000  # paths counted between two turns of the event loop
STOP_TIMEOUT = 2.0  # seconds the Peer Downs and Termination get to leave at stop


@attrs.frozen
class _Routes:
    """UPDATEs of one peer, encoded when written."""

    header: PeerHeader
    updates: tuple[Update, ...]
    ctx: SessionContext


@attrs.frozen
class _Dump:
    """A peer's Adj-RIB-In as it was when the collector connected, then its End-of-RIBs."""

    header: PeerHeader
    paths: list[Path]
    ctx: SessionContext
    families: tuple[Family, ...]


_Item = bytes | _Routes | _Dump


def _wall_clock(monotonic: float) -> float:
    return time.time() - (time.monotonic() - monotonic)


def _header(neighbor: Neighbor, timestamp: float) -> PeerHeader:
    negotiated = neighbor.negotiated
    assert negotiated is not None
    return PeerHeader(
        address=neighbor.address,
        asn=negotiated.peer_asn,
        bgp_id=negotiated.peer_id,
        two_octet_as=not negotiated.receive.four_octet_as,
        timestamp=timestamp,
    )


def _peer_up(neighbor: Neighbor, timestamp: float) -> bytes:
    connection = neighbor.established
    assert connection is not None and connection.session.open_received is not None
    local = connection.writer.get_extra_info("sockname")
    remote = connection.writer.get_extra_info("peername")
    return encode_peer_up(
        _header(neighbor, timestamp),
        local_address=connection.local_address,
        local_port=local[1],
        remote_port=remote[1],
        sent_open=connection.session.config.local,
        received_open=connection.session.open_received,
    )


def _families(neighbor: Neighbor) -> tuple[Family, ...]:
    assert neighbor.negotiated is not None
    return tuple(sorted(neighbor.negotiated.families, key=lambda f: (f.afi, f.safi)))


class _Link:
    """One connection to a collector and what waits to be written to it."""

    def __init__(self, writer: asyncio.StreamWriter, limit: int) -> None:
        self.writer = writer
        self.limit = limit
        self.queue: deque[_Item] = deque()
        self.queued = 0  # BMP messages in the queue (a dump counts as one)
        self.wake = asyncio.Event()
        self.dropped = False

    def put(self, item: _Item, count: int = 1) -> bool:
        """Queue the item; False (and nothing queued) when that would pass the limit."""
        if self.queued + count > self.limit:
            return False
        self.queue.append(item)
        self.queued += count
        self.wake.set()
        return True

    async def write_all(self) -> None:
        """Write the queue as the socket drains, until the connection ends."""
        writer = self.writer
        while not self.dropped:
            while self.queue:
                item = self.queue.popleft()
                if type(item) is bytes:
                    writer.write(item)
                    self.queued -= 1
                elif isinstance(item, _Routes):
                    writer.write(encode_route_monitorings(item.header, item.updates, item.ctx))
                    self.queued -= len(item.updates)
                elif isinstance(item, _Dump):
                    await self._dump(item)
                    self.queued -= 1
                await writer.drain()
            self.wake.clear()
            await self.wake.wait()

    async def _dump(self, dump: _Dump) -> None:
        paths = iter(dump.paths)
        while batch := list(itertools.islice(paths, DUMP_BATCH)):
            updates = adj_rib_in_updates(batch, dump.ctx)
            self.writer.write(encode_route_monitorings(dump.header, updates, dump.ctx))
            await self.writer.drain()
        ends = [Update.end_of_rib(family) for family in dump.families]
        self.writer.write(encode_route_monitorings(dump.header, ends, dump.ctx))


class _Collector:
    def __init__(self, exporter: BmpExporter, config: BmpCollectorConfig) -> None:
        self.exporter = exporter
        self.config = config
        self.link: _Link | None = None
        self.task: asyncio.Task[None] | None = None

    @property
    def where(self) -> str:
        address = self.config.address
        host = f"[{address}]" if address.version == 6 else str(address)
        return f"{host}:{self.config.port}"

    def put(self, item: _Item, count: int = 1) -> None:
        link = self.link
        if link is None or link.dropped:
            return
        if not link.put(item, count):
            log.warning(
                "BMP collector too slow: connection dropped, it gets the whole state again "
                "when it is back",
                extra={"collector": self.where, "queued": link.queued},
            )
            link.dropped = True
            link.queue.clear()
            link.wake.set()
            link.writer.transport.abort()

    async def run(self) -> None:
        """Dial, report until the connection ends, wait (backing off), and again."""
        failures = 0
        while True:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(str(self.config.address), self.config.port),
                    CONNECT_TIMEOUT,
                )
            except (OSError, TimeoutError) as error:
                failures += 1
                log.info(
                    "BMP collector unreachable",
                    extra={"collector": self.where, "error": str(error) or "timed out"},
                )
            else:
                failures = 0
                log.info("BMP collector connected", extra={"collector": self.where})
                await self._serve(reader, writer)
            await asyncio.sleep(backoff(RETRY_BASE, failures, random.random()))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link = _Link(writer, self.exporter.queue_limit)
        link.put(self.exporter.initiation())
        # In one step with the queue's first items: every later event comes after them.
        for item, count in self.exporter.resync():
            link.put(item, count)
        self.link = link
        tasks = [asyncio.create_task(link.write_all()), asyncio.create_task(_until_eof(reader))]
        if self.config.statistics_interval:
            tasks.append(asyncio.create_task(self._report_statistics(link)))
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.link = None
            link.dropped = True
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, OSError):
                    await task
            writer.close()
            log.info("BMP collector disconnected", extra={"collector": self.where})

    async def _report_statistics(self, link: _Link) -> None:
        while True:
            await asyncio.sleep(self.config.statistics_interval)
            for report in await self.exporter.statistics():
                self.put(report)

    async def stop(self) -> None:
        """Termination after what is queued, a moment for it to leave, then close."""
        link = self.link
        if link is not None and not link.dropped:
            self.put(encode_termination(TerminationReason.ADMINISTRATIVELY_CLOSED))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_drained(link), STOP_TIMEOUT)
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


async def _count_ipv6(paths: list[Path]) -> int:
    """How many of the paths are IPv6 ones, counted in slices with the event loop free to run
    the speaker between them (a million paths take about half a second)."""
    count = 0
    for start in range(0, len(paths), SCAN_SLICE):
        count += sum(1 for path in paths[start : start + SCAN_SLICE] if key_version(path.key) == 6)
        await asyncio.sleep(0)
    return count


async def _until_eof(reader: asyncio.StreamReader) -> None:
    """A collector sends nothing (RFC 7854 3.3); read and drop until it closes."""
    with contextlib.suppress(OSError):
        while await reader.read(4096):
            pass


async def _drained(link: _Link) -> None:
    while link.queue and not link.dropped:
        await asyncio.sleep(0.01)
    with contextlib.suppress(OSError):
        await link.writer.drain()


class BmpExporter:
    """Reports the speaker's sessions to its BMP collectors: `start()` after the speaker's,
    `await stop()` after the speaker's (so the collectors see every Peer Down)."""

    def __init__(
        self,
        speaker: Speaker,
        collectors: Sequence[BmpCollectorConfig],
        *,
        queue_limit: int = QUEUE_LIMIT,
    ) -> None:
        self.speaker = speaker
        self.queue_limit = queue_limit  # BMP messages waiting per collector, at most
        self.collectors = [_Collector(self, config) for config in collectors]

    def start(self) -> None:
        if not self.collectors:
            return
        self.speaker.monitors.append(self)
        loop = asyncio.get_running_loop()
        for collector in self.collectors:
            collector.task = loop.create_task(collector.run())

    async def stop(self) -> None:
        with contextlib.suppress(ValueError):
            self.speaker.monitors.remove(self)
        await asyncio.gather(*(collector.stop() for collector in self.collectors))

    # --- what a new connection starts with ---------------------------------------------------

    def initiation(self) -> bytes:
        config = self.speaker.config
        return encode_initiation(
            socket.gethostname(),
            f"sart {__version__} BGP speaker, AS {config.asn}, BGP identifier {config.router_id}",
        )

    def resync(self) -> list[tuple[_Item, int]]:
        """Peer Up and the Adj-RIB-In of every session up now (RFC 7854 5)."""
        items: list[tuple[_Item, int]] = []
        for neighbor in self.speaker.neighbors.values():
            if neighbor.established is None or neighbor.source is None:
                continue
            up_at = neighbor.stats.established_at
            timestamp = time.time() if up_at is None else _wall_clock(up_at)
            items.append((_peer_up(neighbor, timestamp), 1))
            assert neighbor.negotiated is not None
            paths = list(self.speaker.rib.paths_from(neighbor.source))
            # Their time of arrival is not kept: 0 says so (RFC 7854 4.2).
            dump = _Dump(
                _header(neighbor, 0.0), paths, neighbor.negotiated.receive, _families(neighbor)
            )
            items.append((dump, 1))
        return items

    async def statistics(self) -> list[bytes]:
        """A Stats Report per session up: the routes held from the peer, in all and per
        family (stat types 7 and 9), as they were when the report began."""
        reports = []
        now = time.time()
        rib = self.speaker.rib
        for neighbor in list(self.speaker.neighbors.values()):
            source = neighbor.source
            if neighbor.established is None or source is None:
                continue
            header = _header(neighbor, now)
            total = rib.count(source)
            families = _families(neighbor)
            if len(families) > 1:
                v6 = await _count_ipv6(list(rib.paths_from(source)))
            else:
                v6 = total if families == (IPV6_UNICAST,) else 0
            by_version = {IPV4_UNICAST: total - v6, IPV6_UNICAST: v6}
            stats = [Statistic(StatType.ADJ_RIB_IN_ROUTES, total)]
            stats += [
                Statistic(StatType.ADJ_RIB_IN_ROUTES_PER_FAMILY, by_version.get(family, 0), family)
                for family in families
            ]
            reports.append(encode_statistics(header, stats))
        return reports

    # --- SessionMonitor ------------------------------------------------------------------------

    def _connected(self) -> list[_Collector]:
        return [c for c in self.collectors if c.link is not None and not c.link.dropped]

    def session_up(self, neighbor: Neighbor) -> None:
        collectors = self._connected()
        if collectors:
            message = _peer_up(neighbor, time.time())
            for collector in collectors:
                collector.put(message)

    def session_down(self, neighbor: Neighbor, session: Session, down: SessionDown) -> None:
        collectors = self._connected()
        if collectors:
            local_close = neighbor.stopping or not down.connection_lost
            why = peer_down(
                sent=session.notification_sent,
                received=session.notification_received,
                local_close=local_close,
            )
            message = encode_peer_down(_header(neighbor, time.time()), why)
            for collector in collectors:
                collector.put(message)

    def updates_received(self, neighbor: Neighbor, updates: Sequence[Update]) -> None:
        collectors = self._connected()
        if collectors:
            assert neighbor.negotiated is not None
            item = _Routes(
                _header(neighbor, time.time()), tuple(updates), neighbor.negotiated.receive
            )
            for collector in collectors:
                collector.put(item, len(item.updates))
