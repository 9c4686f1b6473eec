"""Which pool a pod's address comes from, which address, and which blocks go back."""

from __future__ import annotations

import pytest
from netaddr import IPAddress, IPNetwork

from sart.errors import OutOfRange
from sart.k8s.reconcile.blocks import BlockView
from sart.k8s.reconcile.pods import (
    POOL_ANNOTATION,
    NodeBlocks,
    NoPool,
    PodPool,
    choose_pools,
    low_water,
    pool_capacity,
    pool_exhausted,
)

DEFAULT = PodPool(name="default", cidr=IPNetwork("10.1.0.0/24"), block_size=29, auto_assign=True)
OTHER = PodPool(name="other", cidr=IPNetwork("10.2.0.0/24"), block_size=30, auto_assign=False)
POOLS = {p.name: p for p in (DEFAULT, OTHER)}


def block(pool: PodPool, cidr: str, node: str = "n1") -> BlockView:
    return BlockView(name=f"{pool.name}-{cidr}", pool=pool.name, cidr=IPNetwork(cidr), node=node)


V6 = PodPool(name="v6", cidr=IPNetwork("fd00:10::/64"), block_size=120, auto_assign=True)


def test_the_pod_annotation_comes_first_then_the_namespace_then_auto_assign() -> None:
    named = {POOL_ANNOTATION: "other"}
    assert choose_pools(named, {POOL_ANNOTATION: "default"}, POOLS).why == "pod annotation"
    chosen = choose_pools({}, named, POOLS)
    assert (chosen.pools, chosen.why) == ((OTHER,), "namespace annotation")
    assert choose_pools(None, None, POOLS) == choose_pools({}, {}, POOLS)
    assert choose_pools({}, {}, POOLS).pools == (DEFAULT,)


def test_a_dual_stack_pod_gets_a_pool_of_each_family() -> None:
    pools = {**POOLS, "v6": V6}
    assert choose_pools({}, {}, pools).pools == (DEFAULT, V6)  # the autoAssign of each family
    both = choose_pools({POOL_ANNOTATION: "v6, other"}, {}, pools)
    assert both.pools == (OTHER, V6)  # IPv4 first, whatever the annotation's order


@pytest.mark.parametrize(
    ("pod", "namespace", "says"),
    [
        ({POOL_ANNOTATION: "nope"}, {}, "pod annotation sart.terassyi.net/addresspool='nope'"),
        ({}, {POOL_ANNOTATION: "default,other"}, "one pool per IP family"),
        ({}, {POOL_ANNOTATION: "default,nope"}, "no AddressPool of type pod is named nope"),
    ],
)
def test_a_pool_that_does_not_fit_is_named(
    pod: dict[str, str], namespace: dict[str, str], says: str
) -> None:
    with pytest.raises(NoPool, match=says):
        choose_pools(pod, namespace, POOLS)


def test_no_auto_assign_pool_says_how_to_name_one() -> None:
    with pytest.raises(NoPool, match="autoAssign"):
        choose_pools({}, {}, {"other": OTHER})


def test_addresses_lowest_first_across_blocks_skipping_the_pools_network_address() -> None:
    blocks = NodeBlocks()
    blocks.add_block(block(DEFAULT, "10.1.0.8/29"), DEFAULT)
    blocks.add_block(block(DEFAULT, "10.1.0.0/29"), DEFAULT)
    got = [blocks.allocate("default") for _ in range(15)]
    addresses = [a.address for a in got if a is not None]
    assert addresses[0] == IPAddress("10.1.0.1")  # 10.1.0.0 is the pool's network address
    assert addresses == [IPAddress(f"10.1.0.{i}") for i in range(1, 16)]
    assert got[-1] is not None and got[-1].block == "default-10.1.0.8/29"
    assert blocks.allocate("default") is None
    assert blocks.allocate("other") is None


def test_the_pools_broadcast_address_is_never_handed_out() -> None:
    blocks = NodeBlocks()
    blocks.add_block(block(DEFAULT, "10.1.0.248/29"), DEFAULT)
    taken = [a.address for a in iter(lambda: blocks.allocate("default"), None)]
    assert IPAddress("10.1.0.255") not in taken and len(taken) == 7


def test_an_empty_block_is_released_unless_it_is_the_last() -> None:
    blocks = NodeBlocks()
    first, second = block(DEFAULT, "10.1.0.8/29"), block(DEFAULT, "10.1.0.16/29")
    blocks.add_block(first, DEFAULT)
    a = blocks.allocate("default")
    assert a is not None
    assert blocks.release(a.address) is None  # the node's only block: kept
    blocks.add_block(second, DEFAULT)
    a = blocks.allocate("default")
    assert a is not None and a.block == first.name
    assert blocks.release(a.address) == first.name
    released = blocks.begin_release(first.name)
    assert released == first
    b = blocks.allocate("default")
    assert b is not None and b.block == second.name  # nothing from a block being released
    assert not blocks.releasable(second.name)
    blocks.cancel_release(first.name)
    c = blocks.allocate("default")
    assert c is not None and c.block == first.name


def test_taking_back_after_a_restart() -> None:
    blocks = NodeBlocks()
    blocks.add_block(block(DEFAULT, "10.1.0.8/29"), DEFAULT)
    assert blocks.take(IPAddress("10.1.0.9")).block == "default-10.1.0.8/29"
    allocated = blocks.allocate("default")
    assert allocated is not None and allocated.address == IPAddress("10.1.0.8")
    nxt = blocks.allocate("default")
    assert nxt is not None and nxt.address == IPAddress("10.1.0.10")
    with pytest.raises(OutOfRange, match="no AddressBlock of this node"):
        blocks.take(IPAddress("10.9.9.9"))
    assert blocks.remove_block("default-10.1.0.8/29") == tuple(
        IPAddress(a) for a in ("10.1.0.8", "10.1.0.9", "10.1.0.10")
    )


def test_exhaustion_counts_every_nodes_blocks() -> None:
    tiny = PodPool(name="tiny", cidr=IPNetwork("10.3.0.0/29"), block_size=30, auto_assign=False)
    assert pool_capacity(tiny) == 2
    seen = [block(tiny, "10.3.0.0/30", "n1")]
    assert not pool_exhausted(tiny, seen)
    assert pool_exhausted(tiny, [*seen, block(tiny, "10.3.0.4/30", "n2")])


def test_the_next_block_is_asked_for_below_a_quarter_of_a_block() -> None:
    assert low_water(DEFAULT) == 2  # /29: 8 addresses
    assert low_water(OTHER) == 1  # /30
    big = PodPool(name="big", cidr=IPNetwork("10.9.0.0/16"), block_size=26, auto_assign=False)
    assert low_water(big) == 16
    blocks = NodeBlocks()
    blocks.add_block(block(DEFAULT, "10.1.0.8/29"), DEFAULT)
    assert blocks.free("default") == 8
    blocks.allocate("default")
    assert blocks.free("default") == 7
    blocks.begin_release("default-10.1.0.8/29")
    assert blocks.free("default") == 0
