"""The runtime keeps the truth when things break, against the real apiserver: a watch cut while
objects are deleted, leader election through transient errors and clock skew, Events
aggregated, a pool deleted while in use, block requests served once however often a write
fails, and the apiserver with etcd stopped and started again under running daemons. (SIGKILL
and SIGSTOP of real controller processes: test_controller_chaos.py.)"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from kubernetes_asyncio.client import ApiClient, CoordinationV1Api, CoreV1Api, CustomObjectsApi
from kubernetes_asyncio.client.exceptions import ApiException

from sart.api.client import SpeakerClient
from sart.k8s.models import GROUP, VERSION
from sart.k8s.runtime.agent import NodeAgent
from sart.k8s.runtime.blocks import REQUEST_LABEL, BlockController
from sart.k8s.runtime.controller import COMPONENT as CONTROLLER_COMPONENT
from sart.k8s.runtime.controller import LoadBalancerController
from sart.k8s.runtime.leader import LeaderElection
from sart.k8s.runtime.outcome import LeadershipLost
from sart.k8s.runtime.watch import WatchStats
from sart.testing.controlplane import ControlPlane, unique_name
from sart.testing.crds import apply_crds
from sart.testing.proxy import TcpProxy, proxied_kubeconfig
from waiting import until

pytestmark = [pytest.mark.k8s, pytest.mark.asyncio]


async def eventually(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    return await until(check, timeout, 0.05)


async def make_pool(custom: CustomObjectsApi, cidr: str, **spec: Any) -> str:
    name = unique_name("pool")
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "AddressPool", "metadata": {"name": name},
            "spec": {"cidr": cidr, "type": "service", **spec}}  # fmt: skip
    await custom.create_cluster_custom_object(GROUP, VERSION, "addresspools", body)
    return name


async def make_node_bgp(custom: CustomObjectsApi, node: str, speaker: str) -> None:
    """The node's NodeBGP, with the AS and router id the `speaker` fixture's sartd has."""
    spec = {"asn": 65010, "routerId": "10.255.0.1", "speaker": {"path": speaker}}
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "NodeBGP", "metadata": {"name": node},
            "spec": spec}  # fmt: skip
    await custom.create_cluster_custom_object(GROUP, VERSION, "nodebgps", body)


async def make_service(core: CoreV1Api, namespace: str, name: str, **annotations: str) -> None:
    body = {
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}], "selector": {"app": name}},
    }
    await core.create_namespaced_service(namespace, body)


async def ingress(core: CoreV1Api, namespace: str, name: str) -> tuple[str, ...]:
    service = await core.read_namespaced_service(name, namespace)
    balancer = service.status.load_balancer
    return tuple(i.ip for i in (balancer.ingress or [])) if balancer else ()


async def forget(core: CoreV1Api, namespace: str, name: str) -> None:
    """Delete a Service: it vanishes at once (sart puts no finalizer on it), nothing waits
    for the controller."""
    try:
        await core.delete_namespaced_service(name, namespace)
    except ApiException as error:
        if error.status != 404:
            raise


@pytest.fixture
def speaker(tmp_path: Path) -> Iterator[str]:
    """A real `sartd bgp` (no peers) with its API on a unix socket; yields the endpoint."""
    socket_path = tmp_path / "bgp.sock"
    process = subprocess.Popen(
        [sys.executable, "-m", "sart.cli.sartd", "bgp", "--as", "65010",
         "--router-id", "10.255.0.1", "--port", "0", "--api-address", f"unix:{socket_path}",
         "--metrics-address", ""],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not socket_path.exists():  # serving once its socket is there
            assert process.poll() is None, "sartd bgp exited"
            assert time.monotonic() < deadline, "sartd bgp did not start"
            time.sleep(0.05)
        yield f"unix:{socket_path}"
    finally:
        process.terminate()
        process.wait(timeout=10)


async def local_paths(endpoint: str) -> set[str]:
    async with SpeakerClient(endpoint) as client:
        return {p.prefix for p in await client.rib() if p.source == "local"}


async def test_a_watch_cut_while_objects_are_deleted(
    k8s: ApiClient, proxied: ApiClient, proxy: TcpProxy, namespace: str, speaker: str
) -> None:
    """The controller and the agent reach the apiserver through a proxy; the proxy refuses
    them while two Services vanish and an advertisement is deleted: once they are back, the
    Services' addresses are free again and the node's speaker no longer announces them."""
    await apply_crds(k8s)
    core, custom = CoreV1Api(k8s), CustomObjectsApi(k8s)
    pool = await make_pool(custom, "10.120.0.0/29", autoAssign=True)
    node = unique_name("node")
    await make_node_bgp(custom, node, speaker)
    stats = WatchStats()
    controller = LoadBalancerController(proxied)
    agent = NodeAgent(proxied, node, speaker, stats=stats)
    tasks = [asyncio.create_task(controller.run()), asyncio.create_task(agent.run())]
    try:
        for name in ("a", "b", "c"):
            await make_service(core, namespace, name)
        addresses = {n: (await eventually(lambda n=n: ingress(core, namespace, n)))[0]
                     for n in ("a", "b", "c")}  # fmt: skip
        assert sorted(addresses.values()) == ["10.120.0.1", "10.120.0.2", "10.120.0.3"]
        announced = {f"{a}/32" for a in addresses.values()}
        await eventually(lambda: _has(local_paths(speaker), announced))

        failures = stats.failures
        proxy.refuse()
        proxy.cut()  # every watch of both daemons breaks; reconnecting fails until accept()
        await forget(core, namespace, "a")
        await forget(core, namespace, "b")
        await eventually(lambda: _no_service(core, namespace, "a", "b"))
        proxy.accept()

        # b's address is free again: the next Service gets the lowest free one, a's
        await make_service(core, namespace, "d")
        assert await eventually(lambda: ingress(core, namespace, "d")) == (addresses["a"],)
        await eventually(lambda: _has(
            local_paths(speaker), {f"{addresses['c']}/32", f"{addresses['a']}/32"},
            lacks=f"{addresses['b']}/32"))  # fmt: skip
        assert stats.failures > failures  # the agent's watches were cut for real
        assert not [t for t in tasks if t.done()]  # neither daemon died of it
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for name in ("c", "d"):
            await forget(core, namespace, name)
        await custom.delete_cluster_custom_object(GROUP, VERSION, "nodebgps", node)
        await custom.delete_cluster_custom_object(GROUP, VERSION, "addresspools", pool)


async def _has(paths: Any, wanted: set[str], lacks: str = "") -> bool:
    """Whether the speaker announces every one of `wanted` and not `lacks` (other tests'
    leftovers may add paths of their own)."""
    found = await paths
    return bool(wanted <= found and lacks not in found)


async def _no_service(core: CoreV1Api, namespace: str, *names: str) -> bool:
    left = {s.metadata.name for s in (await core.list_namespaced_service(namespace)).items}
    return not left & set(names)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_lease_expiry_is_judged_on_our_own_clock(k8s: ApiClient, namespace: str) -> None:
    """A holder whose renewTime looks ancient (its clock is behind ours) still holds the Lease
    while it keeps renewing; a standby takes it only after seeing no change for the lease
    duration on its own clock; the old leader, its renewals too old, is fenced."""
    api = CoordinationV1Api(k8s)
    clock = Clock()

    def election(identity: str) -> LeaderElection:
        return LeaderElection(api, name="skew", namespace=namespace, identity=identity,
                              duration=15.0, renew=2.0, clock=clock)  # fmt: skip

    leader, standby = election("one"), election("two")
    assert await leader.try_acquire()
    leader.fence()  # may write
    skewed = {"spec": {"renewTime": "2001-01-01T00:00:00.000000Z"}}
    await api.patch_namespaced_lease("skew", namespace, skewed)
    assert not await standby.try_acquire()  # an old renewTime is no reason to take over
    clock.now += 14.0
    assert not await standby.try_acquire()  # no change seen for 14 s < 15 s
    clock.now += 2.0
    with pytest.raises(LeadershipLost):
        leader.fence()  # 16 s without a renewal: past its renew deadline (10 s)
    assert await standby.try_acquire()
    assert not await leader.try_acquire()  # the record changed: the new holder is fresh


async def test_the_leader_rides_out_short_apiserver_outages(
    proxied: ApiClient, proxy: TcpProxy, namespace: str, k8s: ApiClient
) -> None:
    """Renewals failing for less than the renew deadline keep the leader leading; longer, and
    it stops at once with LeadershipLost."""
    election = LeaderElection(
        CoordinationV1Api(proxied), name="outage", namespace=namespace, identity="one",
        duration=4.0, renew=0.2, renew_deadline=2.5,
    )  # fmt: skip
    working = asyncio.Event()

    async def work() -> None:
        working.set()
        await asyncio.Event().wait()

    held = asyncio.create_task(election.hold(work))
    try:
        await asyncio.wait_for(working.wait(), 10)
        proxy.refuse()
        proxy.cut()
        await asyncio.sleep(1.0)  # the outage itself, shorter than the renew deadline
        proxy.accept()
        renewed = election._renewed_at
        await eventually(lambda: election._renewed_at != renewed)  # a renewal went through
        assert not held.done()
        proxy.refuse()
        proxy.cut()
        with pytest.raises(LeadershipLost):
            await asyncio.wait_for(held, 10)
    finally:
        proxy.accept()
        held.cancel()
        await asyncio.gather(held, return_exceptions=True)


async def test_events_are_aggregated(k8s: ApiClient, namespace: str) -> None:
    """A Service waiting on a full pool is told so once, with a count, not once per pass."""
    await apply_crds(k8s)
    core, custom = CoreV1Api(k8s), CustomObjectsApi(k8s)
    pool = await make_pool(custom, "10.121.0.0/32")
    controller = LoadBalancerController(k8s)
    task = asyncio.create_task(controller.run())
    chosen = {"sart.terassyi.net/addresspool": pool}
    try:
        await make_service(core, namespace, "first", **chosen)
        await eventually(lambda: ingress(core, namespace, "first"))
        await make_service(core, namespace, "waits", **chosen)
        key = f"{namespace}/waits"
        for round_ in range(4):  # each label change is one more reconcile of the waiting one
            patch = {"metadata": {"labels": {"round": str(round_)}}}
            await core.patch_namespaced_service("waits", namespace, patch)
            await eventually(lambda r=round_: _reconciled_at(controller, key, str(r)))
        events = await core.list_namespaced_event(
            namespace, field_selector="involvedObject.name=waits"
        )
        exhausted = [e for e in events.items if e.reason == "PoolExhausted"]
        assert len(exhausted) == 1
        assert exhausted[0].count >= 5 and exhausted[0].last_timestamp is not None
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        for name in ("first", "waits"):
            await forget(core, namespace, name)
        await custom.delete_cluster_custom_object(GROUP, VERSION, "addresspools", pool)


def _reconciled_at(controller: LoadBalancerController, key: str, round_: str) -> bool:
    service = controller.services.get(key)
    labels = service.labels if service is not None else {}
    return labels.get("round") == round_ and controller.idle(key)


async def test_a_pool_deleted_while_in_use(k8s: ApiClient, namespace: str) -> None:
    """Its addresses stay with their Services (told so by a Warning), no new address comes
    from it, even as the autoAssign pool; once its last address is released it is gone."""
    await apply_crds(k8s)
    core, custom = CoreV1Api(k8s), CustomObjectsApi(k8s)
    old = await make_pool(custom, "10.122.0.0/30", autoAssign=True)
    new = ""
    controller = LoadBalancerController(k8s)
    task = asyncio.create_task(controller.run())
    try:
        await make_service(core, namespace, "keeps")
        assert await eventually(lambda: ingress(core, namespace, "keeps")) == ("10.122.0.1",)
        await custom.delete_cluster_custom_object(GROUP, VERSION, "addresspools", old)
        await eventually(lambda: old in controller.allocator.retired)
        await make_service(core, namespace, "late")
        warnings = await eventually(lambda: _warnings(core, namespace, "late"))
        assert "no AddressPool with autoAssign" in warnings[0]
        assert await ingress(core, namespace, "late") == ()
        new = await make_pool(custom, "10.122.1.0/30", autoAssign=True)
        assert await eventually(lambda: ingress(core, namespace, "late")) == ("10.122.1.1",)
        await eventually(lambda: controller.idle(f"{namespace}/keeps"))
        assert await ingress(core, namespace, "keeps") == ("10.122.0.1",)  # not moved
        kept = await eventually(lambda: _warnings(core, namespace, "keeps"))
        assert f"AddressPool {old} was removed: 10.122.0.1 stays with this Service" in kept[0]
        await core.delete_namespaced_service("keeps", namespace)
        await eventually(lambda: old not in controller.allocator.pools)
        await eventually(lambda: _no_service(core, namespace, "keeps"))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        for name in ("keeps", "late"):
            if not await _no_service(core, namespace, name):
                await forget(core, namespace, name)
        if new:
            await custom.delete_cluster_custom_object(GROUP, VERSION, "addresspools", new)


async def _warnings(core: CoreV1Api, namespace: str, name: str) -> list[str]:
    """The controller's Warning messages about the Service (the apiserver's ClusterIP repair
    loop may add one of its own under load)."""
    events = await core.list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name}"
    )
    return [
        e.message
        for e in events.items
        if e.type == "Warning" and e.source and e.source.component == CONTROLLER_COMPONENT
    ]


async def test_a_block_request_is_served_once_whatever_fails(
    k8s: ApiClient, namespace: str
) -> None:
    """A controller that died after creating the AddressBlock (its request still there) and
    a BGPAdvertisement namespace that does not exist yet (every try fails): the request still
    gets exactly one block, announced once the namespace exists."""
    await apply_crds(k8s)
    custom, core = CustomObjectsApi(k8s), CoreV1Api(k8s)
    pool = unique_name("pods")
    await custom.create_cluster_custom_object(GROUP, VERSION, "addresspools", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "AddressPool", "metadata": {"name": pool},
        "spec": {"cidr": "10.247.0.0/24", "type": "pod", "blockSize": 28}})  # fmt: skip
    request = unique_name("req")
    await custom.create_cluster_custom_object(GROUP, VERSION, "blockrequests", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "BlockRequest",
        "metadata": {"name": request}, "spec": {"pool": pool, "node": "node-a"}})  # fmt: skip
    # What a controller killed right after its first write leaves behind:
    left = f"{pool}-node-a-10-247-0-0"
    await custom.create_cluster_custom_object(GROUP, VERSION, "addressblocks", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "AddressBlock",
        "metadata": {"name": left, "labels": {REQUEST_LABEL: request}},
        "spec": {"cidr": "10.247.0.0/28", "type": "pod", "poolRef": pool, "nodeRef": "node-a",
                 "autoAssign": False}})  # fmt: skip
    missing = unique_name("later")  # the advertisements' namespace, not there yet
    controller = BlockController(k8s, advertise_namespace=missing)
    controller._retries.backoff.rng = random.Random(3)
    task = asyncio.create_task(controller.run())
    try:
        await eventually(lambda: controller._retries.backoff.failures(request) >= 2)  # failed
        await core.create_namespace({"metadata": {"name": missing}})
        advertisement = await eventually(
            lambda: _get(custom.get_namespaced_custom_object(
                GROUP, VERSION, missing, "bgpadvertisements", left)),
            timeout=40,
        )  # fmt: skip
        assert advertisement["spec"]["cidr"] == "10.247.0.0/28"
        await eventually(lambda: request not in controller.requests)
        blocks = await custom.list_cluster_custom_object(GROUP, VERSION, "addressblocks")
        mine = [b["metadata"]["name"] for b in blocks["items"] if b["spec"]["poolRef"] == pool]
        assert mine == [left]  # one block, the one made before: no second allocation
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await custom.delete_cluster_custom_object(GROUP, VERSION, "addressblocks", left)
        await custom.delete_cluster_custom_object(GROUP, VERSION, "addresspools", pool)
        await core.delete_namespace(missing)


async def _get(call: Any) -> Any:
    try:
        return await call
    except Exception:  # not there yet
        return None


@pytest.fixture(scope="module")
def own_plane(control_plane: ControlPlane) -> Iterator[ControlPlane]:
    """A control plane of its own, to be stopped and started (the session's binaries)."""
    with ControlPlane(control_plane.bin_dir) as plane:
        yield plane


@pytest_asyncio.fixture
async def own_api(own_plane: ControlPlane) -> AsyncIterator[ApiClient]:
    async with await own_plane.api_client() as api:
        yield api


async def test_apiserver_and_etcd_restarted_under_running_daemons(
    own_plane: ControlPlane, own_api: ApiClient, tmp_path: Path, speaker: str
) -> None:
    """Services are being created when the apiserver and etcd stop; while the daemons are cut
    off, Services vanish and new ones come; the apiserver starts again with a new watch
    cache, so the daemons' watches must list again (410): controller and agent carry on
    without a restart, and apply everything that changed meanwhile."""
    api, plane = own_api, own_plane
    await apply_crds(api)
    core, custom = CoreV1Api(api), CustomObjectsApi(api)
    namespace = unique_name("restart")
    await core.create_namespace({"metadata": {"name": namespace}})
    pool = await make_pool(custom, "10.123.0.0/24", autoAssign=True)
    node = unique_name("node")
    await make_node_bgp(custom, node, speaker)
    with TcpProxy.from_url(plane.server) as proxy:
        kubeconfig = proxied_kubeconfig(plane.kubeconfig, proxy, tmp_path / "kubeconfig")
        async with await plane.api_client(kubeconfig) as daemons_api:
            controller = LoadBalancerController(daemons_api)
            agent = NodeAgent(daemons_api, node, speaker)
            tasks = [asyncio.create_task(controller.run()), asyncio.create_task(agent.run())]
            try:
                await _restart_under(plane, proxy, api, namespace, pool, agent, tasks, speaker)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)


async def _restart_under(
    plane: ControlPlane,
    proxy: TcpProxy,
    api: ApiClient,
    namespace: str,
    pool_name: str,
    agent: NodeAgent,
    tasks: list[asyncio.Task[None]],
    speaker: str,
) -> None:
    core = CoreV1Api(api)
    for index in range(20):
        await make_service(core, namespace, f"s{index}")
    # mid-reconcile: the controller is still writing addresses for these
    await asyncio.to_thread(plane.stop_components, "kube-apiserver", "etcd")
    await asyncio.to_thread(plane.start_components, "etcd", "kube-apiserver")
    await eventually(lambda: _all_served(core, namespace, [f"s{i}" for i in range(20)]), 60)

    lists = agent.stats.lists
    proxy.refuse()
    proxy.cut()
    await forget(core, namespace, "s0")
    await forget(core, namespace, "s1")
    for index in range(20, 25):
        await make_service(core, namespace, f"s{index}")
    await asyncio.to_thread(plane.stop_components, "kube-apiserver", "etcd")
    await asyncio.to_thread(plane.start_components, "etcd", "kube-apiserver")
    proxy.accept()

    names = [f"s{i}" for i in range(2, 25)]
    served = await eventually(lambda: _all_served(core, namespace, names), 60)
    assert len(set(served.values())) == len(names)  # distinct
    wanted = {f"{a}/32" for a in served.values()}

    async def announced_exactly() -> bool:
        paths = {p for p in await local_paths(speaker) if p.startswith("10.123.")}
        return paths == wanted

    await eventually(announced_exactly, 60)  # s0 and s1 withdrawn, s20-s24 announced
    assert agent.stats.lists > lists  # the agent had to list again: its version was gone
    assert not [t for t in tasks if t.done()]  # nothing died, nothing was restarted
    # s0's and s1's addresses were released: the pool counts only the 23 left
    custom = CustomObjectsApi(api)

    async def counted() -> bool:
        pool = await custom.get_cluster_custom_object(GROUP, VERSION, "addresspools", pool_name)
        return bool((pool.get("status") or {}).get("allocatedAddresses") == len(names))

    await eventually(counted, 30)


async def _all_served(core: CoreV1Api, namespace: str, names: list[str]) -> dict[str, str] | None:
    services = {s.metadata.name: s for s in (await core.list_namespaced_service(namespace)).items}
    served = {}
    for name in names:
        service = services.get(name)
        balancer = service.status.load_balancer if service is not None else None
        if balancer is None or not balancer.ingress:
            return None
        served[name] = balancer.ingress[0].ip
    return served


async def test_a_bug_in_a_detached_write_stops_the_controller_injected(
    k8s: ApiClient, namespace: str
) -> None:
    """A write that fails with something other than an apiserver answer (here an injected
    KeyError standing for a bug of ours: real parts cannot make one) ends the controller's run
    with that error, so the daemon exits 1 with its traceback, instead of the Service silently
    waiting forever."""
    await apply_crds(k8s)
    core, custom = CoreV1Api(k8s), CustomObjectsApi(k8s)
    pool = await make_pool(custom, "10.124.0.0/30", autoAssign=True)
    controller = LoadBalancerController(k8s)

    async def broken(*args: Any, **kwargs: Any) -> None:
        raise KeyError("a bug of ours")

    controller.core.patch_namespaced_service_status = broken  # type: ignore[method-assign]
    task = asyncio.create_task(controller.run())
    try:
        await make_service(core, namespace, "victim")
        with pytest.raises(ExceptionGroup) as failed:
            await asyncio.wait_for(task, 30)
        assert failed.group_contains(KeyError)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await forget(core, namespace, "victim")
        await custom.delete_cluster_custom_object(GROUP, VERSION, "addresspools", pool)
