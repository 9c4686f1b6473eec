"""The LoadBalancer controller: watches Services and AddressPools, runs the pure reconciler
(`sart.k8s.reconcile.loadbalancer`) and writes what it decided.

Only what is ours is written: a Service's status.loadBalancer, its BGPAdvertisements, Events,
AddressPool status; no finalizer: the Services' status is the truth about what is allocated
(adopted from the listing at start), and a Service that is gone (its DELETED event, or missing
from a relist) has its addresses released and its advertisements deleted. So a new Service
costs three writes: its status, its advertisement, one Event. Decisions are made one Service
at a time, in order, in memory (so two Services never get one address); the writes run
concurrently with no client-side rate limit, at most one in flight per Service, a Service's
status before anything else of it. Desired and observed status are compared the way the
apiserver stores them (it fills in `ipMode: VIP`), so nothing is written twice. A conflict
(409) is retried at once on fresh state.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import attrs
from kubernetes_asyncio.client import ApiClient, CoreV1Api, CustomObjectsApi, DiscoveryV1Api
from kubernetes_asyncio.client.exceptions import ApiException

from sart.k8s.attributes import Attributes
from sart.k8s.models import GROUP, VERSION, AddressPool, AddressType
from sart.k8s.reconcile.loadbalancer import (
    EndpointView,
    Event,
    LoadBalancerAllocator,
    PoolView,
    ServicePlan,
    ServiceView,
    advertisements,
    announcing_nodes,
    is_ours,
)
from sart.k8s.runtime import MERGE
from sart.k8s.runtime.calls import call_raw
from sart.k8s.runtime.events import EventLane, EventRecorder
from sart.k8s.runtime.metrics import ControllerMetrics
from sart.k8s.runtime.outcome import API_ERRORS, KeyedBackoff, Outcome, classify, describe
from sart.k8s.runtime.watch import SharedWatches, read_object

log = logging.getLogger("sart.k8s")

COMPONENT = "sart-controller"
SERVICE_LABEL = "sart.terassyi.net/service"  # on our BGPAdvertisements: the Service's name
POOL_LABEL = "sart.terassyi.net/addresspool"  # on an aggregating pool's: the pool's name
AGGREGATES = "aggregates"  # the backoff key of the aggregates' writes
SLICE_SERVICE_LABEL = "kubernetes.io/service-name"
WRITERS = 64  # concurrent status writes to the apiserver
FOLLOWERS = 4  # concurrent writes of what follows a status: advertisements, Events
RETRY_DELAY = 0.5
POOL_STATUS_EVERY = 10.0  # seconds between AddressPool status writes while the counts change
RETRY_MAX = 60.0
# Events wait until no Service write has begun for this long (a burst's, until its end)
EVENTS_QUIET = 0.5


def service_view(service: dict[str, Any]) -> ServiceView:
    """A Service (as the apiserver's JSON) as the reconciler reads it."""
    meta, spec = service["metadata"], service.get("spec") or {}
    balancer = (service.get("status") or {}).get("loadBalancer") or {}
    ingress = tuple(i["ip"] for i in balancer.get("ingress") or () if i.get("ip"))
    return ServiceView(
        namespace=meta["namespace"],
        name=meta["name"],
        type=spec.get("type") or "ClusterIP",
        load_balancer_class=spec.get("loadBalancerClass"),
        load_balancer_ip=spec.get("loadBalancerIP") or "",
        annotations=dict(meta.get("annotations") or {}),
        labels=dict(meta.get("labels") or {}),
        ip_families=tuple(spec.get("ipFamilies") or ("IPv4",)),
        ingress=ingress,
        deleting=bool(meta.get("deletionTimestamp")),
        uid=meta.get("uid") or "",
        external_traffic_policy=spec.get("externalTrafficPolicy") or "Cluster",
        ports=tuple((p.get("protocol") or "TCP", p["port"]) for p in spec.get("ports") or ()),
        selector=dict(spec.get("selector") or {}),
    )


def endpoint_views(endpoint_slice: dict[str, Any]) -> list[EndpointView]:
    """The endpoints of an EndpointSlice (as the apiserver's JSON)."""
    views = []
    for endpoint in endpoint_slice.get("endpoints") or ():
        conditions = endpoint.get("conditions") or {}
        views.append(
            EndpointView(
                node=endpoint.get("nodeName") or "",
                ready=bool(conditions.get("ready")),
                serving=bool(conditions.get("serving")),
                terminating=bool(conditions.get("terminating")),
            )
        )
    return views


def pool_view(pool: dict[str, Any]) -> PoolView | None:
    """A service AddressPool as the allocator sees it; None for pod pools or bad ones."""
    model = read_object(AddressPool, pool)
    if model is None or model.spec.type is not AddressType.SERVICE:
        return None
    spec = model.spec
    bgp = spec.bgp_attributes
    attributes = Attributes()
    if bgp is not None:
        attributes = Attributes.of(
            communities=bgp.communities or (),
            large_communities=bgp.large_communities or (),
            local_pref=bgp.local_pref,
            med=bgp.med,
        )
    return PoolView(
        name=model.metadata.name,
        cidr=spec.cidr,
        auto_assign=spec.auto_assign,
        namespaces=spec.namespaces or (),
        service_selector=dict(spec.service_selector or {}),
        attributes=attributes,
        aggregation_length=spec.aggregation_length,
    )


def _ingress_body(plan: ServicePlan) -> dict[str, Any]:
    ingress = [{"ip": ip, "ipMode": "VIP"} for ip in plan.ingress]
    return {"status": {"loadBalancer": {"ingress": ingress or None}}}


async def _wait_for(crash: asyncio.Future[None]) -> None:
    await crash


def _no_fence() -> None:
    """Without leader election every write is ours to make."""


class LoadBalancerController:
    def __init__(
        self,
        api: ApiClient,
        metrics: ControllerMetrics | None = None,
        *,
        fence: Callable[[], None] = _no_fence,
        aggregate_namespace: str = "kube-system",
        watches: SharedWatches | None = None,
    ) -> None:
        self.metrics = metrics or ControllerMetrics()
        self.fence = fence  # raises LeadershipLost once we may no longer write
        self.core = CoreV1Api(api)
        self.custom = CustomObjectsApi(api)
        self.discovery = DiscoveryV1Api(api)
        self.allocator = LoadBalancerAllocator()
        self.bgp_nodes: set[str] = set()  # nodes with a NodeBGP: where speakers run
        self.slices: dict[str, dict[str, list[EndpointView]]] = {}  # Service key -> slices
        self.announced: dict[str, dict[str, dict[str, Any]]] = {}  # Service key -> name -> spec
        self.services: dict[str, ServiceView] = {}
        # The view each Service was last decided on, with the status we wrote for it: a watch
        # event that shows just that (our own write coming back) needs no decision.
        self._decided: dict[str, ServiceView] = {}
        self.pools: dict[str, dict[str, Any]] = {}
        # Aggregating pools: the nodes each Service is announced from, the advertisements of
        # the covering prefixes (in aggregate_namespace, owned by their pool) by name.
        self.aggregate_namespace = aggregate_namespace
        self.nodes_of: dict[str, tuple[str, ...]] = {}
        self.aggregated: dict[str, dict[str, Any]] = {}
        self._aggregates_dirty = asyncio.Event()
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._writing: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()
        self._writers = asyncio.Semaphore(WRITERS)  # status writes
        self._followers = asyncio.Semaphore(FOLLOWERS)  # advertisements and Events
        self._crash: asyncio.Future[None] | None = None  # a detached write failed for good
        # Every kind the announcements are computed from: a controller that started deciding
        # before the NodeBGPs or the EndpointSlices were listed would write advertisements
        # naming too few nodes, and the agents would withdraw (found by the cluster lab's
        # controller restart: a next hop off the spines for ~0.1 s).
        self._synced = {
            "services": False,
            "pools": False,
            "advertisements": False,
            "aggregates": False,
            "nodebgps": False,
            "slices": False,
        }
        self._started = asyncio.Event()
        self._pool_counts: dict[str, tuple[int, int]] = {}
        self._backoff = KeyedBackoff(base=RETRY_DELAY, cap=RETRY_MAX)
        self.events = EventRecorder(self.core, COMPONENT, fence=fence)
        self._last_write = 0.0  # when a Service's write last began (monotonic clock)
        self.event_lane = EventLane(self.events, self._writes_recent)
        # The process's shared watches (run by their owner), or our own (run by us).
        self._own_watches = watches is None
        self.watches = watches if watches is not None else SharedWatches()
        self.watches.add_kind(self.custom, "addresspools", self._on_pool)
        self.watches.add_kind(self.custom, "nodebgps", self._on_node_bgp)
        self.watches.add_kind(self.custom, "bgpadvertisements", self._on_advertisement)
        self.watches.add_kind(self.custom, "bgpadvertisements", self._on_aggregate)
        self.watches.add(
            self.core.list_service_for_all_namespaces, self._on_service, "services", raw=True
        )
        self.watches.add(
            self.discovery.list_endpoint_slice_for_all_namespaces,
            self._on_slice,
            "endpointslices",
            raw=True,
        )

    @property
    def synced(self) -> bool:
        """Whether Services, AddressPools and BGPAdvertisements are listed and the addresses
        in use adopted: the controller acts from then on (for /readyz)."""
        return self._started.is_set()

    # --- events from the watches ----------------------------------------------------------

    def _on_service(self, kind: str, service: Any) -> None:
        if self._listed(kind, "services"):
            return
        meta = service["metadata"]
        key = f"{meta['namespace']}/{meta['name']}"
        if kind == "DELETED":
            self.services.pop(key, None)
            self._decided.pop(key, None)
        else:
            view = self.services[key] = service_view(service)
            if self._decided.get(key) == view:
                return
        if self._started.is_set():
            self.enqueue(key)

    def _on_pool(self, kind: str, pool: Any) -> None:
        if kind == "SYNCED":
            self._apply_pools()  # before the controller can start: it allocates from them
        if self._listed(kind, "pools"):
            return
        name = pool["metadata"]["name"]
        if kind == "DELETED":
            self.pools.pop(name, None)
            self._pool_counts.pop(name, None)
        else:
            self.pools[name] = pool
            status = pool.get("status") or {}
            allocated, free = status.get("allocatedAddresses"), status.get("freeAddresses")
            if allocated is not None and free is not None:
                # What a controller before us wrote: a restart writes it again only if the
                # counts differ. Ours, once written, is newer than what the watch brings.
                self._pool_counts.setdefault(name, (allocated, free))
        if self._started.is_set():
            self._apply_pools()
            self._enqueue_balancers()

    def _enqueue_balancers(self) -> None:
        for key, view in self.services.items():
            if view.type == "LoadBalancer":
                self.enqueue(key)

    def _on_node_bgp(self, kind: str, node_bgp: Any) -> None:
        if self._listed(kind, "nodebgps"):
            return
        name = node_bgp["metadata"]["name"]
        if kind == "DELETED":
            self.bgp_nodes.discard(name)
        else:
            self.bgp_nodes.add(name)
        if self._started.is_set():
            self._enqueue_balancers()

    def _on_slice(self, kind: str, endpoint_slice: Any) -> None:
        if self._listed(kind, "slices"):
            return
        meta = endpoint_slice["metadata"]
        service = (meta.get("labels") or {}).get(SLICE_SERVICE_LABEL)
        if not service:
            return
        key = f"{meta['namespace']}/{service}"
        slices = self.slices.setdefault(key, {})
        if kind == "DELETED":
            slices.pop(meta["name"], None)
        else:
            slices[meta["name"]] = endpoint_views(endpoint_slice)
        view = self.services.get(key)
        if self._started.is_set() and view is not None and view.external_traffic_policy == "Local":
            self.enqueue(key)  # only Local policy announces from where the endpoints are

    def _on_advertisement(self, kind: str, advertisement: Any) -> None:
        if self._listed(kind, "advertisements"):
            return
        meta = advertisement["metadata"]
        service = (meta.get("labels") or {}).get(SERVICE_LABEL)
        if not service:
            return
        key = f"{meta['namespace']}/{service}"
        mine = self.announced.setdefault(key, {})
        name, spec = meta["name"], advertisement.get("spec", {})
        if kind == "DELETED":
            changed = mine.pop(name, None) is not None
        else:
            changed = mine.get(name) != spec  # not our own write coming back
            mine[name] = spec
        if changed and self._started.is_set():
            self.enqueue(key)

    def _on_aggregate(self, kind: str, advertisement: Any) -> None:
        if self._listed(kind, "aggregates"):
            return
        meta = advertisement["metadata"]
        if meta.get("namespace") != self.aggregate_namespace:
            return
        if POOL_LABEL not in (meta.get("labels") or {}):
            return  # a pod block's
        if kind == "DELETED":
            self.aggregated.pop(meta["name"], None)
        else:
            self.aggregated[meta["name"]] = advertisement.get("spec", {})
        self._aggregates_dirty.set()

    def _desired_advertisements(
        self, view: ServiceView, plan: ServicePlan
    ) -> dict[str, dict[str, Any]]:
        if not plan.addresses or view.deleting or not is_ours(view):
            self._set_nodes(view.key, None)
            return {}
        endpoints = [e for views in self.slices.get(view.key, {}).values() for e in views]
        nodes = announcing_nodes(view.external_traffic_policy, self.bgp_nodes, endpoints)
        self._set_nodes(view.key, nodes)
        return advertisements(view, plan.addresses, nodes, plan.attributes)

    def _set_nodes(self, key: str, nodes: tuple[str, ...] | None) -> None:
        """Record where a Service is announced from; the aggregates are looked at again."""
        if nodes is None:
            self.nodes_of.pop(key, None)
        else:
            self.nodes_of[key] = nodes
        self._aggregates_dirty.set()

    def _apply_pools(self) -> None:
        views = [v for v in (pool_view(p) for p in self.pools.values()) if v is not None]
        for problem in self.allocator.set_pools(views):
            log.warning("address pool not used", extra={"problem": problem})

    def _listed(self, kind: str, what: str) -> bool:
        """Whether the event is a watch's SYNCED marker: `what` is listed, and the controller
        starts once every kind is."""
        if kind != "SYNCED":
            return False
        self._synced[what] = True
        self._maybe_start()
        return True

    def _maybe_start(self) -> None:
        if self._started.is_set() or not all(self._synced.values()):
            return
        views = list(self.services.values())
        for conflict in self.allocator.adopt(views):
            log.warning("allocation conflict at start-up", extra={"conflict": conflict})
        log.info(
            "controller synced",
            extra={"services": len(views), "adopted": len(self.allocator.owned)},
        )
        self._started.set()
        for key in self.services:
            self.enqueue(key)
        for key in self.announced:
            if key not in self.services:
                self.enqueue(key)  # deleted while no controller ran: its advertisements go

    def idle(self, key: str) -> bool:
        """Whether nothing is queued or being written for the Service, and no Event (of any
        Service) waits to be written (tests wait on this)."""
        return (
            key not in self._queued
            and key not in self._writing
            and key not in self._again
            and not self.event_lane.waiting
        )

    def enqueue(self, key: str) -> None:
        if key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    # --- the loop -------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            for task in list(self._writing.values()):
                task.cancel()
            await asyncio.gather(*self._writing.values(), return_exceptions=True)

    async def _run(self) -> None:
        crash = self._crash = asyncio.get_running_loop().create_future()
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(_wait_for(crash))
            if self._own_watches:
                tasks.create_task(self.watches.run())
            tasks.create_task(self._work())
            tasks.create_task(self._pool_status_loop())
            tasks.create_task(self._aggregate_loop())
            tasks.create_task(self.event_lane.run())

    async def _work(self) -> None:
        await self._started.wait()
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            view = self.services.get(key)
            writing = self._writing.get(key)
            if writing is not None and view is None:
                # Gone: whatever it was writing (or waiting to retry) is moot, and its
                # addresses must not wait for that.
                writing.cancel()
                await asyncio.gather(writing, return_exceptions=True)
            elif writing is not None:
                self._again.add(key)  # reconcile once its write is done
                continue
            if view is None:
                self._backoff.reset(key)
                self._set_nodes(key, None)
                released = self.allocator.release(key)
                if released:
                    self._wake_pending()
                if self.announced.get(key):
                    # Its BGPAdvertisements are owned by it, but the garbage collector may take
                    # many seconds: withdraw them now.
                    namespace, name = key.split("/", 1)
                    gone = ServiceView(namespace=namespace, name=name)
                    nothing = ServicePlan(addresses=())
                    self._start_write(key, gone, nothing, {})
                continue
            held = key in self.allocator.owned
            began = time.perf_counter()
            plan = self.allocator.reconcile(view)
            self.metrics.duration.observe(time.perf_counter() - began)
            self.metrics.reconciliations.labels("Service").inc()
            self.metrics.pending.set(len(self.allocator.pending))
            if held and key not in self.allocator.owned:
                self._wake_pending()
            wanted = self._desired_advertisements(view, plan)
            self._decided[key] = view
            if self._needs_write(view, plan) or wanted != self.announced.get(key, {}):
                if self._writes_status(view, plan):
                    self._decided[key] = attrs.evolve(view, ingress=plan.ingress)
                self._start_write(key, view, plan, wanted)

    def _start_write(
        self, key: str, view: ServiceView, plan: ServicePlan, wanted: dict[str, dict[str, Any]]
    ) -> None:
        self._last_write = time.monotonic()
        self._writing[key] = asyncio.create_task(self._write(key, view, plan, wanted))

    def _writes_recent(self) -> bool:
        """Whether Services are queued or being written, or one's write began less than
        EVENTS_QUIET ago: what holds the Events back (events.EventLane). Services created
        one after another keep it true, so their Events follow the burst."""
        return bool(self._writing or self._queued) or (
            time.monotonic() - self._last_write < EVENTS_QUIET
        )

    def _wake_pending(self) -> None:
        for key in sorted(self.allocator.pending):
            self.enqueue(key)

    def _needs_write(self, view: ServiceView, plan: ServicePlan) -> bool:
        return bool(
            plan.events or ((is_ours(view) or view.ingress) and view.ingress != plan.ingress)
        )

    @staticmethod
    def _writes_status(view: ServiceView, plan: ServicePlan) -> bool:
        return view.ingress != plan.ingress and not view.deleting

    async def _write(
        self, key: str, view: ServiceView, plan: ServicePlan, wanted: dict[str, dict[str, Any]]
    ) -> None:
        try:
            try:
                outcome = await self._try_write(key, view, plan, wanted)
            except Exception as error:
                # Not an apiserver answer: a bug of ours, or LeadershipLost from the fence.
                # The write runs detached from the task group: hand it over, the controller
                # stops.
                if self._crash is not None and not self._crash.done():
                    self._crash.set_exception(error)
                return
            if outcome is not Outcome.DONE:
                self._decided.pop(key, None)  # not written: any news is worth a decision
            if outcome is Outcome.REDO:
                self._again.add(key)  # changed meanwhile: decide again on fresh state
            elif outcome is Outcome.TEMPORARY:
                # Back off per Service, jittered: a write that keeps failing (the apiserver
                # down, a namespace being deleted) must not load the apiserver.
                await asyncio.sleep(self._backoff.next(key))
                self._again.add(key)
            elif outcome is Outcome.DONE:
                self._backoff.reset(key)
            # PERMANENT: said in a Warning Event; tried again when the Service changes.
        finally:
            del self._writing[key]
            if key in self._again:
                self._again.discard(key)
                self.enqueue(key)

    async def _try_write(
        self, key: str, view: ServiceView, plan: ServicePlan, wanted: dict[str, dict[str, Any]]
    ) -> Outcome:
        """Apply the plan; the outcome of the first write that failed, else DONE."""
        try:
            if self._writes_status(view, plan):
                async with self._writers:  # what the user waits for, first
                    self.fence()
                    written = await call_raw(
                        self.core.patch_namespaced_service_status,
                        view.name,
                        view.namespace,
                        _ingress_body(plan),
                        **MERGE,
                    )
                if self.services.get(key) is view and written:
                    # The answer is the Service as now stored. Until the watch brings it, a
                    # reconcile (the EndpointSlice made meanwhile, say) would read the view
                    # without the address and write the status again.
                    self.services[key] = service_view(written)
            async with self._followers:
                await self._announce(view, wanted)
                for event in plan.events:
                    self._record(view, event)
        except API_ERRORS as error:
            outcome = classify(error)
            if outcome is Outcome.DONE:
                return outcome  # the Service is gone meanwhile: the watch tells us
            self.metrics.failures.labels("Service", describe(error)).inc()
            if outcome is Outcome.PERMANENT:
                log.error(
                    "write refused", extra={"service": key, "error": describe(error),
                                            "reason": getattr(error, "reason", "")},
                )  # fmt: skip
                message = f"the apiserver refused a write: {describe(error)} {error}"
                self._record(view, Event("Warning", "WriteRefused", message[:1000]))
            elif outcome is Outcome.TEMPORARY:
                log.warning(
                    "write failed, retrying", extra={"service": key, "error": describe(error)}
                )
            return outcome
        return Outcome.DONE

    async def _patch_advertisement(self, namespace: str, name: str, spec: dict[str, Any]) -> None:
        await call_raw(
            self.custom.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            "bgpadvertisements",
            name,
            {"spec": spec},
            **MERGE,
        )

    async def _announce(self, view: ServiceView, wanted: dict[str, dict[str, Any]]) -> None:
        """Make the Service's BGPAdvertisements these (owned by it, so they go with it). What
        is written is recorded at once (controller-runtime's expectations): a second pass
        before the watch shows our own write must not POST it again."""
        have = dict(self.announced.get(view.key, {}))
        mine = self.announced.setdefault(view.key, {})
        plural = "bgpadvertisements"
        for name, spec in wanted.items():
            if name not in have:
                body = {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "BGPAdvertisement",
                    "metadata": {
                        "name": name,
                        "labels": {SERVICE_LABEL: view.name},
                        "ownerReferences": [
                            {
                                "apiVersion": "v1",
                                "kind": "Service",
                                "name": view.name,
                                "uid": view.uid,
                                "controller": True,
                                "blockOwnerDeletion": True,
                            }
                        ],
                    },
                    "spec": spec,
                }
                self.fence()
                try:
                    await call_raw(
                        self.custom.create_namespaced_custom_object,
                        GROUP,
                        VERSION,
                        view.namespace,
                        plural,
                        body,
                    )
                except ApiException as error:
                    if error.status != 409:
                        raise
                    await self._patch_advertisement(view.namespace, name, spec)
                mine[name] = spec
            elif have[name] != spec:
                self.fence()
                await self._patch_advertisement(view.namespace, name, spec)
                mine[name] = spec
        for name in set(have) - set(wanted):
            self.fence()
            try:
                await call_raw(
                    self.custom.delete_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    view.namespace,
                    plural,
                    name,
                )
            except ApiException as error:
                if error.status != 404:
                    raise
            mine.pop(name, None)

    # --- aggregating pools ----------------------------------------------------------------

    async def _aggregate_loop(self) -> None:
        """Keep the aggregating pools' BGPAdvertisements as the allocations say, whenever an
        allocation, a Service's nodes or a pool change; failed writes back off."""
        await self._started.wait()
        while True:
            await self._aggregates_dirty.wait()
            self._aggregates_dirty.clear()
            try:
                await self._write_aggregates()
            except API_ERRORS as error:
                log.warning(
                    "aggregate advertisements not written, retrying",
                    extra={"error": describe(error)},
                )
                await asyncio.sleep(self._backoff.next(AGGREGATES))
                self._aggregates_dirty.set()
                continue
            self._backoff.reset(AGGREGATES)

    async def _write_aggregates(self) -> None:
        wanted = self.allocator.aggregate_advertisements(self.nodes_of)
        namespace, plural = self.aggregate_namespace, "bgpadvertisements"
        for name, (pool, spec) in wanted.items():
            have = self.aggregated.get(name)
            if have == spec:
                continue
            self.fence()
            if have is not None:
                await self._patch_advertisement(namespace, name, spec)
            else:
                owner = self.pools.get(pool, {}).get("metadata", {})
                body = {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "BGPAdvertisement",
                    "metadata": {
                        "name": name,
                        "labels": {POOL_LABEL: pool},
                        "ownerReferences": [
                            {
                                "apiVersion": f"{GROUP}/{VERSION}",
                                "kind": "AddressPool",
                                "name": pool,
                                "uid": owner.get("uid", ""),
                            }
                        ]
                        if owner.get("uid")
                        else None,
                    },
                    "spec": spec,
                }
                try:
                    await call_raw(
                        self.custom.create_namespaced_custom_object,
                        GROUP,
                        VERSION,
                        namespace,
                        plural,
                        body,
                    )
                except ApiException as error:
                    if error.status != 409:
                        raise
                    await self._patch_advertisement(namespace, name, spec)
            self.aggregated[name] = spec
        for name in set(self.aggregated) - set(wanted):
            self.fence()
            try:
                await call_raw(
                    self.custom.delete_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    namespace,
                    plural,
                    name,
                )
            except ApiException as error:
                if error.status != 404:
                    raise
            self.aggregated.pop(name, None)

    def _record(self, view: ServiceView, event: Event) -> None:
        self.fence()  # before the log line: a fenced ex-leader must not say it allocated
        log.info(event.message, extra={"service": view.key, "reason": event.reason})
        involved = {"apiVersion": "v1", "kind": "Service", "namespace": view.namespace,
                    "name": view.name, "uid": view.uid}  # fmt: skip
        self.event_lane.post(involved, event.type, event.reason, event.message)

    def _measure(self, measured: set[str]) -> None:
        """Pool gauges (a service pool is one block, as in the original), the series of
        pools that are gone removed; our advertisements."""
        metrics = self.metrics
        pools = set(self.allocator.pools)
        for name in pools:
            pool = self.allocator.allocator.pool(name)
            metrics.allocated.labels(name).set(pool.used)
            metrics.free.labels(name).set(pool.free)
            metrics.max_blocks.labels(name, "service").set(1)
            metrics.allocated_blocks.labels(name, "service").set(1)
        for name in measured - pools:
            for gauge in (metrics.allocated, metrics.free):
                gauge.remove(name)
            for gauge in (metrics.max_blocks, metrics.allocated_blocks):
                gauge.remove(name, "service")
        measured.clear()
        measured.update(pools)
        count = sum(len(names) for names in self.announced.values())
        metrics.advertisements.labels("service").set(count)

    async def _pool_status_loop(self) -> None:
        """AddressPool status: allocated and free counts, written once they have held still
        for a second, and every POOL_STATUS_EVERY seconds while they keep changing (a burst of
        allocations is one write, not one a second)."""
        await self._started.wait()
        measured: set[str] = set()
        before: dict[str, tuple[int, int]] = {}  # the counts a second ago
        written_at: dict[str, float] = {}
        loop = asyncio.get_running_loop()
        while True:
            self._measure(measured)
            for name in list(self.allocator.pools):
                pool = self.allocator.allocator.pool(name)
                counts = (pool.used, pool.free)
                still = before.get(name) == counts
                before[name] = counts
                if self._pool_counts.get(name) == counts:
                    continue
                if not still and loop.time() - written_at.get(name, 0.0) < POOL_STATUS_EVERY:
                    continue
                body = {"status": {"allocatedAddresses": counts[0], "freeAddresses": counts[1]}}
                self.fence()
                try:
                    await call_raw(self.custom.patch_cluster_custom_object_status,
                        GROUP, VERSION, "addresspools", name, body, **MERGE
                    )  # fmt: skip
                    self._pool_counts[name] = counts
                    written_at[name] = loop.time()
                except API_ERRORS as error:
                    problem = {"pool": name, "error": describe(error)}
                    log.debug("pool status not written", extra=problem)
            await asyncio.sleep(1.0)
