"""`sartd agent`: drives the node's speaker from the cluster (BGPPeers for this node,
BGPAdvertisements that list it), through the speaker's API only."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from kubernetes_asyncio.client import ApiClient, CustomObjectsApi

from sart.api.client import ApiError, SpeakerClient
from sart.k8s.reconcile.agent import plan, wanted_paths, wanted_peers
from sart.k8s.runtime.outcome import Backoff
from sart.k8s.runtime.watch import WatchStats, watch_kind

log = logging.getLogger("sart.agent")
RESYNC = 30.0  # also compare with the speaker now and then: it may have restarted


class NodeAgent:
    def __init__(
        self, api: ApiClient, node: str, endpoint: str, *, stats: WatchStats | None = None
    ) -> None:
        self.custom = CustomObjectsApi(api)
        self.node = node
        self.endpoint = endpoint
        self.peers: dict[str, dict[str, Any]] = {}
        self.advertisements: dict[str, dict[str, Any]] = {}
        self._wake = asyncio.Event()
        self._backoff = Backoff(base=0.2, cap=10.0)
        self.stats = stats if stats is not None else WatchStats()  # both watches, added up

    def _handler(self, store: dict[str, dict[str, Any]]) -> Any:
        def handle(kind: str, obj: Any) -> None:
            if kind == "SYNCED":
                self._wake.set()
                return
            meta = obj["metadata"]
            key = f"{meta.get('namespace', '')}/{meta['name']}"
            if kind == "DELETED":
                store.pop(key, None)
            else:
                store[key] = obj
            self._wake.set()

        return handle

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            for plural, store in (
                ("bgppeers", self.peers),
                ("bgpadvertisements", self.advertisements),
            ):
                tasks.create_task(
                    watch_kind(self.custom, plural, self._handler(store), stats=self.stats)
                )
            tasks.create_task(self._work())

    async def _work(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):  # resync anyway
                await asyncio.wait_for(self._wake.wait(), RESYNC)
            self._wake.clear()
            try:
                await self.sync()
            except ApiError as error:
                # The speaker restarting or not up yet: temporary, jittered backoff.
                delay = self._backoff.next()
                log.warning(
                    "speaker not in sync, retrying",
                    extra={"error": error.message, "retry_in": round(delay, 2)},
                )
                await asyncio.sleep(delay)
                self._wake.set()
            else:
                self._backoff.reset()

    async def sync(self) -> None:
        async with SpeakerClient(self.endpoint) as speaker:
            neighbors = {n.config.address: n.config.asn for n in await speaker.neighbors()}
            local = {p.prefix for p in await speaker.rib() if p.source == "local"}
            todo = plan(
                wanted_peers(self.node, self.peers.values()),
                wanted_paths(self.node, self.advertisements.values()),
                neighbors,
                local,
            )
            if not todo:
                return
            for address in todo.delete_peers:
                await speaker.delete_neighbor(address)
            for peer in todo.add_peers:
                options: dict[str, Any] = {"name": peer.name}
                if peer.hold_time is not None:
                    options["hold_time"] = peer.hold_time
                await speaker.add_neighbor(peer.address, peer.asn, **options)
            if todo.delete_paths:
                await speaker.delete_paths(todo.delete_paths)
            if todo.add_paths:
                await speaker.add_paths(todo.add_paths)
            log.info(
                "speaker updated",
                extra={"peers_added": len(todo.add_peers), "peers_deleted": len(todo.delete_peers),
                       "paths_added": len(todo.add_paths), "paths_deleted": len(todo.delete_paths)},
            )  # fmt: skip
