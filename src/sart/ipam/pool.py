"""Addresses of one CIDR, handed out lowest first.

A Pool turns addresses into offsets of a bitmap and back. The network and broadcast addresses
of an IPv4 pool are skipped unless the pool says otherwise (MetalLB's avoid-buggy-IPs; the
original sart handed out the network address first, which routers and clients may refuse).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import attrs
from netaddr import AddrFormatError, IPAddress, IPNetwork

from sart.errors import (
    AddressInUse,
    AllocationConflict,
    NotAllocated,
    OutOfRange,
    PoolExhausted,
)
from sart.ipam.bitmap import Bitmap, new_bitmap

SNAPSHOT_VERSION = 1


def parse_cidr(cidr: IPNetwork | str) -> IPNetwork:
    """A CIDR without host bits, or OutOfRange saying what is wrong with it."""
    try:
        network = IPNetwork(cidr)
    except (AddrFormatError, ValueError, TypeError) as error:
        raise OutOfRange(f"not a CIDR: {cidr!r}") from error
    if network.network != network.ip:
        raise OutOfRange(f"{cidr} has host bits set; did you mean {network.cidr}?")
    return network


def parse_address(value: object) -> IPAddress:
    """An IP address, or OutOfRange saying what is wrong with it."""
    try:
        return IPAddress(value)
    except (AddrFormatError, ValueError, TypeError) as error:
        raise OutOfRange(f"not an IP address: {value!r}") from error


class Pool:
    """The addresses of one CIDR: allocate (lowest free, or a given one), release, reserve."""

    def __init__(self, cidr: IPNetwork | str, *, skip_network_and_broadcast: bool = True) -> None:
        self.cidr = parse_cidr(cidr)
        self.skip_network_and_broadcast = skip_network_and_broadcast
        self._first = int(self.cidr.network)
        self._bitmap: Bitmap = new_bitmap(self.cidr.size)
        self._reserved: set[int] = set()
        self._edges: set[int] = set()  # the network and broadcast offsets, when skipped
        if skip_network_and_broadcast and self.cidr.version == 4 and self.cidr.prefixlen < 31:
            self._edges = {0, self.cidr.size - 1}
            for offset in self._edges:
                self._bitmap.allocate_at(offset)
                self._reserved.add(offset)

    def __repr__(self) -> str:
        return f"Pool({str(self.cidr)!r}, used={self.used}, free={self.free})"

    @property
    def size(self) -> int:
        """Addresses in the CIDR."""
        return self._bitmap.size

    @property
    def used(self) -> int:
        """Addresses handed out (reserved ones not counted)."""
        return self._bitmap.used - len(self._reserved)

    @property
    def free(self) -> int:
        return self.size - self._bitmap.used

    def _offset(self, address: object) -> int:
        ip = parse_address(address)
        if ip.version != self.cidr.version or ip not in self.cidr:
            raise OutOfRange(f"{ip} is not in pool {self.cidr}")
        offset: int = int(ip) - self._first
        return offset

    def _ip(self, offset: int) -> IPAddress:
        return IPAddress(self._first + offset, self.cidr.version)

    def allocate(self, address: IPAddress | str | None = None) -> IPAddress:
        """The lowest free address, or `address` if it is free. Raises PoolExhausted,
        AddressInUse or OutOfRange, leaving the pool as it was."""
        if address is None:
            try:
                return self._ip(self._bitmap.allocate())
            except PoolExhausted:
                raise PoolExhausted(f"pool {self.cidr} has no free address") from None
        offset = self._offset(address)
        if offset in self._bitmap:
            why = "reserved" if offset in self._reserved else "already allocated"
            raise AddressInUse(f"{self._ip(offset)} is {why} in pool {self.cidr}")
        self._bitmap.allocate_at(offset)
        return self._ip(offset)

    def release(self, address: IPAddress | str) -> None:
        """Free an allocated address. Raises NotAllocated (also for a reserved address)."""
        offset = self._offset(address)
        if offset in self._reserved:
            raise NotAllocated(f"{self._ip(offset)} is reserved, not allocated")
        if offset not in self._bitmap:
            raise NotAllocated(f"{self._ip(offset)} is not allocated in pool {self.cidr}")
        self._bitmap.release(offset)

    def reserve(self, address: IPAddress | str) -> None:
        """Never hand this address out. Raises AddressInUse if it is allocated."""
        ip = self.allocate(address)
        self._reserved.add(int(ip) - self._first)

    def unreserve(self, address: IPAddress | str) -> None:
        offset = self._offset(address)
        if offset not in self._reserved:
            raise NotAllocated(f"{self._ip(offset)} is not reserved")
        self._reserved.discard(offset)
        self._bitmap.release(offset)

    def __contains__(self, address: object) -> bool:
        """Whether the address is allocated (reserved addresses are not)."""
        try:
            offset = self._offset(address)
        except OutOfRange:
            return False
        return offset in self._bitmap and offset not in self._reserved

    def __iter__(self) -> Iterator[IPAddress]:
        """Allocated addresses, lowest first."""
        return (self._ip(o) for o in self._bitmap if o not in self._reserved)

    @property
    def reserved(self) -> tuple[IPAddress, ...]:
        return tuple(self._ip(o) for o in sorted(self._reserved))

    def snapshot(self) -> PoolSnapshot:
        """What is allocated and reserved, as ranges: small for lowest-first pools."""
        return PoolSnapshot(
            version=SNAPSHOT_VERSION,
            cidr=str(self.cidr),
            skip_network_and_broadcast=self.skip_network_and_broadcast,
            allocated=format_ranges(self),
            reserved=format_ranges(self._ip(o) for o in sorted(self._reserved - self._edges)),
        )

    @classmethod
    def restore(cls, snapshot: PoolSnapshot) -> Pool:
        """The pool a snapshot describes. Raises OutOfRange for a snapshot of another version
        or with addresses outside its CIDR, AllocationConflict for overlaps."""
        if snapshot.version != SNAPSHOT_VERSION:
            raise OutOfRange(f"snapshot version {snapshot.version} is not {SNAPSHOT_VERSION}")
        pool = cls(snapshot.cidr, skip_network_and_broadcast=snapshot.skip_network_and_broadcast)
        for first, last in parse_ranges(snapshot.reserved):
            for value in range(int(first), int(last) + 1):
                try:
                    pool.reserve(IPAddress(value, first.version))
                except AddressInUse as error:
                    raise AllocationConflict(f"the snapshot reserves twice: {error}") from None
        for first, last in parse_ranges(snapshot.allocated):
            try:
                pool._bitmap.allocate_range(pool._offset(first), pool._offset(last))
            except AddressInUse:
                raise AllocationConflict(
                    f"the snapshot allocates {first}-{last}, which overlaps an address it "
                    "reserves or allocates already"
                ) from None
        return pool

    def rebuild_from(
        self, claims: Iterable[tuple[str, IPAddress | str]]
    ) -> dict[IPAddress, tuple[str, ...]]:
        """Take the allocations the cluster shows, as (owner, address) pairs, into a pool
        that has nothing allocated yet. Returns the conflicts: each address claimed by more
        than one owner, or claimed though reserved, with all who claim it. A conflicting
        address stays allocated (or reserved) and no owner is picked. An address outside the
        pool raises OutOfRange before anything changes."""
        if self.used:
            raise AllocationConflict("rebuild_from needs a pool with nothing allocated")
        owners: dict[int, list[str]] = {}
        for owner, address in claims:
            owners.setdefault(self._offset(address), []).append(owner)
        conflicts: dict[IPAddress, tuple[str, ...]] = {}
        for offset, names in sorted(owners.items()):
            if offset in self._reserved:
                conflicts[self._ip(offset)] = (*names, "reserved")
                continue
            if len(names) > 1:
                conflicts[self._ip(offset)] = tuple(names)
            self._bitmap.allocate_at(offset)
        return conflicts


@attrs.frozen(kw_only=True)
class PoolSnapshot:
    """A pool's state, version 1: `allocated` and `reserved` are comma-separated addresses and
    first-last ranges, lowest first ('10.0.0.1-10.0.0.99,10.0.0.120'). The network and
    broadcast addresses a pool skips by setting are not listed."""

    version: int
    cidr: str
    skip_network_and_broadcast: bool
    allocated: str
    reserved: str = ""


def format_ranges(addresses: Iterable[IPAddress]) -> str:
    """'a-b,c' for addresses given lowest first."""
    parts: list[str] = []
    start = end = None
    for address in addresses:
        if end is not None and int(address) == int(end) + 1:
            end = address
            continue
        if start is not None:
            parts.append(str(start) if start == end else f"{start}-{end}")
        start = end = address
    if start is not None:
        parts.append(str(start) if start == end else f"{start}-{end}")
    return ",".join(parts)


def parse_ranges(text: str) -> list[tuple[IPAddress, IPAddress]]:
    """The (first, last) ranges of format_ranges' text. Raises OutOfRange on anything else."""
    ranges = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        first, _, last = part.partition("-")
        start = parse_address(first)
        stop = parse_address(last) if last else start
        if stop.version != start.version or stop < start:
            raise OutOfRange(f"not an address range: {part!r}")
        ranges.append((start, stop))
    return ranges
