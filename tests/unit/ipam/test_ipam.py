"""Pools, blocks and the multi-pool allocator: options, errors and all-or-nothing requests."""

from __future__ import annotations

import attrs
import pytest
from netaddr import IPAddress, IPNetwork

from sart.errors import (
    AddressInUse,
    AllocationConflict,
    IpamError,
    NotAllocated,
    OutOfRange,
    PoolExhausted,
)
from sart.ipam.allocator import Allocator, Request
from sart.ipam.blocks import BlockPool
from sart.ipam.pool import Pool, PoolSnapshot, format_ranges, parse_ranges


def test_network_and_broadcast_are_skipped_by_default() -> None:
    pool = Pool("10.96.0.0/30")
    assert [pool.allocate(), pool.allocate()] == [IPAddress("10.96.0.1"), IPAddress("10.96.0.2")]
    with pytest.raises(PoolExhausted, match=r"10\.96\.0\.0/30"):
        pool.allocate()


def test_network_and_broadcast_can_be_used() -> None:
    pool = Pool("10.96.0.0/31", skip_network_and_broadcast=False)
    assert [pool.allocate(), pool.allocate()] == [IPAddress("10.96.0.0"), IPAddress("10.96.0.1")]
    assert Pool("10.96.0.0/24", skip_network_and_broadcast=False).allocate() == IPAddress(
        "10.96.0.0"
    )


def test_a_slash_32_pool_holds_its_one_address() -> None:
    assert Pool("192.0.2.7/32").allocate() == IPAddress("192.0.2.7")


def test_ipv6_64_costs_nothing_until_used() -> None:
    pool = Pool("2001:db8:1::/64")
    assert pool.size == 2**64
    assert pool.allocate() == IPAddress("2001:db8:1::")
    assert pool.allocate("2001:db8:1::ffff:1") == IPAddress("2001:db8:1::ffff:1")
    assert list(pool) == [IPAddress("2001:db8:1::"), IPAddress("2001:db8:1::ffff:1")]


@pytest.mark.parametrize(
    ("action", "error", "words"),
    [
        (lambda p: p.allocate("10.0.1.1"), OutOfRange, "not in pool 10.0.0.0/24"),
        (lambda p: p.allocate("2001:db8::1"), OutOfRange, "not in pool"),
        (lambda p: p.allocate("10.0.0.300"), OutOfRange, "not an IP address"),
        (lambda p: p.allocate("10.0.0.1"), AddressInUse, "already allocated"),
        (lambda p: p.allocate("10.0.0.0"), AddressInUse, "reserved"),
        (lambda p: p.release("10.0.0.2"), NotAllocated, "10.0.0.2 is not allocated"),
        (lambda p: p.release("10.0.0.255"), NotAllocated, "reserved"),
        (lambda p: p.reserve("10.0.0.1"), AddressInUse, "already allocated"),
    ],
)
def test_bad_requests_say_what_is_wrong_and_change_nothing(
    action: object, error: type[Exception], words: str
) -> None:
    pool = Pool("10.0.0.0/24")
    pool.allocate()
    before = pool.snapshot()
    with pytest.raises(error, match=words):
        action(pool)  # type: ignore[operator]
    assert pool.snapshot() == before


@pytest.mark.parametrize("cidr", ["10.0.0.1/24", "10.0.0.0/33", "nonsense", "2001:db8::1/64"])
def test_bad_cidrs(cidr: str) -> None:
    with pytest.raises(OutOfRange):
        Pool(cidr)


def test_snapshot_is_compact_ranges_and_restores() -> None:
    pool = Pool("10.0.0.0/16")
    for _ in range(1000):
        pool.allocate()
    pool.release("10.0.1.0")
    pool.reserve("10.0.200.1")
    snapshot = pool.snapshot()
    assert snapshot == PoolSnapshot(
        version=1,
        cidr="10.0.0.0/16",
        skip_network_and_broadcast=True,
        allocated="10.0.0.1-10.0.0.255,10.0.1.1-10.0.3.232",
        reserved="10.0.200.1",
    )
    restored = Pool.restore(snapshot)
    assert list(restored) == list(pool)
    assert restored.reserved == pool.reserved
    assert restored.allocate() == IPAddress("10.0.1.0")


def test_restore_rejects_other_versions_and_overlaps() -> None:
    good = Pool("10.0.0.0/24").snapshot()
    with pytest.raises(OutOfRange, match="version 2"):
        Pool.restore(attrs.evolve(good, version=2))
    overlapping = PoolSnapshot(
        version=1,
        cidr="10.0.0.0/24",
        skip_network_and_broadcast=True,
        allocated="10.0.0.1-10.0.0.5",
        reserved="10.0.0.3",
    )
    with pytest.raises(AllocationConflict, match=r"10\.0\.0\.1-10\.0\.0\.5"):
        Pool.restore(overlapping)


def test_ranges_round_trip() -> None:
    addresses = [IPAddress(a) for a in ("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.9")]
    assert format_ranges(addresses) == "10.0.0.1-10.0.0.3,10.0.0.9"
    assert parse_ranges("10.0.0.1-10.0.0.3, 10.0.0.9") == [
        (addresses[0], addresses[2]),
        (addresses[3], addresses[3]),
    ]
    with pytest.raises(OutOfRange):
        parse_ranges("10.0.0.9-10.0.0.1")


def test_rebuild_reports_conflicts_instead_of_picking() -> None:
    pool = Pool("10.0.0.0/24")
    conflicts = pool.rebuild_from(
        [("default/a", "10.0.0.1"), ("default/b", "10.0.0.1"), ("default/c", "10.0.0.2")]
    )
    assert conflicts == {IPAddress("10.0.0.1"): ("default/a", "default/b")}
    assert list(pool) == [IPAddress("10.0.0.1"), IPAddress("10.0.0.2")]
    assert pool.allocate() == IPAddress("10.0.0.3")


def test_rebuild_with_an_address_outside_changes_nothing() -> None:
    pool = Pool("10.0.0.0/24")
    with pytest.raises(OutOfRange):
        pool.rebuild_from([("a", "10.0.0.1"), ("b", "10.9.0.1")])
    assert pool.used == 0


def test_blocks_lowest_first_and_released_when_empty() -> None:
    blocks = BlockPool("10.1.0.0/24", 26, release_empty_blocks=True)
    first = blocks.allocate_block()
    second = blocks.allocate_block()
    assert [first.cidr, second.cidr] == [IPNetwork("10.1.0.0/26"), IPNetwork("10.1.0.64/26")]
    address = second.allocate()
    assert address == IPAddress("10.1.0.64")  # blocks use every address by default
    blocks.release(address)
    assert [b.cidr for b in blocks] == [IPNetwork("10.1.0.0/26")]
    assert blocks.allocate_block().cidr == IPNetwork("10.1.0.64/26")


def test_block_errors() -> None:
    with pytest.raises(OutOfRange, match=r"block size /16 does not fit in 10\.1\.0\.0/24"):
        BlockPool("10.1.0.0/24", 16)
    blocks = BlockPool("10.1.0.0/24", 25)
    block = blocks.allocate_block()
    block.allocate()
    with pytest.raises(AddressInUse, match="still has 1 addresses"):
        blocks.release_block(block.cidr)
    with pytest.raises(AddressInUse):
        blocks.allocate_block("10.1.0.0/25")
    with pytest.raises(OutOfRange):
        blocks.allocate_block("10.1.0.0/26")
    blocks.allocate_block()
    with pytest.raises(PoolExhausted):
        blocks.allocate_block()


def _allocator() -> Allocator:
    allocator = Allocator()
    allocator.add_pool("v4", Pool("192.0.2.0/30"), auto_assign=True)
    allocator.add_pool("v6", Pool("2001:db8::/126"))
    return allocator


def test_requests_by_pool_by_address_and_auto_assign() -> None:
    allocator = _allocator()
    assert allocator.allocate(Request()) == (IPAddress("192.0.2.1"),)
    assert allocator.allocate(Request(pools=("v4", "v6"))) == (
        IPAddress("192.0.2.2"),
        IPAddress("2001:db8::"),
    )
    assert allocator.allocate(Request(addresses=(IPAddress("2001:db8::3"),))) == (
        IPAddress("2001:db8::3"),
    )


def test_a_request_that_cannot_be_met_whole_changes_nothing() -> None:
    allocator = _allocator()
    allocator.allocate(Request(pools=("v4",)))
    allocator.allocate(Request(pools=("v4",)))  # v4 is now full
    with pytest.raises(PoolExhausted):
        allocator.allocate(Request(pools=("v6", "v4")))
    assert allocator.pool("v6").used == 0
    with pytest.raises(IpamError, match="no pool named 'v5'"):
        allocator.allocate(Request(pools=("v6", "v5")))
    assert allocator.pool("v6").used == 0
    with pytest.raises(NotAllocated):
        allocator.release((IPAddress("192.0.2.1"), IPAddress("2001:db8::1")))
    assert allocator.pool("v4").used == 2


def test_pools_may_not_overlap_and_one_auto_assigns() -> None:
    allocator = _allocator()
    with pytest.raises(IpamError, match="overlaps 'v4'"):
        allocator.add_pool("inner", Pool("192.0.2.0/31"))
    with pytest.raises(IpamError, match="auto-assign pool already"):
        allocator.add_pool("other", Pool("198.51.100.0/24"), auto_assign=True)


def test_block_pool_snapshot_restores_blocks_and_their_addresses() -> None:
    blocks = BlockPool("2001:db8:100::/56", 64)
    first = blocks.allocate_block()
    blocks.allocate_block("2001:db8:100:7::/64").allocate("2001:db8:100:7::9")
    first.allocate()
    restored = BlockPool.restore(blocks.snapshot())
    assert restored.snapshot() == blocks.snapshot()
    assert restored.allocate_block().cidr == IPNetwork("2001:db8:100:1::/64")
    assert [str(a) for b in restored for a in b] == ["2001:db8:100::", "2001:db8:100:7::9"]
    twice = attrs.evolve(blocks.snapshot(), blocks=blocks.snapshot().blocks * 2)
    with pytest.raises(AllocationConflict, match="twice"):
        BlockPool.restore(twice)


def test_block_pool_rebuild_reports_blocks_claimed_twice() -> None:
    blocks = BlockPool("10.2.0.0/16", 24)
    conflicts = blocks.rebuild_from(
        [("node-a", "10.2.0.0/24"), ("node-b", "10.2.1.0/24"), ("node-c", "10.2.1.0/24")]
    )
    assert conflicts == {IPNetwork("10.2.1.0/24"): ("node-b", "node-c")}
    assert blocks.allocate_block().cidr == IPNetwork("10.2.2.0/24")
    fresh = BlockPool("10.2.0.0/16", 24)
    with pytest.raises(OutOfRange):
        fresh.rebuild_from([("node-a", "10.2.0.0/24"), ("node-b", "10.2.1.0/25")])
    assert len(fresh) == 0
