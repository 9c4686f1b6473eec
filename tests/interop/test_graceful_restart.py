"""Graceful restart as the restarting side (RFC 4724 4.1): `sartd bgp --graceful-restart
--defer-end-of-rib` restarted under a real FRR, BIRD and GoBGP, the way the node agent drives
it (neighbor and path put back through the API, then EndOfInitialTable).

- The router keeps the path the whole time (its RIB polled every 50 ms: never absent), stale
  while sartd is away, fresh once sent again (a path not sent again stays stale until our
  End-of-RIB: the second test).
- A sartd that never gets its path back: the selection deferral timer sends End-of-RIB
  anyway, and the router drops the path then.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sart.api.client import ApiError, SpeakerClient
from sart.testing.netns import Link, Namespace
from sart.testing.peers import BgpConfig, Bird, Frr, GoBgp, Lab, Peer, bird_protocol_name, neighbor
from waiting import eventually

KINDS: dict[str, type[Peer]] = {"frr": Frr, "bird": Bird, "gobgp": GoBgp}
SART_AS, PEER_AS = 65100, 65200
PREFIX = "10.61.0.0/24"
POLL = 0.05
# Seconds: longer than the router takes to accept the session again (GoBGP refuses it for a
# while after the loss, and our connect backoff doubles: up to 11 s measured).
DEFERRAL = 20


def stale(router: Peer, prefix: str) -> bool | None:
    """Whether the router holds `prefix` as stale (None: it does not hold it)."""
    if isinstance(router, Frr):
        data = router.vtysh_json(f"show bgp ipv4 unicast {prefix} json")
        paths = data.get("paths", []) if "prefix" in data else []
        return any(p.get("stale", False) for p in paths) if paths else None
    if isinstance(router, GoBgp):
        data = router.gobgp_json("global", "rib", "-a", "ipv4", prefix)
        paths = [p for net, ps in (data or {}).items() for p in ps]
        return any(p.get("stale", False) for p in paths) if paths else None
    # BIRD 2.0 shows no stale mark on a route: its neighbor's graceful restart is active
    # (its routes stale) from the session's loss until its End-of-RIB.
    assert isinstance(router, Bird)
    if not router.paths(prefix):
        return None
    (address,) = {n.address for n in router.config.neighbors}
    out = router.birdc("show", "protocols", "all", bird_protocol_name(address))
    return "Neighbor graceful restart active" in out


class Sartd:
    """`sartd bgp` in its namespace, its API on a unix socket, driven like the agent does."""

    def __init__(self, namespace: Namespace, link: Link, workdir: Path) -> None:
        self.namespace, self.link = namespace, link
        self.api = workdir / "bgp.sock"
        self.log = workdir / "sartd.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *, deferral: int = 60) -> None:
        self.api.unlink(missing_ok=True)
        command = [
            sys.executable, "-m", "sart.cli.sartd", "bgp", "--as", str(SART_AS),
            "--router-id", self.link.a.ipv4, "--graceful-restart", "--defer-end-of-rib",
            "--selection-deferral-time", str(deferral), "--api-address", f"unix:{self.api}",
            "--metrics-address", "", "--format", "json",
        ]  # fmt: skip
        with self.log.open("ab") as log:
            self.process = self.namespace.popen(command, stdout=log, stderr=log)
        eventually(lambda: self._try(lambda s: s.health()), 15, "sartd's API")

    def _try(self, call: Callable[[SpeakerClient], Any]) -> bool:
        try:
            self.call(call)
        except (ApiError, OSError):
            return False
        return True

    def call(self, call: Callable[[SpeakerClient], Any]) -> Any:
        async def run() -> Any:
            client = SpeakerClient(f"unix:{self.api}", timeout=5)
            try:
                return await call(client)
            finally:
                client.close()

        return asyncio.run(run())

    def configure(self, *, path: bool) -> None:
        """What the agent's sync does: the neighbor, our path (or not), then the signal."""
        self.call(lambda s: s.add_neighbor(self.link.b.ipv4, PEER_AS, hold_time=9))
        if path:
            self.call(lambda s: s.add_paths([PREFIX]))

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.process is not None:
            self.process.send_signal(sig)
            self.process.wait(15)
            self.process = None


class Poller:
    """The router's RIB for PREFIX every 50 ms: (time, held, stale)."""

    def __init__(self, router: Peer) -> None:
        self.router = router
        self.samples: list[tuple[float, bool, bool]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            state = stale(self.router, PREFIX)
            self.samples.append((began, state is not None, bool(state)))
            self._stop.wait(max(POLL - (time.monotonic() - began), 0.0))

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def last(self) -> tuple[float, bool, bool]:
        return self.samples[-1]

    def longest_absence(self) -> float:
        longest, since = 0.0, None
        for at, held, _ in self.samples:
            if not held and since is None:
                since = at
            elif held and since is not None:
                longest, since = max(longest, at - since), None
        if since is not None:
            longest = max(longest, self.samples[-1][0] - since)
        return longest


@pytest.fixture(params=list(KINDS))
def setup(request: pytest.FixtureRequest, lab: Lab, tmp_path: Path) -> Iterator[tuple[Sartd, Peer]]:
    sart_ns, peer_ns = lab.namespace("sartd"), lab.namespace(request.param)
    link = lab.link(sart_ns, peer_ns)
    config = BgpConfig(
        router_id=link.b.ipv4,
        local_as=PEER_AS,
        neighbors=(neighbor(link.a.ipv4, SART_AS, graceful_restart=True, hold_time=9),),
    )
    router = lab.start(KINDS[request.param](peer_ns, config))
    sartd = Sartd(sart_ns, link, tmp_path)
    try:
        yield sartd, router
    finally:
        sartd.stop(signal.SIGKILL)


def test_a_restarted_sartd_keeps_its_route_at_the_router(
    setup: tuple[Sartd, Peer], capsys: pytest.CaptureFixture[str]
) -> None:
    sartd, router = setup
    address = sartd.link.a.ipv4
    sartd.start()
    sartd.configure(path=True)
    sartd.call(lambda s: s.end_of_initial_table())
    assert router.wait_route(PREFIX) == [address]
    eventually(lambda: stale(router, PREFIX) is False, 15, "the route fresh")
    with Poller(router) as poller:
        time.sleep(0.3)
        began = time.monotonic()
        sartd.stop()  # SIGTERM: the connection closes, no NOTIFICATION
        router.wait_not_established(address, timeout=15)
        eventually(lambda: poller.last[2], 10, "the route stale at the router")
        sartd.start()
        sartd.configure(path=True)
        eventually(lambda: router.neighbor_state(address) == "established", 30)
        time.sleep(0.5)
        told = time.monotonic()
        assert sartd.call(lambda s: s.end_of_initial_table()) is True
        eventually(lambda: poller.last[1] and not poller.last[2], 15, "the route fresh again")
        fresh = time.monotonic()
        time.sleep(0.3)
    samples = [s for s in poller.samples if s[0] >= began]
    stale_for = sum(POLL for _, _, was_stale in samples if was_stale)
    with capsys.disabled():
        print(
            f"\n{type(router).__name__}: {len(samples)} polls over {fresh - began:.1f} s,"
            f" route absent {poller.longest_absence() * 1000:.0f} ms,"
            f" stale ~{stale_for:.1f} s, fresh {(fresh - told) * 1000:.0f} ms after the signal"
        )
    assert all(held for _, held, _ in samples), "the router dropped the route"
    assert stale_for > 0  # stale while sartd was away (fresh again once it re-sent it)
    assert router.paths(PREFIX) == [address]


def test_without_its_path_back_the_router_drops_it_at_the_deferral_timer(
    setup: tuple[Sartd, Peer],
) -> None:
    sartd, router = setup
    address = sartd.link.a.ipv4
    sartd.start()
    sartd.configure(path=True)
    sartd.call(lambda s: s.end_of_initial_table())
    assert router.wait_route(PREFIX) == [address]
    sartd.stop()
    router.wait_not_established(address, timeout=15)
    sartd.start(deferral=DEFERRAL)
    started = time.monotonic()
    sartd.configure(path=False)  # the path is not wanted any more; nobody signals
    eventually(lambda: router.neighbor_state(address) == "established", 30)
    assert time.monotonic() - started < DEFERRAL - 2, "back too late to see the deferral"
    assert stale(router, PREFIX) is True  # kept until our End-of-RIB
    eventually(lambda: stale(router, PREFIX) is None, 30, "the route dropped after End-of-RIB")
    assert time.monotonic() - started >= DEFERRAL - 0.5  # not before the deferral timer
    info = sartd.call(lambda s: s.info())
    assert not info.end_of_rib_deferred
