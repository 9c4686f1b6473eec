"""The LoadBalancer controller against the real apiserver: the CRDs from manifests/, real
Services, the controller's own runtime in this process."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from kubernetes_asyncio.client import (
    ApiClient,
    CoordinationV1Api,
    CoreV1Api,
    CustomObjectsApi,
)
from prometheus_client import generate_latest

from sart.k8s.models import GROUP, VERSION
from sart.k8s.runtime.clusterbgp import ClusterBgpController
from sart.k8s.runtime.controller import COMPONENT, LoadBalancerController
from sart.k8s.runtime.leader import LeaderElection
from sart.testing.controlplane import create_node, create_ready_pod, unique_name
from sart.testing.crds import apply_crds
from sart.testing.rbac import account_configuration, apply_shipped_rbac
from waiting import until

pytestmark = [pytest.mark.k8s, pytest.mark.asyncio]
MERGE = {"_content_type": "application/merge-patch+json"}


async def eventually(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    return await until(check, timeout, 0.05)


class Cluster:
    def __init__(self, k8s: Any, namespace: str) -> None:
        self.k8s = k8s
        self.namespace = namespace
        self.core = CoreV1Api(k8s)
        self.custom = CustomObjectsApi(k8s)
        self.pools: list[str] = []
        self.task: asyncio.Task[None] | None = None

    def start(self) -> LoadBalancerController:
        controller = LoadBalancerController(self.k8s)
        self.task = asyncio.create_task(controller.run())
        return controller

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            self.task = None

    async def pool(self, cidr: str, *, auto: bool = False, **spec: Any) -> str:
        name = unique_name("pool")
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "AddressPool",
            "metadata": {"name": name},
            "spec": {"cidr": cidr, "type": "service", "autoAssign": auto, **spec},
        }
        await self.custom.create_cluster_custom_object(GROUP, VERSION, "addresspools", body)
        self.pools.append(name)
        return name

    async def service(
        self, name: str, *, annotations: dict[str, str] | None = None, **spec: Any
    ) -> None:
        body = {
            "metadata": {"name": name, "annotations": annotations or {}},
            "spec": {
                "type": "LoadBalancer",
                "ports": [{"port": 80, "targetPort": 8080}],
                "selector": {"app": name},
                **spec,
            },
        }
        await self.core.create_namespaced_service(self.namespace, body)

    async def ingress(self, name: str) -> tuple[str, ...]:
        service = await self.core.read_namespaced_service(name, self.namespace)
        balancer = service.status.load_balancer
        return tuple(i.ip for i in (balancer.ingress or [])) if balancer else ()

    async def wait_ingress(
        self, name: str, expected: tuple[str, ...] | None = None
    ) -> tuple[str, ...]:
        async def check() -> tuple[str, ...] | None:
            got = await self.ingress(name)
            if expected is None:
                return got or None
            return got if got == expected else None

        result: tuple[str, ...] = await eventually(check)
        return result

    async def events(self, name: str) -> list[tuple[str, str, str]]:
        """The controller's Events about the Service (not the apiserver's own: its ClusterIP
        repair loop may say something about a Service made under load)."""
        listing = await self.core.list_namespaced_event(
            self.namespace, field_selector=f"involvedObject.name={name}"
        )
        ours = [e for e in listing.items if e.source and e.source.component == COMPONENT]
        return [(e.type, e.reason, e.message) for e in ours]

    async def finalizers(self, name: str) -> list[str]:
        service = await self.core.read_namespaced_service(name, self.namespace)
        return list(service.metadata.finalizers or [])

    async def cleanup(self) -> None:
        services = await self.core.list_namespaced_service(self.namespace)
        for service in services.items:
            await self.core.delete_namespaced_service(service.metadata.name, self.namespace)

        async def gone() -> bool:
            left = await self.core.list_namespaced_service(self.namespace)
            return not left.items

        if self.task is None:
            self.start()
        await eventually(gone)
        await self.stop()
        for name in self.pools:
            await self.custom.delete_cluster_custom_object(GROUP, VERSION, "addresspools", name)


async def no_foreign_balancers(k8s: Any, namespace: str) -> bool:
    """The controller serves every namespace: LoadBalancer Services other tests left behind
    (namespaces still being deleted) would take addresses from this test's pools."""
    services = await CoreV1Api(k8s).list_service_for_all_namespaces()
    return not [
        s
        for s in services.items
        if s.spec.type == "LoadBalancer" and s.metadata.namespace != namespace
    ]


@pytest_asyncio.fixture
async def cluster(k8s: Any, namespace: str) -> AsyncIterator[Cluster]:
    await apply_crds(k8s)
    await eventually(lambda: no_foreign_balancers(k8s, namespace), timeout=60)
    made = Cluster(k8s, namespace)
    yield made
    await made.cleanup()


async def test_default_named_and_specific_addresses(cluster: Cluster) -> None:
    await cluster.pool("10.100.1.0/24", auto=True)
    other = await cluster.pool("10.100.2.0/24")
    v6 = await cluster.pool("fd00:100::/120")
    controller = cluster.start()
    await cluster.service("web")
    assert await cluster.wait_ingress("web") == ("10.100.1.1",)
    assert await cluster.finalizers("web") == []  # the status is the truth: none needed
    events = await eventually(lambda: cluster.events("web"))
    assert ("Normal", "AddressAllocated", f"allocated 10.100.1.1 from {cluster.pools[0]}") in events
    await cluster.service(
        "dual",
        annotations={"sart.terassyi.net/addresspool": f"{other},{v6}"},
        ipFamilyPolicy="PreferDualStack",
    )
    assert await cluster.wait_ingress("dual") == ("10.100.2.1", "fd00:100::")
    await cluster.service("fixed", annotations={"sart.terassyi.net/loadBalancerIPs": "10.100.2.50"})
    assert await cluster.wait_ingress("fixed") == ("10.100.2.50",)
    await cluster.service("legacy", loadBalancerIP="10.100.1.77")
    assert await cluster.wait_ingress("legacy") == ("10.100.1.77",)
    await cluster.service("taken", annotations={"sart.terassyi.net/loadBalancerIPs": "10.100.2.50"})
    warnings = await eventually(
        lambda: _warnings(cluster, "taken"),
    )
    assert "10.100.2.50" in warnings[0][2] and await cluster.ingress("taken") == ()
    await cluster.service("other-class", loadBalancerClass="example.com/lb")
    await eventually(lambda: controller.idle(f"{cluster.namespace}/other-class"))
    assert await cluster.ingress("other-class") == ()


async def _has(controller: LoadBalancerController, line: str) -> bool:
    return line in generate_latest(controller.metrics.registry).decode()


async def _warnings(cluster: Cluster, name: str) -> list[tuple[str, str, str]]:
    return [e for e in await cluster.events(name) if e[0] == "Warning"]


async def test_exhaustion_release_type_and_annotation_changes(cluster: Cluster) -> None:
    small = await cluster.pool("10.100.3.0/30", auto=True)  # two usable addresses
    spare = await cluster.pool("10.100.4.0/24")
    controller = cluster.start()
    await cluster.service("a")
    await cluster.wait_ingress("a", ("10.100.3.1",))
    await cluster.service("b")
    await cluster.wait_ingress("b", ("10.100.3.2",))
    await cluster.service("c")
    warnings = await eventually(lambda: _warnings(cluster, "c"))
    assert warnings[0][1:] == ("PoolExhausted", f"AddressPool {small} is full")
    metrics = generate_latest(controller.metrics.registry).decode()
    assert "sart_controller_pending_services 1.0" in metrics
    assert 'sart_controller_reconciliation_total{resource="Service"}' in metrics
    assert "instance=" not in metrics  # no label value per Service
    await eventually(
        lambda: _has(controller, f'sart_controller_pool_free_addresses{{pool="{small}"}} 0.0')
    )
    await cluster.core.delete_namespaced_service("a", cluster.namespace)
    assert await cluster.wait_ingress("c") == ("10.100.3.1",)  # served once one is free
    await cluster.core.patch_namespaced_service(
        "b", cluster.namespace, {"spec": {"type": "ClusterIP"}}, **MERGE
    )

    async def released() -> bool:
        return await cluster.ingress("b") == ()

    await eventually(released)
    await cluster.core.patch_namespaced_service(
        "c",
        cluster.namespace,
        {"metadata": {"annotations": {"sart.terassyi.net/addresspool": spare}}},
        **MERGE,
    )
    assert await cluster.wait_ingress("c", ("10.100.4.1",)) == ("10.100.4.1",)


async def test_restart_keeps_addresses_and_200_services_get_distinct_ones(
    cluster: Cluster, k8s_report: Callable[[str], None]
) -> None:
    await cluster.pool("10.101.0.0/16", auto=True)
    cluster.start()
    started = time.monotonic()
    await asyncio.gather(*(cluster.service(f"s{i}") for i in range(200)))

    async def all_served() -> list[str] | None:
        listing = await cluster.core.list_namespaced_service(cluster.namespace)
        ips = [
            i.ip
            for s in listing.items
            if s.status.load_balancer and s.status.load_balancer.ingress
            for i in s.status.load_balancer.ingress
        ]
        return ips if len(ips) == 200 else None

    ips = await eventually(all_served, timeout=60)
    k8s_report(
        f"200 Services created at once: all have addresses {time.monotonic() - started:.2f} s later"
    )
    assert len(set(ips)) == 200
    before = {s: await cluster.ingress(s) for s in ("s0", "s7", "s199")}
    await cluster.stop()
    cluster.start()  # a fresh controller adopts what the status says
    await cluster.service("late")
    late = await cluster.wait_ingress("late")
    assert late[0] not in ips
    assert {s: await cluster.ingress(s) for s in before} == before


async def test_only_one_of_two_controllers_leads(k8s: Any, namespace: str) -> None:
    api = CoordinationV1Api(k8s)
    first = LeaderElection(api, name="sart-controller", namespace=namespace, identity="one")
    second = LeaderElection(api, name="sart-controller", namespace=namespace, identity="two")
    results = await asyncio.gather(first.try_acquire(), second.try_acquire())
    assert sorted(results) == [False, True]
    leader, standby = (first, second) if results[0] else (second, first)
    assert await leader.try_acquire()  # renews
    assert not await standby.try_acquire()
    await leader.release()
    assert await standby.try_acquire()  # takes over at once after a clean release


async def test_advertisements_follow_nodes_and_endpoints(cluster: Cluster) -> None:
    """Cluster policy: every node with a NodeBGP announces; Local: the nodes with ready
    endpoints, through a rolling update (old pod terminating before the new one is ready)."""
    nodes = [unique_name(f"node-{letter}") for letter in "abc"]
    for index, node in enumerate(nodes):
        await create_node(cluster.k8s, node, addresses=[f"10.250.0.{index + 1}"])
    for node in nodes[:2]:  # node c runs no speaker
        await cluster.custom.create_cluster_custom_object(
            GROUP, VERSION, "nodebgps",
            {"apiVersion": f"{GROUP}/{VERSION}", "kind": "NodeBGP", "metadata": {"name": node},
             "spec": {"asn": 65000, "routerId": "10.250.0.1",
                      "speaker": {"path": "127.0.0.1:5000"}}},
        )  # fmt: skip
    await cluster.pool("10.102.0.0/24", auto=True)
    controller = cluster.start()

    async def announced(service: str) -> dict[str, list[str]]:
        listing = await cluster.custom.list_namespaced_custom_object(
            GROUP, VERSION, cluster.namespace, "bgpadvertisements",
            label_selector=f"sart.terassyi.net/service={service}",
        )  # fmt: skip
        return {i["spec"]["cidr"]: i["spec"]["nodes"] for i in listing["items"]}

    async def until(service: str, expected: dict[str, list[str]]) -> None:
        async def check() -> bool:
            return await announced(service) == expected

        await eventually(check)

    await cluster.service("everywhere")
    await cluster.wait_ingress("everywhere", ("10.102.0.1",))
    await until("everywhere", {"10.102.0.1/32": sorted(nodes[:2])})

    await create_ready_pod(cluster.k8s, cluster.namespace, "old", node=nodes[0],
                           ips=["10.244.0.10"], labels={"app": "local"})  # fmt: skip
    await cluster.service("local", externalTrafficPolicy="Local")
    await cluster.wait_ingress("local", ("10.102.0.2",))
    await until("local", {"10.102.0.2/32": [nodes[0]]})
    # the new pod starts on node b, not ready yet; the old one is told to go (terminating)
    await cluster.core.create_namespaced_pod(
        cluster.namespace,
        {"metadata": {"name": "new", "labels": {"app": "local"}},
         "spec": {"nodeName": nodes[1], "containers": [{"name": "app", "image": "x.invalid/a"}]}},
    )  # fmt: skip
    await cluster.core.delete_namespaced_pod("old", cluster.namespace, grace_period_seconds=300)
    key = f"{cluster.namespace}/local"

    def seen_terminating() -> bool:  # the endpointslice controller marked it, and we saw it
        views = [v for slices in controller.slices.get(key, {}).values() for v in slices]
        return any(v.terminating for v in views) and controller.idle(key)

    await eventually(seen_terminating)
    assert await announced("local") == {"10.102.0.2/32": [nodes[0]]}  # still served from a
    await create_ready_pod_status(cluster, "new", "10.244.0.11")
    await until("local", {"10.102.0.2/32": [nodes[1]]})  # moved once b is ready
    await cluster.core.delete_namespaced_service("everywhere", cluster.namespace)
    await until("everywhere", {})  # owned by the Service: gone with it
    for node in nodes[:2]:
        await cluster.custom.delete_cluster_custom_object(GROUP, VERSION, "nodebgps", node)
    for node in nodes:
        await cluster.core.delete_node(node)


async def create_ready_pod_status(cluster: Cluster, name: str, ip: str) -> None:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    status = {
        "phase": "Running",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "conditions": [
            {"type": kind, "status": "True", "lastTransitionTime": now}
            for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
        ],
    }
    await cluster.core.patch_namespaced_pod_status(name, cluster.namespace, {"status": status})


async def test_sart_lb_list(cluster: Cluster, control_plane: Any) -> None:
    pool = await cluster.pool("10.103.0.0/30", auto=True)
    cluster.start()
    await cluster.service("one")
    await cluster.wait_ingress("one", ("10.103.0.1",))
    await cluster.service("two")
    await cluster.wait_ingress("two", ("10.103.0.2",))
    await cluster.service("three")
    await eventually(lambda: _warnings(cluster, "three"))
    command = [sys.executable, "-m", "sart.cli.sart", "lb", "list", "--kubeconfig",
               str(control_plane.kubeconfig), "--format", "json"]  # fmt: skip
    result = await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, check=True
    )
    rows = [r for r in json.loads(result.stdout) if r["namespace"] == cluster.namespace]
    assert [(r["address"], r["in_use"], r["service"], r["pool"]) for r in rows] == [
        ("10.103.0.1", True, "one", pool),
        ("10.103.0.2", True, "two", pool),
        ("<pending>", False, "three", ""),
    ]


async def test_services_with_one_sharing_key_share_an_address(cluster: Cluster) -> None:
    await cluster.pool("10.104.0.0/24", auto=True)
    cluster.start()
    shared = {"sart.terassyi.net/allow-shared-ip": "web"}
    await cluster.service("http", annotations=shared, ports=[{"port": 80}])
    await cluster.service("https", annotations=shared, ports=[{"port": 443}])
    await cluster.service("clash", annotations=shared, ports=[{"port": 80}])
    assert await cluster.wait_ingress("http") == ("10.104.0.1",)
    assert await cluster.wait_ingress("https") == ("10.104.0.1",)
    assert await cluster.wait_ingress("clash") == ("10.104.0.2",)


async def test_controller_runs_with_exactly_the_shipped_rbac(cluster: Cluster) -> None:
    """manifests/deploy/rbac.yaml's ServiceAccount and roles are enough (and the
    controller uses nothing else): the controller runs on a token of that account."""
    await apply_shipped_rbac(cluster.k8s)
    configuration = await account_configuration(cluster.k8s, "sart-controller")
    await cluster.pool("10.105.0.0/24", auto=True)
    group = unique_name("rbac")
    node = unique_name("rbac-node")
    await create_node(cluster.k8s, node, addresses=["10.251.0.1"],
                      labels={"bgp": group, "sart.terassyi.net/asn": "65001"})  # fmt: skip
    cluster_bgp = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ClusterBGP",
                   "metadata": {"name": group},
                   "spec": {"nodeSelector": {"bgp": group}, "asnSelector": {"from": "label"},
                            "routerIdSelector": {"from": "internalAddress"},
                            "speaker": {"path": "127.0.0.1:5000"},
                            "peers": [{"peerConfig": {"asn": 65000,
                                                      "addr": "10.251.0.254"}}]}}  # fmt: skip
    await cluster.custom.create_cluster_custom_object(GROUP, VERSION, "clusterbgps", cluster_bgp)
    async with ApiClient(configuration) as restricted:
        controller = LoadBalancerController(restricted)
        cluster_bgps = ClusterBgpController(restricted)

        async def both() -> None:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(controller.run())
                tasks.create_task(cluster_bgps.run())

        task = asyncio.create_task(
            LeaderElection(
                CoordinationV1Api(restricted),
                name="sart-controller",
                namespace="sart-system",
                identity="rbac-test",
                renew=1.0,
            ).hold(both)
        )
        try:
            await cluster.service("rbac")
            assert await cluster.wait_ingress("rbac") == ("10.105.0.1",)
            events = await eventually(lambda: cluster.events("rbac"))
            assert events[0][1] == "AddressAllocated"

            async def node_bgp_and_status() -> bool:
                made = await cluster.custom.list_cluster_custom_object(
                    GROUP,
                    VERSION,
                    "bgppeers",
                    label_selector=f"bgppeer.sart.terassyi.net/node={node}",
                )
                status = (await cluster.custom.get_cluster_custom_object(
                    GROUP, VERSION, "clusterbgps", group)).get("status") or {}  # fmt: skip
                return bool(made["items"]) and status.get("desiredNodes") == [node]

            await eventually(node_bgp_and_status)
            assert not task.done()  # no 403 anywhere
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await cluster.custom.delete_cluster_custom_object(GROUP, VERSION, "clusterbgps", group)
            await cluster.core.delete_node(node)


async def test_two_controllers_racing_act_once(cluster: Cluster) -> None:
    """Two full controllers behind one Lease: only the leader writes, so every Service gets one
    address and one event; when the leader stops, the other takes over."""
    await cluster.pool("10.106.0.0/24", auto=True)
    elections = [
        LeaderElection(
            CoordinationV1Api(cluster.k8s),
            name="race",
            namespace=cluster.namespace,
            identity=identity,
            duration=3.0,
            renew=0.5,
        )
        for identity in ("one", "two")
    ]
    controllers = [LoadBalancerController(cluster.k8s, fence=e.fence) for e in elections]
    tasks = [
        asyncio.create_task(election.hold(controller.run))
        for election, controller in zip(elections, controllers, strict=True)
    ]
    try:
        for index in range(10):
            await cluster.service(f"r{index}")
        ips = [await cluster.wait_ingress(f"r{index}") for index in range(10)]
        assert len({ip for (ip,) in ips}) == 10
        for index in range(10):  # both have decided and written all they wanted
            key = f"{cluster.namespace}/r{index}"
            for controller in controllers:
                await eventually(lambda c=controller, k=key: c.idle(k))
        for index in range(10):
            allocated = [e for e in await cluster.events(f"r{index}") if e[1] == "AddressAllocated"]
            assert len(allocated) == 1
        lease = await CoordinationV1Api(cluster.k8s).read_namespaced_lease(
            "race", cluster.namespace
        )
        leader = [e.identity for e in elections].index(lease.spec.holder_identity)
        tasks[leader].cancel()  # the leader dies without releasing the Lease
        await cluster.service("after")
        assert await cluster.wait_ingress("after")  # the standby took over after 3 s
        lease = await CoordinationV1Api(cluster.k8s).read_namespaced_lease(
            "race", cluster.namespace
        )
        assert lease.spec.holder_identity == elections[1 - leader].identity
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_pool_limited_to_namespaces_and_labels(cluster: Cluster) -> None:
    await cluster.pool("10.107.0.0/24", auto=True)
    team = await cluster.pool(
        "10.107.1.0/24", namespaces=[cluster.namespace], serviceSelector={"tier": "web"}
    )
    cluster.start()
    chosen = {"sart.terassyi.net/addresspool": team}
    await cluster.service("unlabelled", annotations=chosen)
    warnings = await eventually(lambda: _warnings(cluster, "unlabelled"))
    assert f"AddressPool '{team}' serves only Services labelled tier=web" in warnings[0][2]
    # Naming an address of the pool is no way around its rules (nor is spec.loadBalancerIP).
    await cluster.service("named", annotations={"sart.terassyi.net/loadBalancerIPs": "10.107.1.7"})
    await cluster.service("legacy", loadBalancerIP="10.107.1.8")
    for name in ("named", "legacy"):
        warnings = await eventually(lambda name=name: _warnings(cluster, name))
        assert "serves only Services labelled tier=web" in warnings[0][2]
        assert await cluster.ingress(name) == ()
    body = {
        "metadata": {"name": "labelled", "annotations": chosen, "labels": {"tier": "web"}},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
    }
    await cluster.core.create_namespaced_service(cluster.namespace, body)
    assert await cluster.wait_ingress("labelled") == ("10.107.1.1",)
