"""Pod blocks on plain values."""

from __future__ import annotations

import pytest
from netaddr import IPNetwork

from sart.errors import IpamError
from sart.k8s.reconcile.blocks import BlockView, PodBlockAllocator, PodPoolView

PODS = PodPoolView(name="pods", cidr=IPNetwork("10.244.0.0/26"), block_size=28)


def test_blocks_lowest_first_per_request_and_reused_after_release() -> None:
    allocator = PodBlockAllocator()
    assert allocator.set_pools([PODS]) == []
    first = allocator.request("pods", "node-a")
    assert (first.name, str(first.cidr), first.node) == (
        "pods-node-a-10-244-0-0",
        "10.244.0.0/28",
        "node-a",
    )
    assert str(allocator.request("pods", "node-b").cidr) == "10.244.0.16/28"
    allocator.request("pods", "node-a")
    allocator.request("pods", "node-c")
    with pytest.raises(IpamError, match="no free /28 block"):
        allocator.request("pods", "node-d")
    allocator.release(first.name)
    assert str(allocator.request("pods", "node-d").cidr) == "10.244.0.0/28"
    with pytest.raises(IpamError, match="no AddressPool 'nope' of type pod"):
        allocator.request("nope", "node-a")


def test_adopt_and_conflicts() -> None:
    allocator = PodBlockAllocator()
    allocator.set_pools([PODS])
    known = BlockView(name="b1", pool="pods", cidr=IPNetwork("10.244.0.16/28"), node="n")
    twin = BlockView(name="b2", pool="pods", cidr=IPNetwork("10.244.0.16/28"), node="m")
    lost = BlockView(name="b3", pool="gone", cidr=IPNetwork("10.9.0.0/28"), node="n")
    assert allocator.adopt([known, twin, lost]) == [
        "AddressBlock b2: block 10.244.0.16/28 is already allocated",
        "AddressBlock b3: no pod pool gone",
    ]
    assert str(allocator.request("pods", "x").cidr) == "10.244.0.0/28"
    assert str(allocator.request("pods", "x").cidr) == "10.244.0.32/28"  # .16 is b1's
