"""The pod-block side of the controller: BlockRequests in, AddressBlocks and their
BGPAdvertisements out (`sart.k8s.reconcile.blocks` decides).

Serving a request is three writes (the AddressBlock, its BGPAdvertisement, deleting the
BlockRequest) and any of them may fail, or the controller may die between them. So each step is
idempotent: the AddressBlock carries the name of the request it serves (label
`sart.terassyi.net/blockrequest`), and a request that already has its block (seen by the watch,
or written by us and not yet seen) goes on from there instead of taking a second block. Failed
requests are retried with the runtime's error model (sart.k8s.runtime.outcome)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from kubernetes_asyncio.client import ApiClient, CustomObjectsApi
from kubernetes_asyncio.client.exceptions import ApiException

from sart.errors import IpamError
from sart.k8s.models import GROUP, VERSION, AddressBlock, AddressPool, AddressType
from sart.k8s.reconcile.blocks import BlockView, PodBlockAllocator, PodPoolView
from sart.k8s.reconcile.pods import PodPool
from sart.k8s.runtime.metrics import ControllerMetrics
from sart.k8s.runtime.outcome import API_ERRORS, Outcome, RetryTimes, classify, describe
from sart.k8s.runtime.watch import read_object, watch_kind

log = logging.getLogger("sart.k8s")
BLOCK_LABEL = "sart.terassyi.net/addressblock"  # on a pod block's BGPAdvertisement
REQUEST_LABEL = "sart.terassyi.net/blockrequest"  # on an AddressBlock: the request it served


def pod_pool(pool: dict[str, Any]) -> PodPool | None:
    """An AddressPool of type pod as the pod-address code reads it; None for other pools."""
    model = read_object(AddressPool, pool)
    if model is None or model.spec.type is not AddressType.POD:
        return None
    cidr = model.spec.cidr
    size = model.spec.block_size or (32 if cidr.version == 4 else 128)
    return PodPool(
        name=model.metadata.name, cidr=cidr, block_size=size, auto_assign=model.spec.auto_assign
    )


def pod_pool_view(pool: dict[str, Any]) -> PodPoolView | None:
    found = pod_pool(pool)
    if found is None:
        return None
    return PodPoolView(name=found.name, cidr=found.cidr, block_size=found.block_size)


def block_view(block: dict[str, Any]) -> BlockView | None:
    model = read_object(AddressBlock, block)
    if model is None or model.spec.type is not AddressType.POD:
        return None
    spec, node = model.spec, model.spec.node_ref
    if not node:
        return None
    return BlockView(name=model.metadata.name, pool=spec.pool_ref, cidr=spec.cidr, node=node)


class BlockController:
    def __init__(
        self,
        api: ApiClient,
        *,
        advertise_namespace: str = "kube-system",
        fence: Callable[[], None] = lambda: None,
        metrics: ControllerMetrics | None = None,
    ) -> None:
        self.custom = CustomObjectsApi(api)
        self.metrics = metrics or ControllerMetrics()
        self._measured: set[str] = set()
        self.fence = fence  # raises LeadershipLost once we may no longer write
        self._retries = RetryTimes()  # failed requests: when each may be tried again
        self.made: dict[str, dict[str, Any]] = {}  # request -> the AddressBlock we wrote for it
        self.waiting: set[str] = set()  # requests waiting for a block to be released
        # Blocks deleted (an agent released them): their BGPAdvertisements go at once, not
        # when the garbage collector gets to them (tens of seconds).
        self.unannounce: set[str] = set()
        self.namespace = advertise_namespace
        self.allocator = PodBlockAllocator()
        self.pools: dict[str, dict[str, Any]] = {}
        self.blocks: dict[str, dict[str, Any]] = {}
        self.requests: dict[str, dict[str, Any]] = {}
        self._synced: set[str] = set()
        self._started = asyncio.Event()
        self._wake = asyncio.Event()

    @property
    def synced(self) -> bool:
        """Whether pools, blocks and requests are listed and the blocks adopted (/readyz)."""
        return self._started.is_set()

    def _handler(self, store: dict[str, dict[str, Any]], what: str) -> Any:
        def handle(kind: str, obj: Any) -> None:
            if kind == "SYNCED":
                self._synced.add(what)
                if len(self._synced) == 3 and not self._started.is_set():
                    self._start()
                return
            name = obj["metadata"]["name"]
            if kind == "DELETED":
                store.pop(name, None)
                if what == "addressblocks":
                    self.allocator.release(name)
                    self.unannounce.add(name)
                if what == "blockrequests":
                    self._forget(name)
            else:
                store[name] = obj
                if what == "addressblocks" and self._started.is_set():
                    self._adopt_late(obj)
            if what == "addresspools" and self._started.is_set():
                self._set_pools()
            self._wake.set()

        return handle

    def _adopt_late(self, obj: dict[str, Any]) -> None:
        """A block this controller did not make appeared after its start: another writer (a
        leader that lost its Lease with a write in flight, a block made by hand). Its CIDR is
        taken from then on, so it is never handed out a second time."""
        view = block_view(obj)
        if view is None or view.name in self.allocator.blocks:
            return
        for conflict in self.allocator.adopt([view]):
            log.error("address block overlaps another", extra={"conflict": conflict})

    def _set_pools(self) -> None:
        views = [v for v in (pod_pool_view(p) for p in self.pools.values()) if v is not None]
        for problem in self.allocator.set_pools(views):
            log.warning("pod pool not used", extra={"problem": problem})

    def _start(self) -> None:
        self._set_pools()
        views = [v for v in (block_view(b) for b in self.blocks.values()) if v is not None]
        for conflict in self.allocator.adopt(views):
            log.warning("address block conflict at start-up", extra={"conflict": conflict})
        self._started.set()
        self._wake.set()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            for plural, store in (
                ("addresspools", self.pools),
                ("addressblocks", self.blocks),
                ("blockrequests", self.requests),
            ):
                tasks.create_task(watch_kind(self.custom, plural, self._handler(store, plural)))
            tasks.create_task(self._work())

    def _forget(self, request: str) -> None:
        self.waiting.discard(request)
        self.made.pop(request, None)
        self._retries.forget(request)

    async def _work(self) -> None:
        await self._started.wait()
        while True:
            await self._retries.wait(self._wake)
            # first come, first served
            waiting = sorted(
                self.requests.items(),
                key=lambda item: (item[1]["metadata"].get("creationTimestamp", ""), item[0]),
            )
            for name in sorted(self.unannounce):
                if self._retries.due(f"unannounce/{name}"):
                    await self._unannounce(name)
            if self.unannounce:
                continue  # a block of that name made again now would lose its advertisement
            for name, request in waiting:
                if not self._retries.due(name):
                    continue
                try:
                    await self._serve(name, request)
                except API_ERRORS as error:
                    self._failed(name, error)
                else:
                    self._retries.forget(name)
            self._measure()

    async def _unannounce(self, block: str) -> None:
        key = f"unannounce/{block}"
        try:
            self.fence()
            await self.custom.delete_namespaced_custom_object(
                GROUP, VERSION, self.namespace, "bgpadvertisements", block
            )
        except API_ERRORS as error:
            if classify(error) is not Outcome.DONE:
                delay = self._retries.failed(key)
                log.warning(
                    "advertisement of a released block not deleted, retrying",
                    extra={"block": block, "error": describe(error), "retry_in": round(delay, 2)},
                )
                return
        self.unannounce.discard(block)
        self._retries.forget(key)

    def _measure(self) -> None:
        """Blocks per pod pool (the series of pools that are gone removed), advertisements."""
        metrics, pools = self.metrics, self.allocator.pools
        for name, pool in pools.items():
            metrics.max_blocks.labels(name, "pod").set(pool.capacity)
            metrics.allocated_blocks.labels(name, "pod").set(len(pool))
        for name in self._measured - set(pools):
            metrics.max_blocks.remove(name, "pod")
            metrics.allocated_blocks.remove(name, "pod")
        self._measured = set(pools)
        metrics.advertisements.labels("pod").set(len(self.allocator.blocks))

    def _failed(self, name: str, error: BaseException) -> None:
        # A 404 here is not the request being gone (that delete tolerates 404 itself): the
        # advertisement's namespace may not exist yet. Temporary.
        outcome = classify(error, gone=Outcome.TEMPORARY)
        if outcome is Outcome.PERMANENT:
            log.error("block request refused", extra={"request": name, "error": describe(error)})
            self._retries.failed(name, at_least=30.0)  # fixed RBAC or webhook: tried, slowly
            return
        delay = self._retries.failed(name)  # REDO too: our own write may not be seen yet
        log.warning(
            "block request not served, retrying",
            extra={"request": name, "error": describe(error), "retry_in": round(delay, 2)},
        )

    def _block_for(self, request: str) -> dict[str, Any] | None:
        """The AddressBlock already made for this request, if any (ours, seen or not yet)."""
        made = self.made.get(request)
        if made is not None and made["metadata"]["name"] in self.allocator.blocks:
            return made
        for block in self.blocks.values():
            if (block["metadata"].get("labels") or {}).get(REQUEST_LABEL) == request:
                return block
        return None

    async def _serve(self, name: str, request: dict[str, Any]) -> None:
        made = self._block_for(name)
        if made is None:
            made = await self._allocate(name, request)
            if made is None:
                return  # waits for a block to be released
        block = self.allocator.blocks.get(made["metadata"]["name"])
        if block is None:
            return  # deleted meanwhile: served again when the watch says so
        advertisement = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "BGPAdvertisement",
            "metadata": {
                "name": block.name,
                "labels": {BLOCK_LABEL: block.name},
                "ownerReferences": [
                    {
                        "apiVersion": f"{GROUP}/{VERSION}",
                        "kind": "AddressBlock",
                        "name": block.name,
                        "uid": made["metadata"]["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": {
                "cidr": str(block.cidr),
                "type": "pod",
                "protocol": f"ipv{block.cidr.version}",
                "nodes": [block.node],
            },
        }
        self.fence()
        try:
            await self.custom.create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, "bgpadvertisements", advertisement
            )
        except ApiException as error:
            if error.status != 409:  # made before we failed or died: fine as it is
                raise
        self.fence()
        try:
            await self.custom.delete_cluster_custom_object(GROUP, VERSION, "blockrequests", name)
        except ApiException as error:
            if error.status != 404:
                raise
        self.requests.pop(name, None)
        self._forget(name)

    async def _allocate(self, name: str, request: dict[str, Any]) -> dict[str, Any] | None:
        spec = request.get("spec", {})
        try:
            block = self.allocator.request(spec.get("pool", ""), spec.get("node", ""))
        except IpamError as error:
            if name not in self.waiting:
                log.warning("block request waits", extra={"request": name, "reason": str(error)})
            self.waiting.add(name)
            return None  # served when a block is released
        self.waiting.discard(name)
        view = self.allocator.views[block.pool]
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "AddressBlock",
            "metadata": {"name": block.name, "labels": {REQUEST_LABEL: name}},
            "spec": {
                "cidr": str(block.cidr),
                "type": "pod",
                "poolRef": block.pool,
                "nodeRef": block.node,
                "autoAssign": bool(self.pools[block.pool]["spec"].get("autoAssign", False)),
            },
        }
        try:
            self.fence()
            made: dict[str, Any] = await self.custom.create_cluster_custom_object(
                GROUP, VERSION, "addressblocks", body
            )
        except BaseException:
            self.allocator.release(block.name)  # nothing is lost
            raise
        self.made[name] = made
        log.info(
            "address block allocated",
            extra={"block": block.name, "cidr": str(block.cidr), "node": block.node,
                   "pool": view.name, "request": name},
        )  # fmt: skip
        return made
