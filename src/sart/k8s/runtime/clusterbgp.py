"""The ClusterBGP side of the controller: Nodes, ClusterBGPs and BGPPeerTemplates in; NodeBGPs,
BGPPeers and ClusterBGP status out (`sart.k8s.reconcile.clusterbgp` decides).

Every change it watches (a node relabelled, a ClusterBGP or template edited, one of its
BGPPeers deleted by hand) wakes one pass: the whole plan is computed again from the stores and
only the difference is written. Models become API bodies through the one converter. Failures
follow the runtime's error model: a conflict is decided again at once, anything temporary
backs off, a refused write is logged and retried slowly. A problem with a node (a label
missing, a node claimed twice) is a Warning Event on the ClusterBGP, once per problem; two
ClusterBGPs selecting one node are in both's `Conflicted` condition too."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import attrs
from kubernetes_asyncio.client import ApiClient, CoreV1Api, CustomObjectsApi
from kubernetes_asyncio.client.exceptions import ApiException

from sart.k8s.convert import unstructure
from sart.k8s.models import GROUP, VERSION, BGPPeer, BGPPeerTemplate, ClusterBGP, NodeBGP
from sart.k8s.reconcile.clusterbgp import (
    CLUSTER_BGP_LABEL,
    Changes,
    NodeView,
    Problem,
    changes,
    plan,
)
from sart.k8s.runtime import MERGE, rfc3339_now
from sart.k8s.runtime.events import EventRecorder
from sart.k8s.runtime.outcome import Backoff, sync_passes
from sart.k8s.runtime.watch import read_object, watch_kind, watch_objects

log = logging.getLogger("sart.k8s")
COMPONENT = "sart-controller"
PLURALS = {"NodeBGP": "nodebgps", "BGPPeer": "bgppeers"}


def node_view(node: Any) -> NodeView:
    addresses = (node.status.addresses if node.status is not None else None) or ()
    return NodeView(
        name=node.metadata.name,
        labels=dict(node.metadata.labels or {}),
        internal_addresses=tuple(a.address for a in addresses if a.type == "InternalIP"),
    )


class ClusterBgpController:
    def __init__(
        self,
        api: ApiClient,
        *,
        fence: Callable[[], None] = lambda: None,
        clock: Callable[[], str] = rfc3339_now,
    ) -> None:
        self.core = CoreV1Api(api)
        self.custom = CustomObjectsApi(api)
        self.fence = fence  # raises LeadershipLost once we may no longer write
        self.clock = clock  # conditions' lastTransitionTime
        self.events = EventRecorder(self.core, COMPONENT, fence=fence)
        self.nodes: dict[str, NodeView] = {}
        self.cluster_bgps: dict[str, ClusterBGP] = {}
        self.templates: dict[str, BGPPeerTemplate] = {}
        self.node_bgps: dict[str, NodeBGP] = {}
        self.peers: dict[str, BGPPeer] = {}  # those a ClusterBGP made
        self.passes = 0  # plans applied (tests wait on this)
        self._problems: set[Problem] = set()
        self._synced: set[str] = set()
        self._wake = asyncio.Event()
        self._backoff = Backoff(base=0.5, cap=60.0)

    # --- events from the watches ----------------------------------------------------------

    def _on_node(self, kind: str, node: Any) -> None:
        if kind == "SYNCED":
            self._synced.add("nodes")
            self._wake.set()
            return
        name = node.metadata.name
        if kind == "DELETED":
            self.nodes.pop(name, None)
        else:
            view = node_view(node)
            if self.nodes.get(name) == view:
                return  # a status heartbeat: nothing the plan reads changed
            self.nodes[name] = view
        self._wake.set()

    def _handler(self, store: dict[str, Any], model: type[Any], what: str) -> Any:
        def handle(kind: str, obj: Any) -> None:
            if kind == "SYNCED":
                self._synced.add(what)
                self._wake.set()
                return
            name = obj["metadata"]["name"]
            if kind == "DELETED":
                store.pop(name, None)
            else:
                value = read_object(model, obj)
                if value is None:
                    store.pop(name, None)
                else:
                    store[name] = value
            self._wake.set()

        return handle

    # --- the loop -------------------------------------------------------------------------

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(watch_objects(self.core.list_node, self._on_node, "nodes"))
            for plural, store, model, selector in (
                ("clusterbgps", self.cluster_bgps, ClusterBGP, None),
                ("bgppeertemplates", self.templates, BGPPeerTemplate, None),
                ("nodebgps", self.node_bgps, NodeBGP, None),
                ("bgppeers", self.peers, BGPPeer, CLUSTER_BGP_LABEL),
            ):
                handle = self._handler(store, model, plural)
                options: dict[str, Any] = {"label_selector": selector} if selector else {}
                tasks.create_task(watch_kind(self.custom, plural, handle, **options))
            tasks.create_task(self._work())

    @property
    def synced(self) -> bool:
        """Whether every kind it decides from is listed (/readyz)."""
        return len(self._synced) >= 5

    async def _work(self) -> None:
        await sync_passes(self._wake, lambda: self.synced, self.sync, "cluster BGP",
                          backoff=self._backoff, refused_retry=30.0)  # fmt: skip

    async def sync(self) -> None:
        """One pass: plan from the stores, write the difference, report problems."""
        wanted = plan(self.cluster_bgps.values(), self.templates, self.nodes.values(),
                      self.node_bgps, now=self.clock())  # fmt: skip
        todo = changes(wanted, self.node_bgps, self.peers)
        if todo:
            await self._apply(todo)
        for name, status in wanted.statuses.items():
            cluster_bgp = self.cluster_bgps.get(name)
            if cluster_bgp is not None and cluster_bgp.status != status:
                self.fence()
                body = {"status": unstructure(status)}
                await self.custom.patch_cluster_custom_object_status(
                    GROUP, VERSION, "clusterbgps", name, body, **MERGE
                )
                self.cluster_bgps[name] = attrs.evolve(cluster_bgp, status=status)
        for problem in sorted(set(wanted.problems) - self._problems, key=str):
            await self._report(problem)
        self._problems = set(wanted.problems)
        self.passes += 1

    async def _apply(self, todo: Changes) -> None:
        for obj in todo.create:
            plural = PLURALS[type(obj).DEFINITION.kind]
            self.fence()
            try:
                made = await self.custom.create_cluster_custom_object(
                    GROUP, VERSION, plural, unstructure(obj)
                )
            except ApiException as error:
                if error.status != 409:
                    raise
                continue  # there already, the watch has not said so yet: next pass
            self._expect(made)
            log.info(f"{type(obj).DEFINITION.kind} created", extra={"object": obj.metadata.name})
        for obj in todo.update:
            await self._update(obj)
        for plural, names in (("bgppeers", todo.delete_peers),
                              ("nodebgps", todo.delete_node_bgps)):  # fmt: skip
            for name in names:
                self.fence()
                try:
                    await self.custom.delete_cluster_custom_object(GROUP, VERSION, plural, name)
                except ApiException as error:
                    if error.status != 404:
                        raise
                (self.peers if plural == "bgppeers" else self.node_bgps).pop(name, None)
                log.info("deleted", extra={"plural": plural, "object": name})

    async def _update(self, obj: NodeBGP | BGPPeer) -> None:
        """Replace the object's spec, labels and owners (a PUT with the resourceVersion seen,
        so a concurrent change is a 409 and a fresh decision); other metadata is kept."""
        store: dict[str, Any] = self.node_bgps if isinstance(obj, NodeBGP) else self.peers
        seen = store[obj.metadata.name]
        meta = attrs.evolve(
            seen.metadata,
            labels={**seen.metadata.labels, **obj.metadata.labels},
            owner_references=obj.metadata.owner_references,
        )
        body = unstructure(attrs.evolve(obj, metadata=meta, status=None))
        self.fence()
        await self.custom.replace_cluster_custom_object(
            GROUP, VERSION, PLURALS[type(obj).DEFINITION.kind], obj.metadata.name, body
        )
        log.info(f"{type(obj).DEFINITION.kind} updated", extra={"object": obj.metadata.name})

    def _expect(self, made: dict[str, Any]) -> None:
        """Our own write as the apiserver answered it, recorded before the watch shows it: the
        next pass must not write it again."""
        if made.get("kind") == "NodeBGP":
            node_bgp = read_object(NodeBGP, made)
            if node_bgp is not None:
                self.node_bgps.setdefault(node_bgp.metadata.name, node_bgp)
        else:
            peer = read_object(BGPPeer, made)
            if peer is not None:
                self.peers.setdefault(peer.metadata.name, peer)

    async def _report(self, problem: Problem) -> None:
        where = {"clusterbgp": problem.cluster_bgp, "node": problem.node, "reason": problem.reason}
        log.warning(problem.message, extra=where)
        cluster_bgp = self.cluster_bgps.get(problem.cluster_bgp)
        involved = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ClusterBGP",
            "name": problem.cluster_bgp,
            "uid": cluster_bgp.metadata.uid if cluster_bgp is not None else None,
        }
        await self.events.record(involved, "Warning", problem.reason, problem.message)
