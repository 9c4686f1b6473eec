"""Pod addresses on one node, as the agent's CNI side decides them. Pure: no I/O, no clock.

- Which pool: the pod's annotation `sart.terassyi.net/addresspool`, else its namespace's, else
  the pod pool with `autoAssign: true` (`choose_pools`). A pod takes one pool per IP family: a
  dual-stack pod gets an address of each (the annotation names both, or the autoAssign pool of
  each family is taken).
- Which address: the lowest free address of this node's blocks of that pool, the blocks taken
  lowest first (`NodeBlocks.allocate`); None when every block is full: the caller asks for one
  more block (a BlockRequest) and tries again when it comes. The caller asks early, when the
  free addresses fall below `low_water`, so that pods seldom wait for a block.
- Which blocks go back: a block that becomes empty is released, unless it is the node's last
  usable block of its pool (the next pod would wait for a new block otherwise, as Calico keeps
  a node's affine block). A block being released hands out nothing.
- The pool's own network and broadcast addresses (IPv4) and its Subnet-Router anycast address
  (IPv6) are never handed out; every other address of a block is, as each pod has a /32 (or
  /128) of its own and no subnet.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

import attrs
from netaddr import IPAddress, IPNetwork

from sart.errors import IpamError, NotAllocated, OutOfRange
from sart.ipam.pool import Pool
from sart.k8s.reconcile.blocks import BlockView

POOL_ANNOTATION = "sart.terassyi.net/addresspool"


class NoPool(IpamError):
    """No pod pool fits the pod: the one named does not exist, or none is autoAssign."""


@attrs.frozen(kw_only=True)
class PodPool:
    name: str
    cidr: IPNetwork
    block_size: int
    auto_assign: bool


@attrs.frozen
class PoolChoice:
    pools: tuple[PodPool, ...]  # one per IP family, IPv4 first
    why: str  # "pod annotation", "namespace annotation" or "autoAssign"


def _by_family(pools: list[PodPool]) -> tuple[PodPool, ...]:
    return tuple(sorted(pools, key=lambda p: p.cidr.version))


def choose_pools(
    pod_annotations: Mapping[str, str] | None,
    namespace_annotations: Mapping[str, str] | None,
    pools: Mapping[str, PodPool],
) -> PoolChoice:
    """The pools a pod's addresses come from: one, or one per family for a dual-stack pod.
    Raises NoPool saying which name did not fit."""
    for found, source in (
        (pod_annotations, "pod annotation"),
        (namespace_annotations, "namespace annotation"),
    ):
        named = ((found or {}).get(POOL_ANNOTATION) or "").strip()
        if not named:
            continue
        said = f"{source} {POOL_ANNOTATION}={named!r}"
        names = [n.strip() for n in named.split(",")]
        missing = [n for n in names if n not in pools]
        if missing:
            raise NoPool(f"{said}: no AddressPool of type pod is named {', '.join(missing)}")
        chosen = [pools[n] for n in names]
        if len({p.cidr.version for p in chosen}) != len(chosen):
            raise NoPool(f"{said}: a pod takes one pool per IP family")
        return PoolChoice(_by_family(chosen), source)
    auto: dict[int, PodPool] = {}
    for name in sorted(pools, reverse=True):  # the first name of each family wins
        if pools[name].auto_assign:
            auto[pools[name].cidr.version] = pools[name]
    if not auto:
        raise NoPool(
            f"no AddressPool of type pod has autoAssign: true, and neither the pod nor its "
            f"namespace names one with the annotation {POOL_ANNOTATION}"
        )
    return PoolChoice(_by_family(list(auto.values())), "autoAssign")


@attrs.frozen
class Allocation:
    address: IPAddress
    block: str  # the AddressBlock's name
    pool: str


def _never_handed_out(cidr: IPNetwork) -> tuple[IPAddress, ...]:
    """The pool's own network and broadcast addresses (IPv4), its Subnet-Router anycast
    address (IPv6, RFC 4291 2.6.1)."""
    if cidr.version == 4:
        return (cidr.network, cidr.broadcast) if cidr.prefixlen < 31 else ()
    return (cidr.network,) if cidr.prefixlen < 127 else ()


class _Block:
    def __init__(self, view: BlockView, pool: PodPool) -> None:
        self.view = view
        self.addresses = Pool(view.cidr, skip_network_and_broadcast=False)
        self.releasing = False
        for edge in _never_handed_out(pool.cidr):
            if edge in view.cidr:
                self.addresses.reserve(edge)

    @property
    def empty(self) -> bool:
        return self.addresses.used == 0

    @property
    def full(self) -> bool:
        return self.addresses.free == 0


class NodeBlocks:
    """This node's blocks of the pod pools and the addresses taken in each."""

    def __init__(self) -> None:
        self._blocks: dict[str, _Block] = {}

    def __contains__(self, name: object) -> bool:
        return name in self._blocks

    def __iter__(self) -> Iterator[BlockView]:
        return (block.view for block in self._sorted())

    def _sorted(self, pool: str | None = None) -> list[_Block]:
        return sorted(
            (b for b in self._blocks.values() if pool is None or b.view.pool == pool),
            key=lambda b: (b.view.pool, b.view.cidr.version, b.view.cidr.value),
        )

    def add_block(self, view: BlockView, pool: PodPool) -> None:
        """A block of this node appeared (or was there at start)."""
        if view.name not in self._blocks:
            self._blocks[view.name] = _Block(view, pool)

    def remove_block(self, name: str) -> tuple[IPAddress, ...]:
        """A block is gone; returns the addresses still handed out from it (orphans)."""
        block = self._blocks.pop(name, None)
        if block is None:
            return ()
        return tuple(block.addresses)

    def allocate(self, pool: str) -> Allocation | None:
        """The lowest free address of the pool's blocks; None when they are all full."""
        for block in self._sorted(pool):
            if block.releasing or block.full:
                continue
            return Allocation(block.addresses.allocate(), block.view.name, pool)
        return None

    def block_of(self, address: IPAddress) -> BlockView | None:
        for block in self._blocks.values():
            if address in block.view.cidr:
                return block.view
        return None

    def take(self, address: IPAddress) -> Allocation:
        """Adopt an address handed out before (an agent restart). Raises OutOfRange when no
        block of this node holds it, AddressInUse when it is taken already."""
        view = self.block_of(address)
        if view is None:
            raise OutOfRange(f"{address} is in no AddressBlock of this node")
        self._blocks[view.name].addresses.allocate(address)
        return Allocation(address, view.name, view.pool)

    def release(self, address: IPAddress) -> str | None:
        """Free an address; returns its block's name when that block may now be released."""
        view = self.block_of(address)
        if view is None:
            raise NotAllocated(f"{address} is in no AddressBlock of this node")
        self._blocks[view.name].addresses.release(address)
        return view.name if self.releasable(view.name) else None

    def releasable(self, name: str) -> bool:
        """Empty, and not the node's last usable block of its pool."""
        block = self._blocks.get(name)
        if block is None or block.releasing or not block.empty:
            return False
        others = [b for b in self._sorted(block.view.pool) if b is not block and not b.releasing]
        return bool(others)

    def begin_release(self, name: str) -> BlockView:
        """Hand nothing more out of this block; the caller deletes its AddressBlock."""
        block = self._blocks[name]
        block.releasing = True
        return block.view

    def cancel_release(self, name: str) -> None:
        """Deleting the AddressBlock failed: the block serves again."""
        if name in self._blocks:
            self._blocks[name].releasing = False

    def free(self, pool: str) -> int:
        """Addresses the pool's usable blocks (not being released) still have."""
        return sum(b.addresses.free for b in self._sorted(pool) if not b.releasing)

    def used(self, pool: str | None = None) -> int:
        return sum(b.addresses.used for b in self._sorted(pool))

    def blocks_of(self, pool: str) -> tuple[BlockView, ...]:
        return tuple(b.view for b in self._sorted(pool))


def low_water(pool: PodPool) -> int:
    """Ask for the next block when the node's free addresses of the pool fall below this: a
    quarter of a block (at least one address), so pods seldom wait for a block to come."""
    return max(1, (1 << ((32 if pool.cidr.version == 4 else 128) - pool.block_size)) // 4)


def pool_capacity(pool: PodPool) -> int:
    """How many blocks the pool holds in all."""
    shift: int = pool.block_size - pool.cidr.prefixlen
    return 1 << shift


def pool_exhausted(pool: PodPool, blocks: Iterable[BlockView]) -> bool:
    """Every block of the pool belongs to some node already (seen cluster-wide)."""
    return sum(1 for b in blocks if b.pool == pool.name) >= pool_capacity(pool)
