"""Pod blocks against the real apiserver: BlockRequests become AddressBlocks announced from
their node; a restarted controller keeps them; a freed block serves a waiting request and its
advertisement goes at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from kubernetes_asyncio.client import CustomObjectsApi
from prometheus_client import generate_latest

from sart.k8s.models import GROUP, VERSION
from sart.k8s.runtime.blocks import BLOCK_LABEL, BlockController
from sart.testing.controlplane import unique_name
from sart.testing.crds import apply_crds
from waiting import until

pytestmark = [pytest.mark.k8s, pytest.mark.asyncio]


async def eventually(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    return await until(check, timeout, 0.05)


class Blocks:
    def __init__(self, k8s: Any, namespace: str) -> None:
        self.k8s, self.namespace = k8s, namespace
        self.custom = CustomObjectsApi(k8s)
        self.task: asyncio.Task[None] | None = None
        self.controller: BlockController | None = None

    def start(self) -> BlockController:
        controller = BlockController(self.k8s, advertise_namespace=self.namespace)
        self.task = asyncio.create_task(controller.run())
        self.controller = controller
        return controller

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    async def create(self, plural: str, kind: str, name: str, spec: dict[str, Any]) -> None:
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": {"name": name},
                "spec": spec}  # fmt: skip
        await self.custom.create_cluster_custom_object(GROUP, VERSION, plural, body)

    async def blocks(self, pool: str) -> dict[str, tuple[str, str]]:
        listing = await self.custom.list_cluster_custom_object(GROUP, VERSION, "addressblocks")
        return {
            b["metadata"]["name"]: (b["spec"]["cidr"], b["spec"]["nodeRef"])
            for b in listing["items"]
            if b["spec"]["poolRef"] == pool
        }

    async def announced(self, block: str) -> list[str] | None:
        listing = await self.custom.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "bgpadvertisements",
            label_selector=f"{BLOCK_LABEL}={block}",
        )  # fmt: skip
        items = listing["items"]
        return [*items[0]["spec"]["nodes"], items[0]["spec"]["cidr"]] if items else None


@pytest_asyncio.fixture
async def blocks(k8s: Any, namespace: str) -> AsyncIterator[Blocks]:
    await apply_crds(k8s)
    made = Blocks(k8s, namespace)
    yield made
    await made.stop()


async def test_block_requests_become_announced_blocks(blocks: Blocks) -> None:
    pool = unique_name("pods")
    await blocks.create("addresspools", "AddressPool", pool,
                        {"cidr": "10.246.0.0/26", "type": "pod", "blockSize": 28})  # fmt: skip
    first_controller = blocks.start()
    for node in ("node-a", "node-b", "node-a", "node-c"):
        await blocks.create("blockrequests", "BlockRequest", unique_name("req"),
                            {"pool": pool, "node": node})  # fmt: skip

    async def four() -> dict[str, tuple[str, str]] | None:
        found = await blocks.blocks(pool)
        return found if len(found) == 4 else None

    made = await eventually(four)
    assert sorted(cidr for cidr, _ in made.values()) == [
        "10.246.0.0/28", "10.246.0.16/28", "10.246.0.32/28", "10.246.0.48/28",
    ]  # fmt: skip
    assert sorted(node for _, node in made.values()) == ["node-a", "node-a", "node-b", "node-c"]
    first = next(name for name, value in made.items() if value[0] == "10.246.0.0/28")
    node = made[first][1]
    assert await eventually(lambda: blocks.announced(first)) == [node, "10.246.0.0/28"]

    async def all_served() -> bool:  # the request is deleted after its block is announced
        listing = await blocks.custom.list_cluster_custom_object(GROUP, VERSION, "blockrequests")
        return not [r for r in listing["items"] if r["spec"]["pool"] == pool]

    await eventually(all_served)

    def measured() -> bool:
        exposed = generate_latest(first_controller.metrics.registry).decode()
        return (
            f'sart_controller_max_blocks{{pool="{pool}",type="pod"}} 4.0' in exposed
            and f'sart_controller_allocated_blocks{{pool="{pool}",type="pod"}} 4.0' in exposed
        )

    await eventually(measured)

    await blocks.stop()
    controller = blocks.start()  # a fresh controller adopts the four blocks
    await blocks.create(
        "blockrequests", "BlockRequest", "waiting", {"pool": pool, "node": "node-d"}
    )
    await eventually(lambda: "waiting" in controller.waiting)  # tried, and found no block
    assert len(await blocks.blocks(pool)) == 4  # the pool is full: the request waits
    await blocks.custom.delete_cluster_custom_object(GROUP, VERSION, "addressblocks", first)

    async def reused() -> bool:
        return ("10.246.0.0/28", "node-d") in (await blocks.blocks(pool)).values()

    await eventually(reused)

    async def unannounced() -> bool:  # by the controller, not the garbage collector's ~25 s
        return await blocks.announced(first) is None

    await eventually(unannounced, timeout=5.0)
    for name in await blocks.blocks(pool):
        await blocks.custom.delete_cluster_custom_object(GROUP, VERSION, "addressblocks", name)
    await blocks.custom.delete_cluster_custom_object(GROUP, VERSION, "addresspools", pool)


async def test_a_block_made_by_another_writer_after_start_is_never_handed_out(
    blocks: Blocks,
) -> None:
    """A leader that lost its Lease with a write in flight, or a block made by hand: the block
    shows up after this controller listed; its CIDR must not go to another node."""
    pool = unique_name("pods")
    await blocks.create("addresspools", "AddressPool", pool,
                        {"cidr": "10.247.0.0/28", "type": "pod", "blockSize": 29})  # fmt: skip
    controller = blocks.start()
    await eventually(lambda: controller.synced)
    await blocks.create("addressblocks", "AddressBlock", f"{pool}-late",
                        {"cidr": "10.247.0.0/29", "type": "pod", "poolRef": pool,
                         "nodeRef": "node-x", "autoAssign": False})  # fmt: skip
    await eventually(lambda: f"{pool}-late" in controller.allocator.blocks)
    await blocks.create("blockrequests", "BlockRequest", unique_name("req"),
                        {"pool": pool, "node": "node-y"})  # fmt: skip

    async def served() -> dict[str, tuple[str, str]] | None:
        found = await blocks.blocks(pool)
        return found if len(found) == 2 else None

    made = await eventually(served)
    assert sorted(made.values()) == [("10.247.0.0/29", "node-x"), ("10.247.0.8/29", "node-y")]
    for name in made:
        await blocks.custom.delete_cluster_custom_object(GROUP, VERSION, "addressblocks", name)
    await blocks.custom.delete_cluster_custom_object(GROUP, VERSION, "addresspools", pool)
