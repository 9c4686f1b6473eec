"""The original sart's sample manifests (manifests/sample), applied unchanged to a routed lab of
three nodes and two spines (sart.testing.cluster_lab): the BGPPeers come up Established, each
LoadBalancer address is on both spines with ECMP over the nodes its policy says (Cluster: every
node; Local: the nodes with a ready endpoint), and a client behind the spines keeps reaching
the Cluster Service's address (a TCP probe every 50 ms, a host-network backend on each node)
while one node's `sartd agent`, its `sartd bgp` and `sart-controller` restart. The agent and
controller restarts must not withdraw anything; the speaker's restart is measured (the gap in
the probes, how long the node's next hop is off each spine) and reported, not asserted beyond a
bound: the restarting speaker has no graceful restart yet."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

import pytest
import pytest_asyncio
import yaml
from kubernetes_asyncio.client import CoreV1Api, CustomObjectsApi

from sart.k8s.models import GROUP, VERSION
from sart.testing.cluster_lab import (
    ORIGINAL_NODES,
    ORIGINAL_SAMPLES,
    ORIGINAL_SPINES,
    PLACEMENT,
    ClusterLab,
    LabControlPlane,
    RouteWatch,
    TcpProbe,
    longest_gap,
    run_deployments,
    service_address,
    spine1_peers,
    wait_for,
)
from sart.testing.controlplane import find_binaries

pytestmark = [pytest.mark.k8s, pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

RESTARTED = "sart-worker"
SETTLE = 3.0  # seconds watched after a restarted daemon is back


@pytest.fixture(scope="module")
def plane() -> Iterator[LabControlPlane]:
    with LabControlPlane(find_binaries()) as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def lab(
    plane: LabControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ClusterLab]:
    """One lab for the module, the samples applied and the Deployments' pods placed: the
    restart test leaves it as it found it, the lifecycle test (last) changes it."""
    workdir = tmp_path_factory.mktemp("lab")
    async with ClusterLab(
        plane, workdir, nodes=ORIGINAL_NODES, spines=ORIGINAL_SPINES, graceful_restart=True
    ) as built:
        await built.apply(yaml.safe_load_all(ORIGINAL_SAMPLES))
        await built.apply(spine1_peers(built.nodes))
        await run_deployments(built, PLACEMENT)
        yield built


async def established(lab: ClusterLab) -> list[str] | None:
    made = await CustomObjectsApi(lab.api).list_cluster_custom_object(GROUP, VERSION, "bgppeers")
    rows = []
    for peer in made["items"]:
        history = (peer.get("status") or {}).get("conditions") or [{}]
        state = history[-1].get("status", "")
        if state != "Established":
            return None
        rows.append(f"{peer['metadata']['name']} {peer['spec']['nodeBGPRef']} {state}")
    return rows if len(rows) == 6 else None


def hops(lab: ClusterLab, spine: str, nodes: tuple[str, ...]) -> set[str]:
    return {lab.nodes[n].links[spine].b.ipv4 for n in nodes}


async def test_the_original_samples_route_through_two_spines_across_restarts(
    lab: ClusterLab, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = await wait_for(lambda: established(lab), timeout=90)
    # 2 workers x (template + spine1) + the control plane x (bgp_peer.yaml + spine1)
    assert sorted(rows) == sorted(rows) and len(rows) == 6
    cluster_ip = await service_address(lab, "app-svc-cluster")
    local_ip = await service_address(lab, "app-svc-local")
    assert cluster_ip.startswith("10.0.1.") and local_ip.startswith("10.0.1.")
    every = tuple(lab.nodes)
    local = PLACEMENT["app-local"]
    for name, spine in lab.spines.items():
        for address, nodes in ((cluster_ip, every), (local_ip, local)):
            want = hops(lab, name, nodes)
            await wait_for(lambda s=spine, a=address, w=want: s.nexthops(f"{a}/32") == w)

    lab.answer(cluster_ip)
    assert lab.client is not None
    probe = TcpProbe(lab.client, cluster_ip)
    watch = RouteWatch(lab.spines.values(), f"{cluster_ip}/32")
    probe.start()
    watch.start()
    report: dict[str, dict[str, Any]] = {}
    try:
        await asyncio.sleep(2)
        answered = {s.answer for s in probe.samples if s.ok}
        assert answered == set(every), answered  # ECMP over the three nodes, per flow
        for what, restart in (
            ("agent", lambda: lab.restart_agent(RESTARTED)),
            ("speaker", lambda: lab.restart_speaker(RESTARTED)),
            ("controller", lab.restart_controller),
        ):
            began = time.monotonic()
            await asyncio.to_thread(restart)
            # back: the node's next hop on both spines again, and the peers Established
            for name, spine in lab.spines.items():
                hop = lab.nodes[RESTARTED].links[name].b.ipv4
                await wait_for(lambda s=spine, h=hop: h in s.nexthops(f"{cluster_ip}/32"))
            await wait_for(lambda: established(lab), timeout=60)
            await asyncio.sleep(SETTLE)
            ended = time.monotonic()
            gap, failed = longest_gap(probe.window(began, ended))
            off = {
                name: watch.absent(name, lab.nodes[RESTARTED].links[name].b.ipv4, began, ended)
                for name in lab.spines
            }
            report[what] = {"gap": gap, "failed": failed, "off": off, "took": ended - began}
    finally:
        probe.stop()
        watch.stop()
    with capsys.disabled():
        print(f"\noriginal samples, 3 nodes / 2 spines: {cluster_ip} (Cluster), {local_ip} (Local)")
        for what, row in report.items():
            offs = ", ".join(f"{s} {t * 1000:.0f} ms" for s, t in row["off"].items())
            print(
                f"  restart of {RESTARTED}'s {what}: probe gap {row['gap'] * 1000:.0f} ms"
                f" ({row['failed']} of every 50 ms failed), its next hop off: {offs}"
            )
    # The speakers restart gracefully (--graceful-restart --defer-end-of-rib): the spines keep
    # the restarting node's path until the agent has given the new speaker its table.
    for what in ("agent", "speaker", "controller"):
        assert report[what]["failed"] == 0, report
        assert all(t == 0.0 for t in report[what]["off"].values()), report


# -- the lifecycle (issue 13): a rollout, a relabelled node, a deleted BGPPeer and ClusterBGP --

CLUSTER_A, CLUSTER_B = "clusterbgp-sample-a", "clusterbgp-sample-b"
CLUSTER_BGP_LABEL = "sart.terassyi.net/clusterbgp"
MOVED = "sart-worker2"  # relabelled a -> b -> a
LOCAL_FROM, LOCAL_TO = "sart-worker", "sart-worker2"  # app-local's pod moves so


def template_peer(node: str) -> str:
    """The BGPPeer clusterbgp-sample-a makes for a node from bgppeertemplate-sample."""
    return f"bgppeertemplate-sample-{node}-65000-9.9.9.9"


async def objects(lab: ClusterLab, plural: str) -> dict[str, dict[str, Any]]:
    made = await CustomObjectsApi(lab.api).list_cluster_custom_object(GROUP, VERSION, plural)
    return {o["metadata"]["name"]: o for o in made["items"]}


def peer_state(peer: dict[str, Any]) -> str:
    history = (peer.get("status") or {}).get("conditions") or [{}]
    return str(history[-1].get("status", ""))


def owners(obj: dict[str, Any]) -> list[str]:
    return [ref["name"] for ref in obj["metadata"].get("ownerReferences") or []]


def made_by(obj: dict[str, Any]) -> str | None:
    return (obj["metadata"].get("labels") or {}).get(CLUSTER_BGP_LABEL)


def session(lab: ClusterLab, spine: str, node: str) -> str:
    router = lab.spines[spine].router
    assert router is not None
    return router.neighbor_state(lab.nodes[node].links[spine].b.ipv4)


async def routed(lab: ClusterLab, address: str, nodes: Iterable[str]) -> None:
    """Until both spines send `address` over exactly the nodes given."""
    chosen = tuple(nodes)
    for name, spine in lab.spines.items():
        want = hops(lab, name, chosen)
        await wait_for(lambda s=spine, w=want: s.nexthops(f"{address}/32") == w, timeout=60)


async def test_the_samples_follow_a_rollout_a_relabel_and_deletions(
    lab: ClusterLab, capsys: pytest.CaptureFixture[str]
) -> None:
    core, custom = CoreV1Api(lab.api), CustomObjectsApi(lab.api)
    await wait_for(lambda: established(lab), timeout=90)
    cluster_ip = await service_address(lab, "app-svc-cluster")
    local_ip = await service_address(lab, "app-svc-local")
    every = tuple(lab.nodes)
    await routed(lab, cluster_ip, every)
    await routed(lab, local_ip, PLACEMENT["app-local"])
    watch = RouteWatch(lab.spines.values(), f"{cluster_ip}/32")
    watch.start()
    report: list[str] = []
    began = time.monotonic()

    def took() -> str:
        return f"{time.monotonic() - began:.1f} s"

    try:
        # 1. A rollout of the Local Service's pods: the one on sart-worker evicted, its
        # replacement bound to sart-worker2 and Ready. The next hops follow on both spines.
        began = time.monotonic()
        listed = await core.list_namespaced_pod("test", label_selector="app=app-local")
        (old,) = [p for p in listed.items if p.spec.node_name == LOCAL_FROM]
        await core.delete_namespaced_pod(old.metadata.name, "test", grace_period_seconds=0)
        await routed(lab, local_ip, ("sart-control-plane",))
        report.append(f"1. rollout: {LOCAL_FROM} off {local_ip} on both spines after {took()}")

        async def replacement() -> Any:
            found = await core.list_namespaced_pod("test", label_selector="app=app-local")
            fresh = [p for p in found.items if not p.spec.node_name]
            return fresh[0] if fresh else None

        pod = await wait_for(replacement)
        await lab.schedule("test", pod.metadata.name, LOCAL_TO, "10.244.1.20")
        await routed(lab, local_ip, ("sart-control-plane", LOCAL_TO))
        report.append(f"   the replacement Ready on {LOCAL_TO}: added on both spines, {took()}")
        await routed(lab, cluster_ip, every)  # the Cluster Service did not move

        # 4. (before the others change the ClusterBGPs) a deleted BGPPeer that
        # clusterbgp-sample-a still wants is made again and comes back Established.
        began = time.monotonic()
        name = template_peer("sart-worker")
        uid = (await objects(lab, "bgppeers"))[name]["metadata"]["uid"]
        await custom.delete_cluster_custom_object(GROUP, VERSION, "bgppeers", name)

        async def recreated() -> dict[str, Any] | None:
            peer = (await objects(lab, "bgppeers")).get(name)
            if peer is None or peer["metadata"]["uid"] == uid or peer_state(peer) != "Established":
                return None
            return peer

        peer = await wait_for(recreated, timeout=60)
        assert owners(peer) == [CLUSTER_A] and made_by(peer) == CLUSTER_A, peer["metadata"]
        await wait_for(lambda: session(lab, "spine0", "sart-worker") == "established")
        await routed(lab, cluster_ip, every)
        await wait_for(lambda: established(lab), timeout=60)
        off = watch.absent("spine0", hops(lab, "spine0", ("sart-worker",)).pop(), began, 1e12)
        report.append(
            f"4. BGPPeer {name} deleted: recreated (new uid) and Established, {took()};"
            f" sart-worker off spine0 for {off * 1000:.0f} ms"
        )

        # 2. sart-worker2 relabelled bgp=a -> b: its NodeBGP is clusterbgp-sample-b's (label,
        # owner); sample-b has no peers, so sample-a's BGPPeer for it goes and with it the
        # spine0 session; the node's own BGPPeer to spine1 stays Established. Back to a: the
        # BGPPeer is made again and spine0 has the node again.
        for before, after in (("a", "b"), ("b", "a")):
            began = time.monotonic()
            await core.patch_node(MOVED, {"metadata": {"labels": {"bgp": after}}})
            owner = CLUSTER_A if after == "a" else CLUSTER_B

            async def moved(owner: str = owner, after: str = after) -> bool:
                node_bgp = (await objects(lab, "nodebgps")).get(MOVED)
                return (
                    node_bgp is not None
                    and owners(node_bgp) == [owner]
                    and made_by(node_bgp) == owner
                    and node_bgp["metadata"]["labels"].get("bgp") == after
                )

            await wait_for(moved, timeout=60)

            async def peers_of_node(owner: str = owner) -> dict[str, dict[str, Any]] | None:
                mine = {
                    n: p
                    for n, p in (await objects(lab, "bgppeers")).items()
                    if p["spec"]["nodeBGPRef"] == MOVED
                }
                want = {f"bgppeer-{MOVED}-spine1"}
                if owner == CLUSTER_A:
                    want.add(template_peer(MOVED))
                if set(mine) != want or any(peer_state(p) != "Established" for p in mine.values()):
                    return None
                return mine

            mine = await wait_for(peers_of_node, timeout=60)
            if after == "a":
                assert owners(mine[template_peer(MOVED)]) == [CLUSTER_A]
                await wait_for(lambda: session(lab, "spine0", MOVED) == "established")
                await routed(lab, cluster_ip, every)
                await routed(lab, local_ip, ("sart-control-plane", MOVED))
            else:
                await wait_for(lambda: session(lab, "spine0", MOVED) != "established")
                rest = hops(lab, "spine0", ("sart-control-plane", "sart-worker"))
                await wait_for(
                    lambda r=rest: lab.spines["spine0"].nexthops(f"{cluster_ip}/32") == r
                )
                assert session(lab, "spine1", MOVED) == "established"
                assert hops(lab, "spine1", (MOVED,)) <= lab.spines["spine1"].nexthops(
                    f"{cluster_ip}/32"
                )
            sessions = {s: session(lab, s, MOVED) for s in lab.spines}
            report.append(
                f"2. {MOVED} bgp={before} -> {after}: NodeBGP owned and labelled by {owner},"
                f" BGPPeers {sorted(mine)} Established, spine sessions {sessions}, {took()}"
            )
        await wait_for(lambda: established(lab), timeout=60)

        # 3. clusterbgp-sample-a deleted: its NodeBGPs and BGPPeers go, and spine0 (the only
        # router its peers name) loses both workers' sessions and their paths.
        began = time.monotonic()
        workers = ("sart-worker", "sart-worker2")
        await custom.delete_cluster_custom_object(GROUP, VERSION, "clusterbgps", CLUSTER_A)

        async def gone() -> bool:
            node_bgps, peers = await objects(lab, "nodebgps"), await objects(lab, "bgppeers")
            left = [n for n, o in {**node_bgps, **peers}.items() if made_by(o) == CLUSTER_A]
            return (
                not left
                and CLUSTER_A not in await objects(lab, "clusterbgps")
                and not any(w in node_bgps for w in workers)
                and not any(template_peer(w) in peers for w in workers)
            )

        await wait_for(gone, timeout=60)
        for worker in workers:
            await wait_for(lambda w=worker: session(lab, "spine0", w) != "established")
        # the workers' paths leave both spines (without a NodeBGP a node announces nothing)
        await routed(lab, cluster_ip, ("sart-control-plane",))
        node_bgps = await objects(lab, "nodebgps")
        assert set(node_bgps) == {"sart-control-plane"}
        assert owners(node_bgps["sart-control-plane"]) == [CLUSTER_B]
        assert session(lab, "spine0", "sart-control-plane") == "established"
        left = {w: session(lab, "spine1", w) for w in workers}
        report.append(
            f"3. {CLUSTER_A} deleted: NodeBGPs and BGPPeers gone, spine0 lost both workers'"
            f" sessions, both spines their paths (only sart-control-plane left), {took()};"
            f" the workers' own spine1 BGPPeers (not the ClusterBGP's) remain, spine1"
            f" sessions {left}"
        )
    finally:
        watch.stop()
    with capsys.disabled():
        print(f"\noriginal samples' lifecycle: {cluster_ip} (Cluster), {local_ip} (Local)")
        for line in report:
            print(f"  {line}")
