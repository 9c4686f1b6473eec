"""Allocator speed and memory: sart's bitmaps against the naive approach, in the same run.

Prints allocations/s filling a /16; the time of one allocation in a /8 that is 99.9% full; the
memory of a /8 allocator (target: within 10% of 2 MiB, one bit per address); the memory of a
/64 pool holding 100,000 allocations; and the same for the naive approach (a Python set of ints
scanned from the start for the lowest free offset, as the original sart's allocator walks its
bits, and netaddr.IPSet) with the ratios. Targets: >= 1M allocations/s filling a /16, and
>= 100x the naive approach in the nearly full /8.

    python benchmarks/ipam.py
"""

from __future__ import annotations

import gc
import random
import sys
import time
import tracemalloc
from collections.abc import Callable

from netaddr import IPNetwork, IPSet

from sart.ipam.bitmap import DenseBitmap
from sart.ipam.pool import Pool

SLASH_16 = 1 << 16
SLASH_8 = 1 << 24
MIB = 1 << 20


def _timed(run: Callable[[], object]) -> float:
    gc.collect()
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def _memory(build: Callable[[], object]) -> int:
    gc.collect()
    tracemalloc.start()
    kept = build()
    size = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del kept
    return size


def naive_lowest_free(used: set[int], size: int) -> int:
    """The original sart's way: walk from the start until a free offset."""
    for offset in range(size):
        if offset not in used:
            used.add(offset)
            return offset
    raise LookupError("full")


def fill_16_bitmap() -> None:
    bitmap = DenseBitmap(SLASH_16)
    for _ in range(SLASH_16):
        bitmap.allocate()


def fill_16_pool() -> None:
    pool = Pool("10.0.0.0/16")
    for _ in range(SLASH_16 - 2):
        pool.allocate()


def fill_16_naive() -> None:
    used: set[int] = set()
    for _ in range(2048):  # a slice: the naive fill is quadratic
        naive_lowest_free(used, SLASH_16)


def main() -> int:
    rng = random.Random(8)
    print("== filling a /16 (65,536 allocations, lowest first)")
    bitmap_s = min(_timed(fill_16_bitmap) for _ in range(3))
    pool_s = min(_timed(fill_16_pool) for _ in range(3))
    naive_rate = 2048 / _timed(fill_16_naive)
    bitmap_rate = SLASH_16 / bitmap_s
    print(f"sart bitmap        {bitmap_rate:12,.0f} allocations/s   (target >= 1,000,000)")
    print(f"sart Pool          {SLASH_16 / pool_s:12,.0f} allocations/s   (netaddr IPAddress out)")
    print(f"naive set scan     {naive_rate:12,.0f} allocations/s   (only the first 2,048: it slows")
    print("                                                   down as the pool fills)")

    print("== one allocation in a /8 that is 99.9% full")
    # 0.1% of the addresses, scattered, are free; halfway through handing them out again, the
    # lowest free one sits in the middle of the pool: that is the state both are measured in.
    bitmap = DenseBitmap(SLASH_8)
    bitmap.allocate_range(0, SLASH_8 - 1)
    scattered = rng.sample(range(SLASH_8), SLASH_8 // 1000)
    freed = sorted(offset for offset in scattered if offset >= SLASH_8 // 2)
    for offset in freed:
        bitmap.release(offset)
    count = 2000
    sart_each = _timed(lambda: [bitmap.allocate() for _ in range(count)]) / count
    used = set(range(SLASH_8)) - set(freed)
    naive_count = 3
    naive_each = _timed(lambda: [naive_lowest_free(used, SLASH_8) for _ in range(naive_count)])
    naive_each /= naive_count
    used.clear()  # a gigabyte, not needed for the memory figures below
    print(f"sart bitmap        {sart_each * 1e6:12.2f} us per allocation")
    print(f"naive set scan     {naive_each * 1e6:12.2f} us per allocation")
    ratio_8 = naive_each / sart_each
    print(f"ratio naive/sart   {ratio_8:12,.0f}x   (target >= 100)")

    print("== memory")
    dense = _memory(lambda: DenseBitmap(SLASH_8))
    print(f"sart /8 bitmap     {dense / MIB:12.3f} MiB   (target within 10% of 2 MiB)")
    slash_12 = 1 << 20
    naive_12 = _memory(lambda: set(range(slash_12)))
    print(f"naive set, full /8 {naive_12 * 16 / MIB:12.1f} MiB   (a full /12 measured, x16)")

    def pool_64() -> Pool:
        pool = Pool("2001:db8::/64")
        for _ in range(100_000):
            pool.allocate()
        return pool

    def ipset_64() -> IPSet:
        addresses = IPSet()
        network = IPNetwork("2001:db8::/64")
        for offset in rng.sample(range(1 << 30), 100_000):
            addresses.add(network[offset])
        return addresses

    sparse = _memory(pool_64)
    naive_set = _memory(lambda: set(range(100_000)))
    ipset = _memory(ipset_64)
    print(f"sart /64, 100k     {sparse / MIB:12.3f} MiB")
    print(f"naive set, 100k    {naive_set / MIB:12.3f} MiB")
    print(f"netaddr IPSet,100k {ipset / MIB:12.3f} MiB   (scattered addresses)")

    ok = bitmap_rate >= 1_000_000 and ratio_8 >= 100 and abs(dense / (2 * MIB) - 1) <= 0.1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
