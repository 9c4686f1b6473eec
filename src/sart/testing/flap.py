"""A BGP session flapped again and again, and brought back every time.

A real `sartd bgp` process (the one whose memory counts) peers over loopback TCP with a
`Speaker` running in this process (the same library: a peer process would spend most of each
flap starting Python, and on the wire the two look alike). The peer announces `routes_in`
prefixes to sartd, sartd `routes_out` to the peer; both dial, so connections collide. Each
flap is one fault, then a bounded poll until a new session is Established on both sides with
every route back both ways: sartd's side read through its API, the peer's directly. sartd's
RSS and open file descriptors, and this event loop's tasks (the peer's), are read after a
warm-up and at the end; sartd's own count of sessions (its metrics) after the last flap.

The faults (`METHODS`), cycled; sartd sees all but the last only on the wire:

    reset     the peer's TCP connection is reset under its session (RST, no NOTIFICATION)
    eof       the peer's socket is closed under its session (FIN, no NOTIFICATION)
    cease     the peer ends the session properly (Cease NOTIFICATION), then allows it again
    restart   the peer crashes (every socket reset, its listener gone) and a new one starts
    admin     sartd's API: neighbor admin down, then up (sartd sends the Cease)

Used by benchmarks/bgp_flap.py (1,000 flaps) and tests/speaker/test_flap.py (100).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import struct
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import attrs
from netaddr import IPAddress, IPNetwork

from sart.api._gen.sart.speaker.v1 import speaker_pb2 as pb
from sart.api.client import ApiError, SpeakerClient
from sart.bgp.config import NeighborConfig, PathConfig, SpeakerConfig
from sart.bgp.speaker import Speaker
from sart.testing.peers import read_status_kib

SARTD_ADDRESS = IPAddress("127.0.0.41")
PEER_ADDRESS = IPAddress("127.0.0.42")
SARTD_AS, PEER_AS = 65041, 65042
METHODS = {
    "reset": "the peer's TCP connection is reset (RST, no NOTIFICATION)",
    "eof": "the peer's socket is closed (FIN, no NOTIFICATION)",
    "cease": "the peer sends Cease, then allows the session again",
    "restart": "the peer crashes (sockets reset, listener gone) and a new one starts",
    "admin": "sartd's API: neighbor admin down, then up",
}
DEFAULT_METHODS = tuple(METHODS)
POLL_INTERVAL = 0.01


class FlapError(Exception):
    """The rig could not be set up, or a flap did not come back in time."""


def prefixes(count: int, first_octet: int) -> tuple[IPNetwork, ...]:
    """`count` distinct /24s under first_octet.0.0.0/8 (at most 65,536)."""
    return tuple(IPNetwork(f"{first_octet}.{i >> 8}.{i & 255}.0/24") for i in range(count))


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def poll(
    check: Callable[[], Awaitable[bool]], timeout: float, interval: float = POLL_INTERVAL
) -> bool:
    """Whether `check()` held before `timeout` seconds passed."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(interval)
    return True


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close the socket with a zero linger time: the kernel sends RST instead of FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@attrs.frozen(kw_only=True)
class Sample:
    """sartd's footprint and this loop's task count at one moment."""

    rss_kib: int
    fds: int
    tasks: int


@attrs.frozen(kw_only=True)
class FlapReport:
    flaps: int  # flaps that came back
    failure: str  # why the next one did not ("" when all came back)
    seconds: tuple[float, ...]  # per flap that came back: fault to session and routes back
    methods: dict[str, int]  # flaps that came back, per method
    start: Sample  # after the warm-up
    end: Sample
    sessions: int  # sessions sartd counted up with the peer during the run (one per flap)

    @property
    def all_came_back(self) -> bool:
        return not self.failure

    @property
    def rss_growth(self) -> float:
        """RSS growth from the warm-up to the end, in percent."""
        return 100.0 * (self.end.rss_kib - self.start.rss_kib) / self.start.rss_kib

    def percentile(self, q: float) -> float:
        """The q-th percentile (0..100) of the flap times, nearest rank."""
        ordered = sorted(self.seconds)
        if not ordered:
            return float("nan")
        rank = max(1, -(-len(ordered) * q // 100))
        return ordered[int(rank) - 1]


class FlapRig:
    """sartd and its peer, set up by `async with`; `run(n)` flaps their session n times."""

    def __init__(
        self,
        *,
        routes_in: int = 1000,
        routes_out: int = 100,
        connect_retry_time: float = 0.1,
        log_level: str = "info",
    ) -> None:
        self.routes_in = routes_in
        self.routes_out = routes_out
        self.connect_retry_time = connect_retry_time
        self.log_level = log_level
        self.workdir = Path(tempfile.mkdtemp(prefix="sart-flap-"))
        self.api = f"unix:{self.workdir / 'api.sock'}"
        self.metrics_port = 0
        self.process: asyncio.subprocess.Process | None = None
        self.client: SpeakerClient | None = None
        self.peer: Speaker | None = None
        self.peer_config: SpeakerConfig | None = None

    # --- set-up -------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def log_path(self) -> Path:
        return self.workdir / "sartd.log"

    async def start(self, timeout: float = 30.0) -> None:
        sartd_port = _free_port(SARTD_ADDRESS)
        self.peer_config = SpeakerConfig(
            asn=PEER_AS,
            router_id=IPAddress("10.255.0.42"),
            port=0,
            listen_addresses=(PEER_ADDRESS,),
            connect_retry_time=self.connect_retry_time,
            neighbors=(
                NeighborConfig(
                    address=SARTD_ADDRESS, asn=SARTD_AS, port=sartd_port, local_address=PEER_ADDRESS
                ),
            ),
            paths=(PathConfig(prefixes=prefixes(self.routes_in, 10)),),
        )
        self.peer = Speaker(self.peer_config)
        await self.peer.start()
        # A restarted peer comes back on the same port, where sartd dials it.
        self.peer_config = attrs.evolve(self.peer_config, port=self.peer.ports[0])
        self.metrics_port = _free_port(IPAddress("127.0.0.1"))
        config = self.workdir / "bgp.yaml"
        config.write_text(self._sartd_config(sartd_port, self.peer.ports[0]))
        command = [
            sys.executable, "-m", "sart.cli.sartd", "bgp", "-f", str(config),
            "--api-address", self.api, "--metrics-address", f"127.0.0.1:{self.metrics_port}",
            "--format", "json", "--level", self.log_level,
        ]  # fmt: skip
        with self.log_path.open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                *command, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log
            )
        self.client = SpeakerClient(self.api, timeout=10.0)
        if not await poll(self._answers, timeout, 0.05):
            raise FlapError(f"sartd did not answer on {self.api}\n{self.log_tail()}")
        if not await poll(self._up, timeout):
            raise FlapError(f"the first session did not come up: {await self.describe()}")

    def _sartd_config(self, port: int, peer_port: int) -> str:
        routes = ", ".join(str(p) for p in prefixes(self.routes_out, 172))
        return (
            f"asn: {SARTD_AS}\nrouter_id: 10.255.0.41\nport: {port}\n"
            f"listen_addresses: [{SARTD_ADDRESS}]\n"
            f"connect_retry_time: {self.connect_retry_time}\n"
            f"neighbors:\n  - address: {PEER_ADDRESS}\n    asn: {PEER_AS}\n"
            f"    port: {peer_port}\n    local_address: {SARTD_ADDRESS}\n"
            f"paths:\n  - prefixes: [{routes}]\n"
        )

    async def _answers(self) -> bool:
        assert self.client is not None and self.process is not None
        if self.process.returncode is not None:
            raise FlapError(f"sartd exited with {self.process.returncode}\n{self.log_tail()}")
        try:
            await self.client.health()
        except ApiError:
            return False
        return True

    async def close(self) -> None:
        if self.peer is not None:
            await self.peer.stop()
            self.peer = None
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 15)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # --- reading both sides -------------------------------------------------------------------

    async def _up(self) -> bool:
        """Whether the session is Established on both sides with every route in."""
        return await self._back(None, 0.0)

    async def _back(self, old: object, since: float) -> bool:
        """Whether a session newer than `old` (the peer's previous connection) and than
        `since` (monotonic) is Established on both sides with every route in."""
        assert self.peer is not None and self.client is not None
        mine = self.peer.neighbors.get(SARTD_ADDRESS)
        if mine is None or mine.established is None or mine.established is old:
            return False
        if mine.source is None or self.peer.rib.count(mine.source) != self.routes_out:
            return False
        theirs = await self.client.neighbor(str(PEER_ADDRESS))
        answered = time.monotonic()
        return (
            theirs.state == pb.SESSION_STATE_ESTABLISHED
            and theirs.prefixes_received == self.routes_in
            and theirs.uptime_seconds < answered - since
        )

    def sample(self) -> Sample:
        return Sample(
            rss_kib=read_status_kib(self.pid, "VmRSS"),
            fds=open_fds(self.pid),
            tasks=len(asyncio.all_tasks()),
        )

    async def settled_sample(self, like: Sample, timeout: float = 5.0) -> Sample:
        """A sample once sartd's descriptors and this loop's tasks are back to `like`'s counts
        (a connection that lost a collision may still be closing); after `timeout`, as is."""

        async def settled() -> bool:
            now = self.sample()
            return now.fds <= like.fds and now.tasks <= like.tasks

        await poll(settled, timeout)
        return self.sample()

    async def sessions(self) -> int:
        """How many times sartd's session with the peer came up (its metrics)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"

        def scrape() -> str:
            with urllib.request.urlopen(url, timeout=10) as response:
                text: str = response.read().decode()
                return text

        for line in (await asyncio.to_thread(scrape)).splitlines():
            if line.startswith("sart_bgp_peer_established_total{") and str(PEER_ADDRESS) in line:
                return int(float(line.rsplit(" ", 1)[1]))
        raise FlapError("sartd's metrics have no sart_bgp_peer_established for the peer")

    async def describe(self) -> str:
        """Both sides' view of the session, for a failure message."""
        assert self.peer is not None and self.client is not None
        mine = self.peer.neighbors.get(SARTD_ADDRESS)
        peer_view = "not configured"
        if mine is not None:
            routes = self.peer.rib.count(mine.source) if mine.source is not None else 0
            peer_view = f"{mine.state.name}, {routes} routes, last error {mine.stats.last_error!r}"
        try:
            state = await self.client.neighbor(str(PEER_ADDRESS))
            sartd_view = (
                f"{pb.SessionState.Name(state.state)}, {state.prefixes_received} routes, "
                f"last error {state.last_error!r}"
            )
        except ApiError as error:
            sartd_view = f"no answer ({error.message})"
        return f"sartd: {sartd_view}; peer: {peer_view}"

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    # --- faults -------------------------------------------------------------------------------

    async def _fault(self, method: str) -> None:
        assert self.peer is not None and self.client is not None
        mine = self.peer.neighbors[SARTD_ADDRESS]
        if method == "reset":
            assert mine.established is not None
            _reset(mine.established.writer)
        elif method == "eof":
            assert mine.established is not None
            mine.established.writer.transport.close()
        elif method == "cease":
            await self.peer.set_admin_down(SARTD_ADDRESS, True)
            await self.peer.set_admin_down(SARTD_ADDRESS, False)
        elif method == "restart":
            await self._restart_peer()
        elif method == "admin":
            await self.client.set_admin_down(str(PEER_ADDRESS), True)
            await self.client.set_admin_down(str(PEER_ADDRESS), False)
        else:
            raise ValueError(f"unknown flap method {method!r} (one of {', '.join(METHODS)})")

    async def _restart_peer(self) -> None:
        """The peer dies as a killed process would, every socket at once, then starts again."""
        assert self.peer is not None and self.peer_config is not None
        for neighbor in self.peer.neighbors.values():
            for connection in neighbor.connections:
                _reset(connection.writer)
        await self.peer.stop("crashed")  # its sockets are gone: nothing more reaches the wire
        self.peer = Speaker(self.peer_config)
        await self.peer.start()

    async def flap(self, method: str, timeout: float = 30.0) -> float:
        """One fault, then wait for the session and every route to be back. Seconds taken."""
        assert self.peer is not None
        if not await poll(self._up, timeout):  # a collision may have reset it since
            raise FlapError(f"not up before the fault: {await self.describe()}")
        old = self.peer.neighbors[SARTD_ADDRESS].established
        started = time.monotonic()
        await self._fault(method)
        if not await poll(lambda: self._back(old, started), timeout):
            raise FlapError(f"not back after {timeout:g} s: {await self.describe()}")
        return time.monotonic() - started

    async def run(
        self,
        flaps: int,
        *,
        methods: Sequence[str] = DEFAULT_METHODS,
        warmup: int = 50,
        timeout: float = 30.0,
        progress: Callable[[int, float], Any] | None = None,
    ) -> FlapReport:
        """Flap `flaps` times, cycling through `methods`; stop at the first that does not come
        back. The start sample is taken after `warmup` flaps (at once if there are fewer)."""
        unknown = [m for m in methods if m not in METHODS]
        if unknown or not methods:
            raise ValueError(f"flap methods must be some of {', '.join(METHODS)}: {unknown}")
        before = await self.sessions()
        seconds: list[float] = []
        counts = dict.fromkeys(methods, 0)
        start = self.sample() if warmup <= 0 or flaps <= warmup else None
        failure = ""
        for number in range(1, flaps + 1):
            method = methods[(number - 1) % len(methods)]
            try:
                took = await self.flap(method, timeout)
            except FlapError as error:
                failure = f"flap {number} ({method}) {error}"
                break
            seconds.append(took)
            counts[method] += 1
            if number == warmup and start is None:
                start = self.sample()
            if progress is not None:
                progress(number, took)
        end = await self.settled_sample(start) if start is not None else self.sample()
        return FlapReport(
            flaps=len(seconds),
            failure=failure,
            seconds=tuple(seconds),
            methods=counts,
            start=start or end,
            end=end,
            sessions=await self.sessions() - before,
        )


def _free_port(address: IPAddress) -> int:
    with socket.socket() as sock:
        sock.bind((str(address), 0))
        port: int = sock.getsockname()[1]
        return port
