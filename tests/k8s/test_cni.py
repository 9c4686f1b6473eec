"""The agent's CNI side against the real apiserver, with real network namespaces as a node and
its pods, driven by the real `sart-cni` executable: addresses from the right pool, pods that
ping their node, blocks that come and go, a restart that keeps everything, garbage collection,
100 ADDs at once, and bad input answered with the spec's errors and nothing left behind."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from kubernetes_asyncio.client import ApiClient, CoreV1Api, CustomObjectsApi
from kubernetes_asyncio.client.exceptions import ApiException
from netaddr import IPAddress, IPNetwork

from sart.cni.spec import ErrorCode
from sart.k8s.models import GROUP, VERSION
from sart.k8s.reconcile.pods import POOL_ANNOTATION
from sart.k8s.runtime.blocks import BlockController
from sart.k8s.runtime.cni import CniService
from sart.testing.controlplane import unique_name
from sart.testing.crds import apply_crds
from sart.testing.netns import Namespace, enter
from sart.testing.rbac import account_configuration, apply_shipped_rbac
from waiting import until

pytestmark = [pytest.mark.k8s, pytest.mark.asyncio]

PLUGIN = shutil.which("sart-cni", path=str(Path(sys.executable).parent)) or "sart-cni"
NODE_ADDRESS = "192.0.2.1"


async def eventually(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    return await until(check, timeout, 0.05)


class Node:
    """A lab node: a network namespace with an address, and the agent's CNI side whose netlink
    work runs in threads that entered it (the agent itself runs in this process)."""

    def __init__(self, k8s: Any, name: str, socket: Path) -> None:
        self.k8s, self.name, self.socket = k8s, name, socket
        self.netns = Namespace.create("node")
        self.netns.add_address("lo", f"{NODE_ADDRESS}/32")
        self.service: CniService | None = None
        self.task: asyncio.Task[None] | None = None
        self.executors: list[ThreadPoolExecutor] = []

    async def start(self, api: Any = None, **options: Any) -> CniService:
        executor = ThreadPoolExecutor(16, initializer=enter, initargs=(self.netns,))
        self.executors.append(executor)
        service = CniService(
            api or self.k8s, self.name, socket_path=str(self.socket), executor=executor, **options
        )
        self.service, self.task = service, asyncio.create_task(service.run())
        await asyncio.wait_for(service.ready.wait(), 20)
        return service

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            self.task = None

    def close(self) -> None:
        for executor in self.executors:
            executor.shutdown(wait=True)
        self.netns.delete()


class Cluster:
    def __init__(self, k8s: Any, namespace: str, tmp: Path) -> None:
        self.k8s, self.namespace, self.tmp = k8s, namespace, tmp
        self.custom = CustomObjectsApi(k8s)
        self.core = CoreV1Api(k8s)
        self.pods: list[Namespace] = []
        self.pools: list[str] = []
        self.nodes: list[Node] = []
        self.blocks = BlockController(k8s, advertise_namespace=namespace)
        self.block_task = asyncio.create_task(self.blocks.run())

    def node(self, name: str = "node-a") -> Node:
        made = Node(self.k8s, unique_name(name), self.tmp / f"{name}.sock")
        self.nodes.append(made)
        return made

    async def pool(self, cidr: str, block_size: int, *, auto: bool = False) -> str:
        name = unique_name("pods")
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "AddressPool",
            "metadata": {"name": name},
            "spec": {"cidr": cidr, "type": "pod", "blockSize": block_size, "autoAssign": auto},
        }
        await self.custom.create_cluster_custom_object(GROUP, VERSION, "addresspools", body)
        self.pools.append(name)
        return name

    async def pod(
        self, node: Node, *, namespace: str | None = None, annotations: dict[str, str] | None = None
    ) -> tuple[str, Namespace]:
        """A Pod object bound to the node, and a network namespace standing for its sandbox."""
        name = unique_name("pod")
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "annotations": annotations or {}},
            "spec": {
                "nodeName": node.name,
                "containers": [{"name": "app", "image": "registry.invalid/sart/none:0"}],
            },
        }
        await self.core.create_namespaced_pod(namespace or self.namespace, body)
        return name, self.sandbox()

    def sandbox(self) -> Namespace:
        made = Namespace.create("pod")
        self.pods.append(made)
        return made

    async def blocks_of(self, pool: str) -> dict[str, str]:
        listing = await self.custom.list_cluster_custom_object(GROUP, VERSION, "addressblocks")
        return {
            b["metadata"]["name"]: b["spec"]["cidr"]
            for b in listing["items"]
            if b["spec"]["poolRef"] == pool
        }

    async def close(self) -> None:
        for node in self.nodes:
            await node.stop()
        self.block_task.cancel()
        await asyncio.gather(self.block_task, return_exceptions=True)
        for node in self.nodes:
            node.close()
        for pod in self.pods:
            pod.delete()
        for pool in self.pools:
            listing = await self.custom.list_cluster_custom_object(GROUP, VERSION, "addressblocks")
            for block in listing["items"]:
                if block["spec"]["poolRef"] == pool:
                    await self._delete("addressblocks", block["metadata"]["name"])
            await self._delete("addresspools", pool)

    async def _delete(self, plural: str, name: str) -> None:
        try:
            await self.custom.delete_cluster_custom_object(GROUP, VERSION, plural, name)
        except ApiException as error:
            if error.status != 404:
                raise


@pytest_asyncio.fixture
async def cluster(k8s: Any, namespace: str, tmp_path: Path) -> AsyncIterator[Cluster]:
    await apply_crds(k8s)
    made = Cluster(k8s, namespace, tmp_path)
    try:
        yield made
    finally:
        await made.close()


async def cni(
    node: Node,
    command: str,
    container: str,
    sandbox: Namespace | None,
    *,
    pod: tuple[str, str] | None = None,
    ifname: str = "eth0",
    version: str = "1.0.0",
    extra: dict[str, Any] | None = None,
) -> tuple[int, dict[str, Any]]:
    """Run the real sart-cni as a runtime would; returns its exit code and its JSON output."""
    config = {"cniVersion": version, "name": "sart", "type": "sart-cni", "socket": str(node.socket)}
    config.update(extra or {})
    env = {
        "PATH": os.environ.get("PATH", ""),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container,
        "CNI_NETNS": f"/run/netns/{sandbox.name}" if sandbox is not None else "",
        "CNI_IFNAME": ifname,
        "CNI_PATH": "/opt/cni/bin",
    }
    if pod is not None:
        env["CNI_ARGS"] = f"K8S_POD_NAMESPACE={pod[0]};K8S_POD_NAME={pod[1]}"
    process = await asyncio.create_subprocess_exec(
        PLUGIN,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await process.communicate(json.dumps(config).encode())
    assert process.returncode is not None
    return process.returncode, json.loads(out) if out.strip() else {"stderr": err.decode()}


def address_of(result: dict[str, Any]) -> IPAddress:
    return IPNetwork(result["ips"][0]["address"]).ip


RUN = os.urandom(28).hex()  # container ids unique to this run, the same for the same n


def container_id(n: int = 0) -> str:
    return f"{RUN}{n:08x}"


async def ping(sandbox: Namespace, address: str) -> bool:
    process = await asyncio.create_subprocess_exec(
        *sandbox.command(["ping", "-c", "1", "-W", "1", address]),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    return await process.wait() == 0


async def test_addresses_come_from_the_right_pool_and_pods_ping_their_node(
    cluster: Cluster,
) -> None:
    default = await cluster.pool("10.110.0.0/24", 29, auto=True)
    named = await cluster.pool("10.111.0.0/24", 29)
    spaced = await cluster.pool("10.112.0.0/24", 29)
    node = cluster.node()
    await node.start()
    other_namespace = unique_name("annotated")
    await cluster.core.create_namespace(
        {"metadata": {"name": other_namespace, "annotations": {POOL_ANNOTATION: spaced}}}
    )
    try:
        plain = await cluster.pod(node)
        annotated = await cluster.pod(node, annotations={POOL_ANNOTATION: named})
        in_space = await cluster.pod(node, namespace=other_namespace)
        results = {}
        for label, (pod, sandbox), space in (
            ("plain", plain, cluster.namespace),
            ("annotated", annotated, cluster.namespace),
            ("in_space", in_space, other_namespace),
        ):
            code, result = await cni(node, "ADD", label * 8, sandbox, pod=(space, pod))
            assert code == 0, result
            results[label] = result
        assert address_of(results["plain"]) == IPAddress("10.110.0.1")
        assert address_of(results["annotated"]) == IPAddress("10.111.0.1")
        assert address_of(results["in_space"]) == IPAddress("10.112.0.1")
        assert results["plain"]["cniVersion"] == "1.0.0"
        assert [i.get("sandbox") for i in results["plain"]["interfaces"]][1].endswith(plain[1].name)
        for _, sandbox in (plain, annotated, in_space):
            assert await ping(sandbox, NODE_ADDRESS)
        assert await ping(node.netns, "10.110.0.1")  # and the node reaches the pod

        previous = {"prevResult": results["plain"]}
        checked = await cni(node, "CHECK", "plain" * 8, plain[1], extra=previous)
        assert checked == (0, {"stderr": ""})
        # DEL frees the address: the next pod gets it; a second DEL is fine
        assert (await cni(node, "DEL", "plain" * 8, plain[1]))[0] == 0
        assert (await cni(node, "DEL", "plain" * 8, plain[1]))[0] == 0
        again = await cluster.pod(node)
        code, result = await cni(
            node, "ADD", "again" * 8, again[1], pod=(cluster.namespace, again[0])
        )
        assert code == 0 and address_of(result) == IPAddress("10.110.0.1")
        assert {default, named, spaced} <= set(cluster.pools)
    finally:
        await cluster.core.delete_namespace(other_namespace)


async def test_a_dual_stack_pod_gets_an_address_of_each_family(cluster: Cluster) -> None:
    await cluster.pool("10.119.0.0/24", 28, auto=True)
    await cluster.pool("fd00:119::/112", 120, auto=True)
    node = cluster.node()
    node.netns.add_address("lo", "2001:db8:119::1/128")
    service = await node.start()
    pod, sandbox = await cluster.pod(node)
    code, result = await cni(node, "ADD", container_id(), sandbox, pod=(cluster.namespace, pod))
    assert code == 0, result
    assert [ip["address"] for ip in result["ips"]] == ["10.119.0.1/32", "fd00:119::1/128"]
    assert [route["dst"] for route in result["routes"]] == ["0.0.0.0/0", "::/0"]
    assert await ping(sandbox, NODE_ADDRESS)
    assert await ping(sandbox, "2001:db8:119::1")
    await node.stop()
    service = await node.start()  # both taken back from the kernel
    assert service.blocks.used() == 2
    assert (await cni(node, "DEL", container_id(), sandbox))[0] == 0
    assert service.blocks.used() == 0


async def test_a_full_block_brings_a_second_and_an_empty_one_goes_back(cluster: Cluster) -> None:
    pool = await cluster.pool("10.113.0.0/24", 30, auto=True)
    node = cluster.node()
    service = await node.start()
    got = []
    for n in range(4):  # the first /30 holds three: 10.113.0.0 is the pool's network address
        code, result = await cni(node, "ADD", container_id(n), cluster.sandbox())
        assert code == 0, result
        got.append(str(address_of(result)))
    assert got == ["10.113.0.1", "10.113.0.2", "10.113.0.3", "10.113.0.4"]
    blocks = await cluster.blocks_of(pool)
    assert sorted(blocks.values()) == ["10.113.0.0/30", "10.113.0.4/30"]
    last = cluster.pods[-1]
    code, _ = await cni(node, "DEL", container_id(3), last)
    assert code == 0

    async def released() -> bool:
        return sorted((await cluster.blocks_of(pool)).values()) == ["10.113.0.0/30"]

    await eventually(released)
    assert service.blocks.used(pool) == 3


async def test_a_restart_keeps_every_allocation_and_gc_removes_leaked_ones(
    cluster: Cluster,
) -> None:
    await cluster.pool("10.114.0.0/24", 28, auto=True)
    node = cluster.node()
    await node.start()
    pods = [await cluster.pod(node) for _ in range(3)]
    made = {}
    for n, (pod, sandbox) in enumerate(pods):
        code, result = await cni(
            node, "ADD", container_id(n), sandbox, pod=(cluster.namespace, pod)
        )
        assert code == 0, result
        made[n] = address_of(result)
    before = dict(node.service.attachments) if node.service else {}
    await node.stop()
    service = await node.start()  # a new agent: everything read back from the kernel
    assert service.attachments == before
    fresh = cluster.sandbox()
    code, result = await cni(node, "ADD", container_id(9), fresh)
    assert code == 0 and address_of(result) not in made.values()

    # a pod deleted without a DEL, and a sandbox gone without one
    await cluster.core.delete_namespaced_pod(pods[0][0], cluster.namespace, grace_period_seconds=0)
    pods[1][1].delete()
    assert await service.collect_garbage() == 2
    assert len(service.attachments) == 2
    freed = {made[0], made[1]}
    code, result = await cni(node, "ADD", container_id(10), cluster.sandbox())
    assert code == 0 and address_of(result) in freed
    assert await service.collect_garbage() == 0


async def test_a_hundred_adds_at_once_get_a_hundred_addresses(cluster: Cluster) -> None:
    await cluster.pool("10.115.0.0/22", 26, auto=True)
    node = cluster.node()
    await node.start()
    sandboxes = [cluster.sandbox() for _ in range(100)]
    results = await asyncio.gather(
        *(cni(node, "ADD", container_id(n), s) for n, s in enumerate(sandboxes))
    )
    assert all(code == 0 for code, _ in results), [r for c, r in results if c][:3]
    addresses = {address_of(result) for _, result in results}
    assert len(addresses) == 100
    dels = await asyncio.gather(
        *(cni(node, "DEL", container_id(n), s) for n, s in enumerate(sandboxes))
    )
    assert all(code == 0 for code, _ in dels)


async def test_bad_calls_get_the_specs_errors_and_leave_nothing_behind(cluster: Cluster) -> None:
    await cluster.pool("10.116.0.0/30", 30, auto=True)  # one block of two usable addresses
    node = cluster.node()
    service = await node.start()
    pod, sandbox = await cluster.pod(node, annotations={POOL_ANNOTATION: "no-such-pool"})
    code, error = await cni(node, "ADD", container_id(), sandbox, pod=(cluster.namespace, pod))
    assert code == 1 and error["code"] == ErrorCode.UNKNOWN_POOL
    assert "no-such-pool" in error["msg"]

    gone = Namespace(unique_name("missing"))
    code, error = await cni(node, "ADD", container_id(1), gone)
    assert code == 1 and error["code"] == ErrorCode.UNKNOWN_CONTAINER, error
    assert service.attachments == {} and service.blocks.used() == 0

    taken = []
    for n in range(3):
        code, result = await cni(node, "ADD", container_id(n + 2), cluster.sandbox())
        taken.append((code, result))
    assert [code for code, _ in taken[:2]] == [0, 0]
    code, error = taken[2]
    assert code == 1 and error["code"] == ErrorCode.POOL_EXHAUSTED, error
    assert "exhausted" in error["msg"]

    unknown = {"prevResult": {"cniVersion": "1.0.0", "interfaces": [], "ips": []}}
    code, error = await cni(node, "CHECK", container_id(99), cluster.sandbox(), extra=unknown)
    assert code == 1 and error["code"] == ErrorCode.UNKNOWN_CONTAINER

    assert (await cni(node, "STATUS", "", None, version="1.1.0"))[0] == 0
    listing = await asyncio.to_thread(node.netns.ip_json, "link", "show")
    assert len([link for link in listing if link["ifname"].startswith("sart")]) == 2


async def test_check_names_what_is_wrong(cluster: Cluster) -> None:
    await cluster.pool("10.117.0.0/24", 28, auto=True)
    node = cluster.node()
    await node.start()
    sandbox = cluster.sandbox()
    code, result = await cni(node, "ADD", container_id(), sandbox)
    assert code == 0
    previous = {"prevResult": result}
    assert (await cni(node, "CHECK", container_id(), sandbox, extra=previous))[0] == 0
    sandbox.ip("route", "del", "default")
    code, error = await cni(node, "CHECK", container_id(), sandbox, extra=previous)
    assert code == 1 and error["code"] == ErrorCode.CHECK_FAILED
    assert "route" in error.get("details", "") + error["msg"]


async def test_the_cni_side_runs_with_exactly_the_shipped_rbac(cluster: Cluster) -> None:
    """manifests/deploy/rbac.yaml's sart-agent account may do all the CNI side does:
    watch pools, blocks, its pods and the namespaces, ask for a block, release an empty one."""
    await apply_shipped_rbac(cluster.k8s)
    configuration = await account_configuration(cluster.k8s, "sart-agent")
    pool = await cluster.pool("10.118.0.0/24", 30, auto=True)
    node = cluster.node()
    async with ApiClient(configuration) as restricted:
        service = await node.start(restricted)
        added = []
        for n in range(4):  # the second block is asked for
            pod, sandbox = await cluster.pod(node)
            code, result = await cni(node, "ADD", container_id(n), sandbox,
                                     pod=(cluster.namespace, pod))  # fmt: skip
            assert code == 0, result
            added.append(sandbox)
        assert (await cni(node, "DEL", container_id(3), added[3]))[0] == 0

        async def released() -> bool:
            return sorted((await cluster.blocks_of(pool)).values()) == ["10.118.0.0/30"]

        await eventually(released)
        assert await service.collect_garbage() == 0
        await node.stop()
