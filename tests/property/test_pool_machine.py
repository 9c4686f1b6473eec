"""The allocators against a plain set: whatever the sequence of allocate, allocate-at, release,
reserve, snapshot and restore, they agree with the model, never hand out an address twice, and
always hand out the lowest free one."""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
from hypothesis import assume
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from sart.errors import AddressInUse, IpamError, NotAllocated, PoolExhausted
from sart.ipam.bitmap import CHUNK_BITS, DenseBitmap, SparseBitmap
from sart.ipam.pool import Pool


class BitmapMachine(RuleBasedStateMachine):
    """Both bitmap layouts, driven together, against a set of offsets."""

    @initialize(size=st.integers(1, 3 * CHUNK_BITS + 5))
    def start(self, size: int) -> None:
        self.size = size
        self.model: set[int] = set()
        self.bitmaps = (DenseBitmap(size), SparseBitmap(size))

    def _lowest_free(self) -> int | None:
        return next((o for o in range(self.size) if o not in self.model), None)

    @rule()
    def allocate(self) -> None:
        expected = self._lowest_free()
        for bitmap in self.bitmaps:
            if expected is None:
                with pytest.raises(PoolExhausted):
                    bitmap.allocate()
            else:
                assert bitmap.allocate() == expected
        if expected is not None:
            self.model.add(expected)

    @rule(data=st.data())
    def allocate_at(self, data: st.DataObject) -> None:
        offset = data.draw(st.integers(0, self.size - 1))
        for bitmap in self.bitmaps:
            if offset in self.model:
                with pytest.raises(AddressInUse):
                    bitmap.allocate_at(offset)
            else:
                bitmap.allocate_at(offset)
        self.model.add(offset)

    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        offset = data.draw(st.integers(0, self.size - 1))
        for bitmap in self.bitmaps:
            if offset not in self.model:
                with pytest.raises(NotAllocated):
                    bitmap.release(offset)
            else:
                bitmap.release(offset)
        self.model.discard(offset)

    @rule(data=st.data())
    def allocate_range(self, data: st.DataObject) -> None:
        first = data.draw(st.integers(0, self.size - 1))
        last = data.draw(st.integers(first, min(self.size - 1, first + 2 * CHUNK_BITS)))
        wanted = set(range(first, last + 1))
        for bitmap in self.bitmaps:
            if wanted & self.model:
                with pytest.raises(AddressInUse):
                    bitmap.allocate_range(first, last)
            else:
                bitmap.allocate_range(first, last)
        if not wanted & self.model:
            self.model |= wanted

    @rule()
    def fill_a_chunk(self) -> None:
        """Long runs of allocations, so that chunks fill and the full-chunk index matters."""
        for _ in range(min(CHUNK_BITS, self.size - len(self.model))):
            self.allocate()

    @invariant()
    def agrees_with_the_model(self) -> None:
        for bitmap in self.bitmaps:
            assert bitmap.used == len(self.model)
            assert set(bitmap) == self.model


class PoolMachine(RuleBasedStateMachine):
    """A Pool (IPv4 with skipped edges, or IPv6) against a set of addresses."""

    @initialize(
        cidr=st.sampled_from(["10.0.0.0/22", "10.1.0.0/29", "192.0.2.8/31", "2001:db8::/118"])
    )
    def start(self, cidr: str) -> None:
        self.pool = Pool(cidr)
        self.model: set[int] = set()
        self.reserved = {int(a) for a in self.pool.reserved}
        self.first = int(self.pool.cidr.network)

    def _free(self) -> list[int]:
        taken = self.model | self.reserved
        return [v for v in range(self.first, self.first + self.pool.size) if v not in taken]

    @rule()
    def allocate(self) -> None:
        free = self._free()
        if not free:
            with pytest.raises(PoolExhausted):
                self.pool.allocate()
            return
        assert int(self.pool.allocate()) == free[0]
        self.model.add(free[0])

    @rule(data=st.data())
    def allocate_at(self, data: st.DataObject) -> None:
        value = data.draw(st.integers(self.first, self.first + self.pool.size - 1))
        address = self.pool.cidr[value - self.first]
        if value in self.model or value in self.reserved:
            with pytest.raises(AddressInUse):
                self.pool.allocate(address)
        else:
            assert self.pool.allocate(address) == address
            self.model.add(value)

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        value = data.draw(st.sampled_from(sorted(self.model)))
        self.pool.release(self.pool.cidr[value - self.first])
        self.model.discard(value)
        with pytest.raises(NotAllocated):  # twice is an error, and changes nothing
            self.pool.release(self.pool.cidr[value - self.first])

    @rule(data=st.data())
    def reserve(self, data: st.DataObject) -> None:
        free = self._free()
        assume(free)
        value = data.draw(st.sampled_from(free))
        self.pool.reserve(self.pool.cidr[value - self.first])
        self.reserved.add(value)

    @rule()
    def snapshot_and_restore(self) -> None:
        self.pool = Pool.restore(self.pool.snapshot())

    @rule(data=st.data())
    def a_bad_request_changes_nothing(self, data: st.DataObject) -> None:
        before = self.pool.snapshot()
        bad = data.draw(st.sampled_from(["10.255.255.1", "2001:db9::1", "not an address"]))
        with pytest.raises(IpamError):
            self.pool.allocate(bad)
        with pytest.raises(IpamError):
            self.pool.release(bad)
        assert self.pool.snapshot() == before

    @invariant()
    def agrees_with_the_model(self) -> None:
        assert {int(a) for a in self.pool} == self.model
        assert self.pool.used == len(self.model)
        assert self.pool.free == self.pool.size - len(self.model) - len(self.reserved)


TestBitmapMachine = BitmapMachine.TestCase
TestPoolMachine = PoolMachine.TestCase
