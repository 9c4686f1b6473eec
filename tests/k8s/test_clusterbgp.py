"""ClusterBGP against the real apiserver: the original sart's sample configuration makes a
NodeBGP and BGPPeers per selected node; relabelling moves a node, a deleted BGPPeer comes back,
deleting the ClusterBGP removes what it made, a node missing a label is said so, two
ClusterBGPs selecting one node say so in their status."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from kubernetes_asyncio.client import CoreV1Api, CustomObjectsApi

from sart.k8s.models import GROUP, VERSION
from sart.k8s.reconcile.clusterbgp import CLUSTER_BGP_LABEL, PEER_NODE_LABEL
from sart.k8s.runtime.clusterbgp import ClusterBgpController
from sart.testing.controlplane import create_node, unique_name
from sart.testing.crds import apply_crds
from sart_samples import original_samples
from waiting import until

pytestmark = [pytest.mark.k8s, pytest.mark.asyncio]


async def eventually(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    return await until(check, timeout, 0.05)


def sample(kind: str, name: str) -> dict[str, Any]:
    return next(
        s for s in original_samples() if s["kind"] == kind and s["metadata"]["name"] == name
    )


class Fabric:
    """Nodes, a template and two ClusterBGPs from the original's samples, renamed per test
    (the apiserver is shared by the whole session)."""

    def __init__(self, k8s: Any) -> None:
        self.core, self.custom = CoreV1Api(k8s), CustomObjectsApi(k8s)
        self.tag = unique_name("fab")
        self.template = f"{self.tag}-spine"
        self.made: list[tuple[str, str]] = []

    async def create(self, plural: str, body: dict[str, Any]) -> None:
        await self.custom.create_cluster_custom_object(GROUP, VERSION, plural, body)
        self.made.append((plural, body["metadata"]["name"]))

    async def cluster_bgp(self, sample_name: str, group: str, selects: str | None = None) -> str:
        """The sample named `{tag}-{group}`, selecting the nodes of `selects` (its own group
        by default)."""
        body = sample("ClusterBGP", sample_name)
        name = f"{self.tag}-{group}"
        spec = {**body["spec"], "nodeSelector": {"bgp": f"{self.tag}-{selects or group}"}}
        for peer in spec.get("peers", []):
            peer["peerTemplateRef"] = self.template
            peer["nodeBGPSelector"] = {"bgp": f"{self.tag}-{group}"}
        await self.create("clusterbgps", {**body, "metadata": {"name": name}, "spec": spec})
        return name

    async def node(self, name: str, group: str, asn: int | None, address: str) -> str:
        node = f"{self.tag}-{name}"
        labels = {"bgp": f"{self.tag}-{group}"}
        if asn is not None:
            labels["sart.terassyi.net/asn"] = str(asn)
        await create_node(self.core.api_client, node, addresses=[address], labels=labels)
        return node

    async def relabel(self, node: str, group: str) -> None:
        patch = {"metadata": {"labels": {"bgp": f"{self.tag}-{group}"}}}
        await self.core.patch_node(node, patch)

    async def listing(self, plural: str) -> dict[str, dict[str, Any]]:
        found = await self.custom.list_cluster_custom_object(GROUP, VERSION, plural)
        return {
            o["metadata"]["name"]: o
            for o in found["items"]
            if o["metadata"]["name"].startswith(self.tag)
            or o["metadata"]["name"].startswith(f"{self.template}-")
        }

    async def cleanup(self) -> None:
        for plural, name in reversed(self.made):
            await self.custom.delete_cluster_custom_object(GROUP, VERSION, plural, name)
        nodes = await self.core.list_node()
        for node in nodes.items:
            if node.metadata.name.startswith(self.tag):
                await self.core.delete_node(node.metadata.name)


@pytest_asyncio.fixture
async def fabric(k8s: Any) -> AsyncIterator[Fabric]:
    await apply_crds(k8s)
    made = Fabric(k8s)
    yield made
    await made.cleanup()


async def test_the_original_configuration_runs_end_to_end(k8s: Any, fabric: Fabric) -> None:
    template = sample("BGPPeerTemplate", "bgppeertemplate-spine0")
    await fabric.create("bgppeertemplates", {**template, "metadata": {"name": fabric.template}})
    a = await fabric.cluster_bgp("clusterbgp-sample-a", "a")
    b = await fabric.cluster_bgp("clusterbgp-sample-b", "b")
    worker = await fabric.node("worker", "a", 65010, "172.18.0.2")
    worker2 = await fabric.node("worker2", "a", 65011, "172.18.0.3")
    plane = await fabric.node("control-plane", "b", 65020, "172.18.0.4")
    bare = await fabric.node("bare", "a", None, "172.18.0.5")
    controller = ClusterBgpController(k8s)
    task = asyncio.create_task(controller.run())
    try:
        peer = f"{fabric.template}-{worker}-65001-9.9.9.9"

        async def configured() -> bool:
            node_bgps = await fabric.listing("nodebgps")
            return {worker, worker2, plane} <= set(node_bgps) and peer in await fabric.listing(
                "bgppeers"
            )

        await eventually(configured)
        node_bgps = await fabric.listing("nodebgps")
        assert node_bgps[worker]["spec"]["asn"] == 65010
        assert node_bgps[worker]["spec"]["routerId"] == "172.18.0.2"
        assert node_bgps[worker]["spec"]["speaker"] == {"path": "127.0.0.1:5000",
                                                        "multipath": True}  # fmt: skip
        assert node_bgps[worker]["metadata"]["labels"][CLUSTER_BGP_LABEL] == a
        assert node_bgps[plane]["metadata"]["labels"][CLUSTER_BGP_LABEL] == b
        assert bare not in node_bgps  # it has no ASN label: said so
        peers = await fabric.listing("bgppeers")
        assert peers[peer]["metadata"]["labels"][PEER_NODE_LABEL] == worker
        assert peers[peer]["spec"]["nodeBGPRef"] == worker
        assert peers[peer]["spec"]["groups"] == ["to-spine0"]
        assert not [p for p in peers if plane in p]  # sample b has no peers

        async def refusals() -> list[str]:
            events = await fabric.core.list_namespaced_event(
                "default", field_selector=f"involvedObject.name={a}"
            )
            return [e.message for e in events.items if e.reason == "AsnLabelMissing"]

        # The Event is posted after the writes above, so it is waited for too.
        assert await eventually(refusals) == [f"node {bare} has no label sart.terassyi.net/asn"]

        async def status() -> dict[str, Any] | None:
            cluster_bgp = await fabric.custom.get_cluster_custom_object(
                GROUP, VERSION, "clusterbgps", a
            )
            return cluster_bgp.get("status")

        assert (await eventually(status))["desiredNodes"] == sorted([bare, worker, worker2])

        # A template edited changes the BGPPeers made from it.
        patch = {"spec": {"holdTime": 30}}
        await fabric.custom.patch_cluster_custom_object(
            GROUP, VERSION, "bgppeertemplates", fabric.template, patch,
            _content_type="application/merge-patch+json",
        )  # fmt: skip

        async def hold_time() -> bool:
            made = (await fabric.listing("bgppeers")).get(peer, {})
            return bool(made.get("spec", {}).get("holdTime") == 30)

        await eventually(hold_time)

        # A BGPPeer the ClusterBGP still wants comes back when deleted.
        await fabric.custom.delete_cluster_custom_object(GROUP, VERSION, "bgppeers", peer)
        await eventually(lambda: _has(fabric, "bgppeers", peer, True))

        # worker2 relabelled from a's selector to b's: it moves to b (and to b's peers: none).
        peer2 = f"{fabric.template}-{worker2}-65001-9.9.9.9"
        await fabric.relabel(worker2, "b")
        await eventually(lambda: _has(fabric, "bgppeers", peer2, False))

        async def moved() -> bool:
            node_bgp = (await fabric.listing("nodebgps")).get(worker2, {})
            return bool(node_bgp.get("metadata", {}).get("labels", {}).get(CLUSTER_BGP_LABEL) == b)

        await eventually(moved)

        # Deleting a ClusterBGP removes its NodeBGPs and BGPPeers.
        await fabric.custom.delete_cluster_custom_object(GROUP, VERSION, "clusterbgps", a)
        fabric.made.remove(("clusterbgps", a))
        await eventually(lambda: _has(fabric, "nodebgps", worker, False))
        await eventually(lambda: _has(fabric, "bgppeers", peer, False))
        assert await _has(fabric, "nodebgps", plane, True)  # b's are untouched
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_two_cluster_bgps_selecting_one_node_say_so_in_their_status(
    k8s: Any, fabric: Fabric
) -> None:
    """The older ClusterBGP (creation time, then name) configures the node; both carry a
    Conflicted condition naming the node and the other, shown by `kubectl get -o wide`, until
    the overlap is gone."""
    a = await fabric.cluster_bgp("clusterbgp-sample-a", "a")
    b = await fabric.cluster_bgp("clusterbgp-sample-b", "b", selects="a")
    node = await fabric.node("shared", "a", 65010, "172.18.0.2")
    controller = ClusterBgpController(k8s)
    task = asyncio.create_task(controller.run())
    try:

        async def conflicted(name: str, status: str) -> dict[str, Any] | None:
            found = await fabric.custom.get_cluster_custom_object(
                GROUP, VERSION, "clusterbgps", name
            )
            conditions = found.get("status", {}).get("conditions", [])
            [condition] = [c for c in conditions if c["type"] == "Conflicted"] or [None]
            if condition is None or condition["status"] != status:
                return None
            return {**condition, "generation": found["metadata"]["generation"],
                    "desiredNodes": found["status"]["desiredNodes"]}  # fmt: skip

        lost = await eventually(lambda: conflicted(b, "True"))
        assert lost["reason"] == "NodeClaimed"
        assert lost["message"] == (
            f"configured by an older ClusterBGP, not this one: node {node} ({a})"
        )
        assert lost["observedGeneration"] == lost["generation"] == 1
        assert lost["lastTransitionTime"].endswith("Z")
        assert lost["desiredNodes"] == []
        kept = await eventually(lambda: conflicted(a, "True"))
        assert kept["reason"] == "NodeAlsoSelected"
        assert kept["message"] == (
            f"configured by this one, selected by a younger ClusterBGP too: node {node} ({b})"
        )
        assert kept["desiredNodes"] == [node]
        node_bgp = (await fabric.listing("nodebgps"))[node]
        assert node_bgp["metadata"]["labels"][CLUSTER_BGP_LABEL] == a

        # Another pass (woken by a node of nobody's) writes no status again.
        async def version() -> str:
            found = await fabric.custom.get_cluster_custom_object(GROUP, VERSION, "clusterbgps", b)
            return str(found["metadata"]["resourceVersion"])

        before, passes = await version(), controller.passes
        other = await fabric.node("other", "c", 65011, "172.18.0.3")
        await eventually(lambda: other in controller.nodes and controller.passes > passes)
        assert await version() == before

        # `kubectl get clusterbgp -o wide` (a Table from the apiserver) shows it.
        table = await fabric.custom.api_client.call_api(
            f"/apis/{GROUP}/{VERSION}/clusterbgps/{b}", "GET",
            header_params={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"},
            response_types_map={200: "object"}, auth_settings=["BearerToken"],
            _return_http_data_only=True,
        )  # fmt: skip
        columns = [c["name"] for c in table["columnDefinitions"]]
        assert table["rows"][0]["cells"][columns.index("CONFLICTED")] == "True"

        # b's selector edited away from the node: both are cleared, b at its new generation.
        await fabric.custom.patch_cluster_custom_object(
            GROUP, VERSION, "clusterbgps", b, {"spec": {"nodeSelector": {"bgp": "none"}}},
            _content_type="application/merge-patch+json",
        )  # fmt: skip
        cleared = await eventually(lambda: conflicted(b, "False"))
        assert (cleared["reason"], cleared["observedGeneration"]) == ("NoConflict", 2)
        assert cleared["lastTransitionTime"] >= lost["lastTransitionTime"]
        assert (await eventually(lambda: conflicted(a, "False")))["reason"] == "NoConflict"
        node_bgp = (await fabric.listing("nodebgps"))[node]
        assert node_bgp["metadata"]["labels"][CLUSTER_BGP_LABEL] == a  # never moved
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _has(fabric: Fabric, plural: str, name: str, present: bool) -> bool:
    return (name in await fabric.listing(plural)) == present
