"""The pod-block side of the controller: BlockRequests in, AddressBlocks and their
BGPAdvertisements out (`sart.k8s.reconcile.blocks` decides)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from kubernetes_asyncio.client import ApiClient, CustomObjectsApi
from kubernetes_asyncio.client.exceptions import ApiException

from sart.errors import IpamError
from sart.k8s.models import GROUP, VERSION, AddressBlock, AddressPool, AddressType
from sart.k8s.reconcile.blocks import BlockView, PodBlockAllocator, PodPoolView
from sart.k8s.runtime.watch import read_object, watch_kind

log = logging.getLogger("sart.k8s")
BLOCK_LABEL = "sart.terassyi.net/addressblock"  # on a pod block's BGPAdvertisement


def pod_pool_view(pool: dict[str, Any]) -> PodPoolView | None:
    model = read_object(AddressPool, pool)
    if model is None or model.spec.type is not AddressType.POD:
        return None
    cidr = model.spec.cidr
    size = model.spec.block_size or (32 if cidr.version == 4 else 128)
    return PodPoolView(name=model.metadata.name, cidr=cidr, block_size=size)


def block_view(block: dict[str, Any]) -> BlockView | None:
    model = read_object(AddressBlock, block)
    if model is None or model.spec.type is not AddressType.POD:
        return None
    spec, node = model.spec, model.spec.node_ref
    if not node:
        return None
    return BlockView(name=model.metadata.name, pool=spec.pool_ref, cidr=spec.cidr, node=node)


class BlockController:
    def __init__(self, api: ApiClient, *, advertise_namespace: str = "kube-system") -> None:
        self.custom = CustomObjectsApi(api)
        self.namespace = advertise_namespace
        self.allocator = PodBlockAllocator()
        self.pools: dict[str, dict[str, Any]] = {}
        self.blocks: dict[str, dict[str, Any]] = {}
        self.requests: dict[str, dict[str, Any]] = {}
        self._synced: set[str] = set()
        self._started = asyncio.Event()
        self._wake = asyncio.Event()

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
            else:
                store[name] = obj
            if what == "addresspools" and self._started.is_set():
                self._set_pools()
            self._wake.set()

        return handle

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

    async def _work(self) -> None:
        await self._started.wait()
        while True:
            await self._wake.wait()
            self._wake.clear()
            # first come, first served
            waiting = sorted(
                self.requests.items(),
                key=lambda item: (item[1]["metadata"].get("creationTimestamp", ""), item[0]),
            )
            for name, request in waiting:
                try:
                    await self._serve(name, request)
                except ApiException as error:
                    status = error.status
                    log.warning(
                        "block request not served", extra={"request": name, "status": status}
                    )

    async def _serve(self, name: str, request: dict[str, Any]) -> None:
        spec = request.get("spec", {})
        try:
            block = self.allocator.request(spec.get("pool", ""), spec.get("node", ""))
        except IpamError as error:
            log.warning("block request waits", extra={"request": name, "reason": str(error)})
            return  # served when a block is released
        view = self.allocator.views[block.pool]
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "AddressBlock",
            "metadata": {"name": block.name},
            "spec": {
                "cidr": str(block.cidr),
                "type": "pod",
                "poolRef": block.pool,
                "nodeRef": block.node,
                "autoAssign": bool(self.pools[block.pool]["spec"].get("autoAssign", False)),
            },
        }
        try:
            made = await self.custom.create_cluster_custom_object(
                GROUP, VERSION, "addressblocks", body
            )
        except ApiException:
            self.allocator.release(block.name)  # nothing is lost
            raise
        log.info(
            "address block allocated",
            extra={"block": block.name, "cidr": str(block.cidr), "node": block.node,
                   "pool": view.name},
        )  # fmt: skip
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
        await self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "bgpadvertisements", advertisement
        )
        await self.custom.delete_cluster_custom_object(GROUP, VERSION, "blockrequests", name)
        self.requests.pop(name, None)
