"""NodeBlocks (the agent's pod addresses) against a plain model: a set of addresses per block.

Blocks come and go, addresses are handed out and given back, blocks are released when empty;
every address handed out is the lowest free one of the lowest usable block, none twice, none
out of a block, the pool's network and broadcast addresses never, and a block is only offered
for release when it is empty and not the node's last of its pool."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from netaddr import IPAddress, IPNetwork

from sart.k8s.reconcile.blocks import BlockView
from sart.k8s.reconcile.pods import NodeBlocks, PodPool

POOL = PodPool(name="p", cidr=IPNetwork("10.1.0.0/28"), block_size=30, auto_assign=True)
CIDRS = [IPNetwork(f"10.1.0.{i}/30") for i in range(0, 16, 4)]
EDGES = {POOL.cidr.network, POOL.cidr.broadcast}


def view(cidr: IPNetwork) -> BlockView:
    return BlockView(name=f"b{cidr.network}", pool="p", cidr=cidr, node="n")


class PodAddresses(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = NodeBlocks()
        self.model: dict[str, set[IPAddress]] = {}  # block name -> addresses handed out
        self.releasing: set[str] = set()

    def _usable(self) -> list[BlockView]:
        return sorted(
            (
                view(c)
                for c in CIDRS
                if view(c).name in self.model and view(c).name not in self.releasing
            ),
            key=lambda v: v.cidr.value,
        )

    @rule(cidr=st.sampled_from(CIDRS))
    def add_block(self, cidr: IPNetwork) -> None:
        self.blocks.add_block(view(cidr), POOL)
        self.model.setdefault(view(cidr).name, set())

    @rule()
    def allocate(self) -> None:
        expected = None
        for usable in self._usable():
            free = [a for a in usable.cidr if a not in EDGES and a not in self.model[usable.name]]
            if free:
                expected = (free[0], usable.name)
                break
        got = self.blocks.allocate("p")
        if expected is None:
            assert got is None
            return
        assert got is not None and (got.address, got.block) == expected
        self.model[got.block].add(got.address)

    @precondition(lambda self: any(self.model.values()))
    @rule(pick=st.integers(0, 100))
    def release(self, pick: int) -> None:
        everything = sorted((a, n) for n, s in self.model.items() for a in s)
        address, name = everything[pick % len(everything)]
        self.model[name].discard(address)
        releasable = self.blocks.release(address)
        others = [v for v in self._usable() if v.name != name]
        should = not self.model[name] and name not in self.releasing and bool(others)
        assert (releasable == name) == should
        if releasable is not None:
            self.blocks.begin_release(releasable)
            self.releasing.add(releasable)

    @precondition(lambda self: bool(self.releasing))
    @rule(cancel=st.booleans())
    def finish_release(self, cancel: bool) -> None:
        name = sorted(self.releasing)[0]
        self.releasing.discard(name)
        if cancel:
            self.blocks.cancel_release(name)
        else:
            assert self.blocks.remove_block(name) == ()
            del self.model[name]

    @invariant()
    def same_addresses(self) -> None:
        assert self.blocks.used("p") == sum(len(s) for s in self.model.values())
        assert not EDGES & {a for s in self.model.values() for a in s}
        assert sorted(v.name for v in self.blocks) == sorted(self.model)
        free = sum(
            len([a for a in v.cidr if a not in EDGES and a not in self.model[v.name]])
            for v in self._usable()
        )
        assert self.blocks.free("p") == free


TestPodAddresses = PodAddresses.TestCase
