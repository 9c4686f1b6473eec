"""Releases the original sart's finalizers (and the one earlier versions of sart-controller put
on Services) from objects being deleted (`sart.k8s.reconcile.legacy` decides), so that
switching from the original never hangs a delete. Runs in sart-controller beside the other
controllers; one watch per kind the original put finalizers on, each handing on the apiserver's
JSON (no models built)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from kubernetes_asyncio.client import ApiClient, CoreV1Api, CustomObjectsApi, DiscoveryV1Api

from sart.k8s.models import GROUP, VERSION
from sart.k8s.reconcile.legacy import released
from sart.k8s.runtime import MERGE
from sart.k8s.runtime.outcome import API_ERRORS, Outcome, RetryTimes, classify, describe
from sart.k8s.runtime.watch import SharedWatches, object_key, object_meta

log = logging.getLogger("sart.k8s")
CLUSTER_KINDS = (
    "addresspools", "addressblocks", "blockrequests", "clusterbgps", "nodebgps", "bgppeers",
    "bgppeertemplates",
)  # fmt: skip
Patch = Callable[[dict[str, Any]], Awaitable[Any]]


class LegacyFinalizers:
    def __init__(
        self,
        api: ApiClient,
        *,
        fence: Callable[[], None] = lambda: None,
        watches: SharedWatches | None = None,
    ) -> None:
        self.core, self.custom = CoreV1Api(api), CustomObjectsApi(api)
        self.discovery = DiscoveryV1Api(api)
        self.fence = fence
        self.released = 0  # objects released (tests wait on this)
        self._todo: dict[str, tuple[Patch, dict[str, Any]]] = {}  # key -> (patch, body)
        self._retries = RetryTimes()
        self._wake = asyncio.Event()
        # The process's shared watches (run by their owner), or our own (run by us).
        self._own_watches = watches is None
        self.watches = watches if watches is not None else SharedWatches()
        self._watch()

    def _handler(self, what: str, patcher: Callable[[Any], Patch]) -> Callable[[str, Any], None]:
        def handle(kind: str, obj: Any) -> None:
            if kind in ("SYNCED", "DELETED"):
                if kind == "DELETED":
                    self._todo.pop(f"{what}:{object_key(obj)}", None)
                return
            meta = object_meta(obj)
            keep = released(meta.finalizers, meta.deleting)
            if keep is None:
                return
            body = {"metadata": {"finalizers": list(keep) or None,
                                 "resourceVersion": meta.resource_version}}  # fmt: skip
            self._todo[f"{what}:{object_key(obj)}"] = (patcher(obj), body)
            self._wake.set()

        return handle

    def _watch(self) -> None:
        def core_patch(method: Callable[..., Awaitable[Any]]) -> Callable[[Any], Patch]:
            def patcher(obj: Any) -> Patch:
                meta = object_meta(obj)
                where = (meta.name, meta.namespace) if meta.namespace else (meta.name,)
                return lambda body: method(*where, body, **MERGE)

            return patcher

        def custom_patch(plural: str) -> Callable[[Any], Patch]:
            def patcher(obj: Any) -> Patch:
                meta = obj["metadata"]
                if meta.get("namespace"):
                    return lambda body: self.custom.patch_namespaced_custom_object(
                        GROUP, VERSION, meta["namespace"], plural, meta["name"], body, **MERGE
                    )
                return lambda body: self.custom.patch_cluster_custom_object(
                    GROUP, VERSION, plural, meta["name"], body, **MERGE
                )

            return patcher

        for what, listing, method in (
            ("services", self.core.list_service_for_all_namespaces,
             self.core.patch_namespaced_service),
            ("endpointslices", self.discovery.list_endpoint_slice_for_all_namespaces,
             self.discovery.patch_namespaced_endpoint_slice),
            ("nodes", self.core.list_node, self.core.patch_node),
        ):  # fmt: skip
            self.watches.add(listing, self._handler(what, core_patch(method)), what, raw=True)
        for plural in (*CLUSTER_KINDS, "bgpadvertisements"):
            self.watches.add_kind(self.custom, plural, self._handler(plural, custom_patch(plural)))

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            if self._own_watches:
                tasks.create_task(self.watches.run())
            tasks.create_task(self._work())

    async def _work(self) -> None:
        while True:
            await self._retries.wait(self._wake)
            for key, (patch, body) in list(self._todo.items()):
                if not self._retries.due(key):
                    continue
                self.fence()
                try:
                    await patch(body)
                except API_ERRORS as error:
                    outcome = classify(error)
                    if outcome is Outcome.DONE:
                        self._forget(key)
                    elif outcome is not Outcome.REDO:  # REDO: the watch brings the new version
                        self._retries.failed(key)
                        log.warning("original finalizer not released",
                                    extra={"object": key, "error": describe(error)})  # fmt: skip
                    continue
                log.info("released the original sart's finalizers", extra={"object": key})
                self.released += 1
                self._forget(key)

    def _forget(self, key: str) -> None:
        self._todo.pop(key, None)
        self._retries.forget(key)
