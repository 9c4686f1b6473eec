"""Following the speaker's API and carrying its routes into the kernel (asyncio adapter).

One connection to the speaker at a time (`SpeakerClient`):
1. open `WatchEvents` first, so no change made while the table is read is missed;
2. read the whole Loc-RIB (`GetRib`) and the speaker's uptime (`GetBgpInfo`), read our routes
   from the kernel, and reconcile (`Fib.synchronise`): install the table, remove what conflicts,
   keep or remove stale routes by the grace rule;
3. then apply each `BestPathChanged` as it comes. Events are kept latest-wins per prefix (each
   carries the prefix's whole Loc-RIB entry), so a burst costs a dict, not a queue, and no
   event is dropped on our side;
4. every `probe_interval` seconds, ask the speaker for its health (a hung speaker keeps its
   connection and its stream open); every `resync_interval` seconds, read the table and the
   kernel again and reconcile. This mends what an event stream cannot: a kernel call that
   failed, a route changed by hand, an event lost (the speaker drops the oldest events of a
   subscriber more than 10,000 behind, and its API does not say when a watch is registered).

When the speaker cannot be reached (or its stream ends), the routes stay; the follower retries
with exponential backoff (jittered, `retry` doubling up to `max_retry`) and, `grace` seconds
after the speaker went away, tries once more and then removes them (`Fib.speaker_lost`). A
speaker that is never reached at all leaves the kernel alone. Stopping the follower leaves
the routes in the kernel: a restart reconciles them (`flush()` removes them on request).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Coroutine, Iterable
from typing import Any, Protocol

import attrs
from grpclib.exceptions import StreamTerminatedError
from netaddr import AddrFormatError, IPAddress, IPNetwork

from sart.api._gen.sart.speaker.v1 import speaker_pb2 as pb
from sart.api.client import ApiError, SpeakerClient
from sart.errors import SartError
from sart.fib.kernel import KernelError
from sart.fib.metrics import FibMetrics
from sart.fib.plan import Fib, FibConfig, LearnedPath, Route, RouteDiff

log = logging.getLogger("sart.fib")


class RouteTable(Protocol):
    """Where routes go: `sart.fib.kernel.KernelRoutes`, or a model of it in tests."""

    async def routes(self) -> list[Route]: ...

    async def replace(self, route: Route) -> None: ...

    async def delete(self, route: Route) -> None: ...


class SpeakerGone(SartError):
    """The speaker's event stream ended."""


@attrs.frozen
class FibStats:
    """What the follower did since it started."""

    installed: int  # routes added or changed in the kernel
    removed: int  # routes deleted from the kernel
    errors: int  # kernel calls refused, and paths the follower could not read
    events: int  # BestPathChanged events received
    synchronisations: int  # whole-table reconciles
    attempts: int  # times the follower tried to reach the speaker
    connections: int  # times the speaker was reached and its table read
    connected: bool
    routes: int  # routes of ours the kernel should hold now


def learned_path(message: pb.Path) -> LearnedPath:
    """A path as the API gives it, for `sart.fib.plan`."""
    return LearnedPath(
        prefix=IPNetwork(message.prefix),
        next_hop=IPAddress(message.next_hop) if message.next_hop else None,
        source=message.source,
        best=message.best,
    )


class Follower:
    """Keeps the kernel's routes of `config.table` and `config.protocol` equal to what the
    speaker at `endpoint` selected (docs/fib.md)."""

    def __init__(
        self,
        endpoint: str,
        config: FibConfig,
        kernel: RouteTable,
        *,
        resync_interval: float = 300.0,
        probe_interval: float = 10.0,
        retry: float = 0.5,
        max_retry: float = 30.0,
        call_timeout: float = 60.0,
        metrics: FibMetrics | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.config = config
        self.kernel = kernel
        self.fib = Fib(config)
        self.resync_interval = resync_interval
        self.probe_interval = probe_interval
        self.retry = retry
        self.max_retry = max_retry
        self.call_timeout = call_timeout
        self.metrics = metrics or FibMetrics()
        self._installed = self._removed = self._errors = 0
        self._events = self._synchronisations = self._connections = self._attempts = 0
        self._connected = False

    def statistics(self) -> FibStats:
        return FibStats(
            installed=self._installed,
            removed=self._removed,
            errors=self._errors,
            events=self._events,
            synchronisations=self._synchronisations,
            attempts=self._attempts,
            connections=self._connections,
            connected=self._connected,
            routes=self.fib.route_count,
        )

    @property
    def connected(self) -> bool:
        """Whether the speaker is reached and the kernel was synchronised with it on this
        connection (for /readyz)."""
        return self._connected

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    # --- the loop -------------------------------------------------------------------------

    async def run(self) -> None:
        """Follow the speaker until cancelled, reconnecting whenever it goes away."""
        failures = 0
        while True:
            connections = self._connections
            self._attempts += 1
            try:
                await self._follow()
            except (ApiError, SpeakerGone, StreamTerminatedError, OSError, TimeoutError) as error:
                log.warning("speaker lost", extra={"endpoint": self.endpoint, "reason": str(error)})
            finally:
                self._set_connected(False)
            if self._connections > connections:
                failures = 0  # it was reached: start the backoff again from the base
            now = self._now()
            self.fib.speaker_lost(now)
            delay = min(self.retry * 2**failures, self.max_retry) * random.uniform(0.8, 1.0)
            failures += 1
            flush_at = self.fib.flush_at
            if flush_at is not None and flush_at > now:
                # One more try when the grace time is up, before the routes go.
                delay = min(delay, flush_at - now)
            await self._sleep(delay)

    async def _sleep(self, delay: float) -> None:
        """Wait `delay` seconds, carrying out what falls due before the end (the grace timers;
        one due at the end waits for the next connection attempt)."""
        end = self._now() + delay
        while True:
            now = self._now()
            deadline = self.fib.next_deadline()
            due = deadline is not None and deadline < end
            if due and deadline is not None and deadline <= now:
                await self._apply(self.fib.handle_timer(now))
                continue
            if now >= end:
                return
            await asyncio.sleep((deadline if due and deadline is not None else end) - now)

    async def _follow(self) -> None:
        pending: dict[IPNetwork, list[LearnedPath]] = {}
        wake = asyncio.Event()
        client = SpeakerClient(self.endpoint, timeout=self.call_timeout)
        registered = asyncio.Event()
        reader = asyncio.create_task(self._read(client, pending, wake, registered))
        try:
            # The RIB is read once the speaker has subscribed the event stream: no change
            # falls between the two.
            async with asyncio.timeout(self.call_timeout):
                await _first(registered.wait(), reader)
            await client.health()
            await self._synchronise(client)
            self._connections += 1
            self._set_connected(True)
            next_resync = self._now() + self.resync_interval
            next_probe = self._now() + self.probe_interval
            while True:
                if reader.done():
                    reader.result()  # its error, if it had one
                    raise SpeakerGone("the speaker ended its event stream")
                while pending:
                    prefix = next(iter(pending))
                    paths = pending.pop(prefix)
                    await self._apply(self.fib.best_path_changed(prefix, paths))
                now = self._now()
                await self._apply(self.fib.handle_timer(now))
                if self.resync_interval > 0 and now >= next_resync:
                    await self._synchronise(client)
                    next_resync = self._now() + self.resync_interval
                elif now >= next_probe:
                    # A speaker that hangs keeps its connection and its stream open.
                    async with asyncio.timeout(self.probe_interval):
                        await client.health()
                    next_probe = self._now() + self.probe_interval
                wake.clear()
                if pending or reader.done():
                    continue
                resync_at = next_resync if self.resync_interval > 0 else None
                await self._wait(wake, resync_at, next_probe)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, ApiError):
                await reader
            client.close()

    async def _wait(self, wake: asyncio.Event, resync_at: float | None, probe_at: float) -> None:
        deadlines = [d for d in (self.fib.next_deadline(), resync_at) if d is not None]
        timeout = max(min(probe_at, *deadlines) - self._now(), 0.0)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await wake.wait()

    async def _read(
        self,
        client: SpeakerClient,
        pending: dict[IPNetwork, list[LearnedPath]],
        wake: asyncio.Event,
        registered: asyncio.Event,
    ) -> None:
        try:
            async for event in client.events(registered):
                if event.WhichOneof("event") != "best_path_changed":
                    continue
                change = event.best_path_changed
                self._events += 1
                self.metrics.events.inc()
                try:
                    prefix = IPNetwork(change.prefix)
                    paths = self._paths(change.paths)
                except (AddrFormatError, ValueError) as error:
                    self._errors += 1
                    log.warning("unreadable event", extra={"prefix": change.prefix, "error": error})
                    continue
                pending[prefix] = paths
                wake.set()
        finally:
            wake.set()

    def _paths(self, messages: Iterable[pb.Path]) -> list[LearnedPath]:
        paths = []
        for message in messages:
            try:
                paths.append(learned_path(message))
            except (AddrFormatError, ValueError) as error:
                self._errors += 1
                log.warning("unreadable path", extra={"prefix": message.prefix, "error": error})
        return paths

    async def _synchronise(self, client: SpeakerClient) -> None:
        info = await client.info()
        rib = self._paths(await client.rib())
        kernel = await self.kernel.routes()
        changes = self.fib.synchronise(
            rib, kernel, now=self._now(), speaker_uptime=info.uptime_seconds
        )
        self._synchronisations += 1
        self.metrics.synchronisations.inc()
        log.info(
            "kernel synchronised with the speaker",
            extra={
                "routes": len(self.fib.installed),
                "replace": len(changes.replace),
                "delete": len(changes.delete),
                "stale_kept": sum(len(r) for r in self.fib.stale.values()),
                "speaker_uptime": round(info.uptime_seconds, 1),
            },
        )
        await self._apply(changes)

    # --- the kernel -----------------------------------------------------------------------

    async def _apply(self, changes: RouteDiff) -> None:
        for route in changes.delete:
            if await self._call(self.kernel.delete, route, "delete"):
                self._removed += 1
        for route in changes.replace:
            if await self._call(self.kernel.replace, route, "replace"):
                self._installed += 1
        self.metrics.routes.set(self.fib.route_count)

    async def _call(self, method: RouteCall, route: Route, action: str) -> bool:
        try:
            await method(route)
        except KernelError as error:
            self._errors += 1
            self.metrics.errors.labels(action).inc()
            log.warning("kernel refused a route", extra={"error": str(error)})
            return False
        self.metrics.changes.labels(action).inc()
        log.debug("route %s", action, extra={"route": str(route)})
        return True

    async def flush(self) -> None:
        """Remove every route of ours (installed and stale) from the kernel."""
        await self._apply(self.fib.flush())

    def _set_connected(self, connected: bool) -> None:
        self._connected = connected
        self.metrics.connected.set(1 if connected else 0)


class RouteCall(Protocol):
    async def __call__(self, route: Route, /) -> None: ...


async def _first(waiting: Coroutine[Any, Any, Any], reader: asyncio.Task[None]) -> None:
    """Wait for `waiting`, unless the reader ends first (its error is raised)."""
    waiter = asyncio.ensure_future(waiting)
    try:
        await asyncio.wait({waiter, reader}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if reader.done():
        reader.result()
        raise SpeakerGone("the speaker ended its event stream")
