"""Pod address blocks: a node agent asks (BlockRequest), the controller carves the next free
block of the pod pool (AddressBlock) for that node, and the block is announced from that node
(BGPAdvertisement). Pure: the allocator lives in memory and is rebuilt from the AddressBlocks at
start, so a block is never handed out twice."""

from __future__ import annotations

from collections.abc import Iterable

import attrs
from netaddr import IPNetwork

from sart.errors import IpamError
from sart.ipam.blocks import BlockPool


@attrs.frozen(kw_only=True)
class PodPoolView:
    name: str
    cidr: IPNetwork
    block_size: int  # prefix length of each block


@attrs.frozen(kw_only=True)
class BlockView:
    name: str
    pool: str
    cidr: IPNetwork
    node: str


def block_name(pool: str, node: str, cidr: IPNetwork) -> str:
    """Stable and DNS-safe: the pool, the node and the block's network address."""
    digits = str(cidr.network).replace(".", "-") if cidr.version == 4 else f"{cidr.value:032x}"
    return f"{pool}-{node}-{digits}"


class PodBlockAllocator:
    def __init__(self) -> None:
        self.pools: dict[str, BlockPool] = {}
        self.views: dict[str, PodPoolView] = {}
        self.blocks: dict[str, BlockView] = {}  # by AddressBlock name

    def set_pools(self, pools: Iterable[PodPoolView]) -> list[str]:
        problems = []
        wanted = {p.name: p for p in pools}
        for name in list(self.pools):
            if name not in wanted and not any(b.pool == name for b in self.blocks.values()):
                del self.pools[name], self.views[name]
        for name, view in wanted.items():
            if self.views.get(name) == view:
                continue
            if name in self.pools:
                problems.append(f"AddressPool {name} changed while it has blocks; kept as it was")
                continue
            try:
                self.pools[name] = BlockPool(view.cidr, view.block_size)
                self.views[name] = view
            except IpamError as error:
                problems.append(f"AddressPool {name}: {error}")
        return problems

    def adopt(self, blocks: Iterable[BlockView]) -> list[str]:
        """Start-up: take over the existing AddressBlocks; returns conflicts."""
        conflicts = []
        for block in sorted(blocks, key=lambda b: b.name):
            pool = self.pools.get(block.pool)
            if pool is None:
                conflicts.append(f"AddressBlock {block.name}: no pod pool {block.pool}")
                continue
            try:
                pool.allocate_block(block.cidr)
            except IpamError as error:
                conflicts.append(f"AddressBlock {block.name}: {error}")
                continue
            self.blocks[block.name] = block
        return conflicts

    def request(self, pool_name: str, node: str) -> BlockView:
        """The next free block of the pool for the node (IpamError when there is none)."""
        pool = self.pools.get(pool_name)
        if pool is None:
            raise IpamError(f"no AddressPool {pool_name!r} of type pod")
        cidr = pool.allocate_block().cidr
        block = BlockView(
            name=block_name(pool_name, node, cidr), pool=pool_name, cidr=cidr, node=node
        )
        self.blocks[block.name] = block
        return block

    def release(self, name: str) -> None:
        block = self.blocks.pop(name, None)
        if block is not None and block.pool in self.pools:
            self.pools[block.pool].release_block(block.cidr)
