"""Blocks never overlap, stay inside their CIDR and go out lowest first, for IPv4 and IPv6."""

from __future__ import annotations

import itertools

import hypothesis.strategies as st
from hypothesis import given
from netaddr import IPNetwork

from sart.ipam.blocks import BlockPool

POOLS = st.sampled_from([("10.0.0.0/22", 26), ("10.8.0.0/16", 24), ("2001:db8::/56", 64)])


@given(POOLS, st.lists(st.tuples(st.booleans(), st.integers(0, 1000)), max_size=40))
def test_blocks_are_disjoint_inside_and_lowest_first(
    pool_and_size: tuple[str, int], steps: list[tuple[bool, int]]
) -> None:
    cidr, prefixlen = pool_and_size
    pool = BlockPool(cidr, prefixlen)
    all_blocks = list(IPNetwork(cidr).subnet(prefixlen, count=min(pool.capacity, 64)))
    taken: set[IPNetwork] = set()
    for allocate, pick in steps:
        if allocate or not taken:
            if len(taken) == pool.capacity:
                continue
            block = pool.allocate_block().cidr
            assert block == min(b for b in all_blocks if b not in taken)
            taken.add(block)
        else:
            block = sorted(taken)[pick % len(taken)]
            pool.release_block(block)
            taken.discard(block)
        blocks = [b.cidr for b in pool]
        assert blocks == sorted(taken)
        for first, second in itertools.pairwise(blocks):
            assert first.last < second.first
        assert all(b in IPNetwork(cidr) and b.prefixlen == prefixlen for b in blocks)
