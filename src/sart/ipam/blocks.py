"""A CIDR carved into equal blocks, handed out lowest first, each block a Pool of its own.

This is AddressPool of `type: pod` in sart: every node gets a block (say a /26 of a /16) and
hands out pod addresses from it; the node announces the whole block. For `type: service` the
block is the whole CIDR.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import attrs
from netaddr import IPAddress, IPNetwork

from sart.errors import AddressInUse, AllocationConflict, NotAllocated, OutOfRange, PoolExhausted
from sart.ipam.bitmap import Bitmap, new_bitmap
from sart.ipam.pool import SNAPSHOT_VERSION, Pool, PoolSnapshot, parse_address, parse_cidr


@attrs.frozen(kw_only=True)
class BlockPoolSnapshot:
    """A block pool's state, version 1: its settings and one PoolSnapshot per block."""

    version: int
    cidr: str
    block_prefixlen: int
    release_empty_blocks: bool
    skip_network_and_broadcast: bool
    blocks: tuple[PoolSnapshot, ...]


class BlockPool:
    """Blocks of /block_prefixlen out of a CIDR. With release_empty_blocks, a block goes back
    to the pool when its last address is released."""

    def __init__(
        self,
        cidr: IPNetwork | str,
        block_prefixlen: int,
        *,
        release_empty_blocks: bool = False,
        skip_network_and_broadcast: bool = False,
    ) -> None:
        self.cidr = parse_cidr(cidr)
        width = 32 if self.cidr.version == 4 else 128
        if not self.cidr.prefixlen <= block_prefixlen <= width:
            raise OutOfRange(
                f"block size /{block_prefixlen} does not fit in {self.cidr}: it must be "
                f"between /{self.cidr.prefixlen} and /{width}"
            )
        self.block_prefixlen = block_prefixlen
        self.release_empty_blocks = release_empty_blocks
        self.skip_network_and_broadcast = skip_network_and_broadcast
        self._shift = width - block_prefixlen
        self._first = int(self.cidr.network)
        self._taken: Bitmap = new_bitmap(1 << (block_prefixlen - self.cidr.prefixlen))
        self._blocks: dict[int, Pool] = {}

    def __repr__(self) -> str:
        return f"BlockPool({str(self.cidr)!r}, /{self.block_prefixlen}, blocks={len(self._blocks)})"

    @property
    def capacity(self) -> int:
        """How many blocks the CIDR holds."""
        return self._taken.size

    def _index(self, block: IPNetwork | str) -> int:
        network = parse_cidr(block)
        if network.prefixlen != self.block_prefixlen or network not in self.cidr:
            raise OutOfRange(f"{network} is not a /{self.block_prefixlen} block of {self.cidr}")
        index: int = (int(network.network) - self._first) >> self._shift
        return index

    def _cidr(self, index: int) -> IPNetwork:
        return IPNetwork(
            (self._first + (index << self._shift), self.block_prefixlen), self.cidr.version
        )

    def allocate_block(self, block: IPNetwork | str | None = None) -> Pool:
        """The lowest free block, or the given one. Raises PoolExhausted, AddressInUse or
        OutOfRange, changing nothing."""
        if block is None:
            try:
                index = self._taken.allocate()
            except PoolExhausted:
                raise PoolExhausted(
                    f"{self.cidr} has no free /{self.block_prefixlen} block"
                ) from None
        else:
            index = self._index(block)
            if index in self._taken:
                raise AddressInUse(f"block {self._cidr(index)} is already allocated")
            self._taken.allocate_at(index)
        pool = Pool(self._cidr(index), skip_network_and_broadcast=self.skip_network_and_broadcast)
        self._blocks[index] = pool
        return pool

    def release_block(self, block: IPNetwork | str) -> None:
        """Give a block back. Raises NotAllocated, or AddressInUse while it has addresses."""
        index = self._index(block)
        pool = self._blocks.get(index)
        if pool is None:
            raise NotAllocated(f"block {self._cidr(index)} is not allocated")
        if pool.used:
            raise AddressInUse(f"block {pool.cidr} still has {pool.used} addresses in use")
        del self._blocks[index]
        self._taken.release(index)

    def block_of(self, address: IPAddress | str) -> Pool | None:
        """The allocated block that holds the address, if any."""
        ip = parse_address(address)
        if ip.version != self.cidr.version or ip not in self.cidr:
            raise OutOfRange(f"{ip} is not in {self.cidr}")
        return self._blocks.get((int(ip) - self._first) >> self._shift)

    def release(self, address: IPAddress | str) -> None:
        """Release an address in whichever block holds it; with release_empty_blocks the
        block goes too when that was its last address."""
        pool = self.block_of(address)
        if pool is None:
            raise NotAllocated(f"{address} is in no allocated block of {self.cidr}")
        pool.release(address)
        if self.release_empty_blocks and not pool.used:
            self.release_block(pool.cidr)

    def snapshot(self) -> BlockPoolSnapshot:
        """The pool's settings and each allocated block's own snapshot, lowest first."""
        return BlockPoolSnapshot(
            version=SNAPSHOT_VERSION,
            cidr=str(self.cidr),
            block_prefixlen=self.block_prefixlen,
            release_empty_blocks=self.release_empty_blocks,
            skip_network_and_broadcast=self.skip_network_and_broadcast,
            blocks=tuple(block.snapshot() for block in self),
        )

    @classmethod
    def restore(cls, snapshot: BlockPoolSnapshot) -> BlockPool:
        """The block pool a snapshot describes. Raises OutOfRange or AllocationConflict."""
        if snapshot.version != SNAPSHOT_VERSION:
            raise OutOfRange(f"snapshot version {snapshot.version} is not {SNAPSHOT_VERSION}")
        pool = cls(
            snapshot.cidr,
            snapshot.block_prefixlen,
            release_empty_blocks=snapshot.release_empty_blocks,
            skip_network_and_broadcast=snapshot.skip_network_and_broadcast,
        )
        for block in snapshot.blocks:
            index = pool._index(block.cidr)
            if index in pool._taken:
                raise AllocationConflict(f"the snapshot lists block {block.cidr} twice")
            pool._taken.allocate_at(index)
            pool._blocks[index] = Pool.restore(block)
        return pool

    def rebuild_from(
        self, claims: Iterable[tuple[str, IPNetwork | str]]
    ) -> dict[IPNetwork, tuple[str, ...]]:
        """Take the blocks the cluster shows (one AddressBlock per node), as (owner, block)
        pairs, into a block pool with no block yet. Returns the blocks claimed by more than
        one owner, with every owner; such a block is allocated and no owner is picked. A
        block that does not fit this pool raises OutOfRange before anything changes. The
        addresses inside each block are rebuilt with that block's Pool.rebuild_from."""
        if self._blocks:
            raise AllocationConflict("rebuild_from needs a block pool with no block allocated")
        owners: dict[int, list[str]] = {}
        for owner, block in claims:
            owners.setdefault(self._index(block), []).append(owner)
        conflicts = {}
        for index, names in sorted(owners.items()):
            if len(names) > 1:
                conflicts[self._cidr(index)] = tuple(names)
            self.allocate_block(self._cidr(index))
        return conflicts

    def __iter__(self) -> Iterator[Pool]:
        """Allocated blocks, lowest first."""
        return (self._blocks[index] for index in sorted(self._blocks))

    def __len__(self) -> int:
        return len(self._blocks)
