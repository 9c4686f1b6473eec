"""Sets of offsets 0..size-1 that hand out the lowest free one first.

Two layouts with one interface. `DenseBitmap` keeps one bit per offset in a bytearray (a /8
takes 2 MiB) and a byte per 512-offset chunk saying whether it is full, so that finding the
lowest free offset skips full chunks with `bytearray.find` instead of testing bits one by one.
`SparseBitmap` keeps only the chunks that hold an allocation, so that memory follows what is
allocated, not the size: an IPv6 /64 costs nothing until used. `new_bitmap` picks one.

Offsets only: no addresses here (that is `sart.ipam.pool`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from sart.errors import AddressInUse, NotAllocated, OutOfRange, PoolExhausted

CHUNK_BITS = 512
_CHUNK_BYTES = CHUNK_BITS // 8
_FULL_CHUNK = (1 << CHUNK_BITS) - 1
# Up to this many offsets a flat bitmap (size/8 octets) is the smaller layout.
DENSE_LIMIT = 1 << 27


class Bitmap(Protocol):
    """What both layouts offer."""

    @property
    def size(self) -> int: ...
    @property
    def used(self) -> int: ...
    def allocate(self) -> int: ...
    def allocate_at(self, offset: int) -> None: ...
    def allocate_range(self, first: int, last: int) -> None: ...
    def release(self, offset: int) -> None: ...
    def __contains__(self, offset: object) -> bool: ...
    def __iter__(self) -> Iterator[int]: ...


def new_bitmap(size: int) -> Bitmap:
    """The layout that suits a set of `size` offsets."""
    return DenseBitmap(size) if size <= DENSE_LIMIT else SparseBitmap(size)


def _lowest_clear(word: int) -> int:
    """Index of the lowest 0 bit of a non-negative int."""
    return (~word & (word + 1)).bit_length() - 1


def _check(offset: int, size: int) -> None:
    if not 0 <= offset < size:
        raise OutOfRange(f"offset {offset} is outside 0..{size - 1}")


class _Counted:
    """How many offsets there are and how many are used."""

    __slots__ = ("_size", "_used")

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"a bitmap holds at least one offset, not {size}")
        self._size = size
        self._used = 0

    @property
    def size(self) -> int:
        return self._size

    @property
    def used(self) -> int:
        return self._used

    def __len__(self) -> int:
        return self._used


class DenseBitmap(_Counted):
    """One bit per offset, lowest-free allocation in constant time per chunk skipped."""

    __slots__ = ("_bits", "_full", "_low", "_word", "_word_chunk")

    def __init__(self, size: int) -> None:
        super().__init__(size)
        chunks = -(-size // CHUNK_BITS)
        # The chunk allocate() works in, as an int: reading it back from the bytearray on
        # every call would cost more than the rest of the allocation.
        self._word_chunk = -1
        self._word = 0
        self._bits = bytearray(chunks * _CHUNK_BYTES)
        # _full[c] is 1 when chunk c has no free offset. The padding past `size` in the last
        # chunk is marked used, so the last chunk fills like any other.
        self._full = bytearray(chunks)
        self._low = 0  # no chunk below this one has a free offset
        for offset in range(size, chunks * CHUNK_BITS):
            self._bits[offset >> 3] |= 1 << (offset & 7)

    def allocate(self) -> int:
        """The lowest free offset, now used. Raises PoolExhausted."""
        chunk = self._word_chunk
        if chunk != self._low:
            chunk = self._full.find(0, self._low)
            if chunk < 0:
                self._low = len(self._full)
                raise PoolExhausted(f"all {self._size} offsets are used")
            self._low = self._word_chunk = chunk
            start = chunk * _CHUNK_BYTES
            self._word = int.from_bytes(self._bits[start : start + _CHUNK_BYTES], "little")
        word = self._word
        bit = _lowest_clear(word)
        self._bits[chunk * _CHUNK_BYTES + (bit >> 3)] |= 1 << (bit & 7)
        self._used += 1
        word |= 1 << bit
        self._word = word
        if word == _FULL_CHUNK:
            self._full[chunk] = 1
            self._word_chunk = -1
        return chunk * CHUNK_BITS + bit

    def allocate_at(self, offset: int) -> None:
        """Mark this offset used. Raises AddressInUse or OutOfRange."""
        _check(offset, self._size)
        mask = 1 << (offset & 7)
        if self._bits[offset >> 3] & mask:
            raise AddressInUse(f"offset {offset} is already used")
        self._bits[offset >> 3] |= mask
        self._used += 1
        chunk = offset // CHUNK_BITS
        if chunk == self._word_chunk:
            self._word |= 1 << (offset % CHUNK_BITS)
        start = chunk * _CHUNK_BYTES
        if self._bits[start : start + _CHUNK_BYTES] == b"\xff" * _CHUNK_BYTES:
            self._full[chunk] = 1
            self._word_chunk = -1

    def allocate_range(self, first: int, last: int) -> None:
        """Mark first..last (inclusive) used, in one pass: restoring a full /8 address by
        address would take seconds. Raises AddressInUse (changing nothing) if any is used."""
        _check(first, self._size)
        _check(last, self._size)
        start, stop = first >> 3, (last >> 3) + 1
        span = int.from_bytes(self._bits[start:stop], "little")
        shift = first - (start << 3)
        mask = ((1 << (last - first + 1)) - 1) << shift
        if span & mask:
            taken = (span & mask) >> shift
            offset = first + (taken & -taken).bit_length() - 1
            raise AddressInUse(f"offset {offset} is already used")
        self._bits[start:stop] = (span | mask).to_bytes(stop - start, "little")
        self._used += last - first + 1
        self._word_chunk = -1
        full = b"\xff" * _CHUNK_BYTES
        for chunk in range(first // CHUNK_BITS, last // CHUNK_BITS + 1):
            at = chunk * _CHUNK_BYTES
            self._full[chunk] = self._bits[at : at + _CHUNK_BYTES] == full

    def release(self, offset: int) -> None:
        """Mark this offset free. Raises NotAllocated or OutOfRange."""
        _check(offset, self._size)
        mask = 1 << (offset & 7)
        if not self._bits[offset >> 3] & mask:
            raise NotAllocated(f"offset {offset} is not allocated")
        self._bits[offset >> 3] &= ~mask
        self._used -= 1
        chunk = offset // CHUNK_BITS
        if chunk == self._word_chunk:
            self._word &= ~(1 << (offset % CHUNK_BITS))
        self._full[chunk] = 0
        self._low = min(self._low, chunk)

    def __contains__(self, offset: object) -> bool:
        if not isinstance(offset, int) or not 0 <= offset < self._size:
            return False
        return bool(self._bits[offset >> 3] & (1 << (offset & 7)))

    def __iter__(self) -> Iterator[int]:
        """Used offsets, lowest first."""
        bits = self._bits
        size = self._size
        for chunk in range(len(self._full)):
            start = chunk * _CHUNK_BYTES
            word = int.from_bytes(bits[start : start + _CHUNK_BYTES], "little")
            base = chunk * CHUNK_BITS
            while word:
                low = word & -word
                offset = base + low.bit_length() - 1
                if offset >= size:
                    return
                yield offset
                word ^= low


class SparseBitmap(_Counted):
    """Only the chunks in use are stored: memory follows the allocations."""

    __slots__ = ("_chunks", "_full", "_last_chunk", "_low")

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self._chunks: dict[int, int] = {}  # chunk index -> bits, only for chunks in use
        self._full: set[int] = set()
        self._low = 0  # no chunk below this one has a free offset
        self._last_chunk = (size - 1) // CHUNK_BITS

    def _chunk_full(self, chunk: int, word: int) -> bool:
        if chunk == self._last_chunk:
            return word == (1 << (self._size - chunk * CHUNK_BITS)) - 1
        return word == _FULL_CHUNK

    def allocate(self) -> int:
        chunk = self._low
        while chunk in self._full:
            chunk += 1
        if chunk > self._last_chunk:
            self._low = chunk
            raise PoolExhausted(f"all {self._size} offsets are used")
        self._low = chunk
        word = self._chunks.get(chunk, 0)
        bit = _lowest_clear(word)
        self._set(chunk, word | (1 << bit))
        return chunk * CHUNK_BITS + bit

    def _set(self, chunk: int, word: int) -> None:
        self._chunks[chunk] = word
        self._used += 1
        if self._chunk_full(chunk, word):
            self._full.add(chunk)

    def allocate_at(self, offset: int) -> None:
        _check(offset, self._size)
        chunk, bit = divmod(offset, CHUNK_BITS)
        word = self._chunks.get(chunk, 0)
        if word >> bit & 1:
            raise AddressInUse(f"offset {offset} is already used")
        self._set(chunk, word | (1 << bit))

    def allocate_range(self, first: int, last: int) -> None:
        _check(first, self._size)
        _check(last, self._size)
        spans = []
        for chunk in range(first // CHUNK_BITS, last // CHUNK_BITS + 1):
            low = max(first - chunk * CHUNK_BITS, 0)
            high = min(last - chunk * CHUNK_BITS, CHUNK_BITS - 1)
            mask = ((1 << (high - low + 1)) - 1) << low
            word = self._chunks.get(chunk, 0)
            if word & mask:
                bit = ((word & mask) & -(word & mask)).bit_length() - 1
                raise AddressInUse(f"offset {chunk * CHUNK_BITS + bit} is already used")
            spans.append((chunk, word | mask))
        for chunk, word in spans:
            self._chunks[chunk] = word
            if self._chunk_full(chunk, word):
                self._full.add(chunk)
        self._used += last - first + 1

    def release(self, offset: int) -> None:
        _check(offset, self._size)
        chunk, bit = divmod(offset, CHUNK_BITS)
        word = self._chunks.get(chunk, 0)
        if not word >> bit & 1:
            raise NotAllocated(f"offset {offset} is not allocated")
        word &= ~(1 << bit)
        if word:
            self._chunks[chunk] = word
        else:
            del self._chunks[chunk]
        self._used -= 1
        self._full.discard(chunk)
        self._low = min(self._low, chunk)

    def __contains__(self, offset: object) -> bool:
        if not isinstance(offset, int) or not 0 <= offset < self._size:
            return False
        chunk, bit = divmod(offset, CHUNK_BITS)
        return bool(self._chunks.get(chunk, 0) >> bit & 1)

    def __iter__(self) -> Iterator[int]:
        for chunk in sorted(self._chunks):
            word = self._chunks[chunk]
            base = chunk * CHUNK_BITS
            while word:
                low = word & -word
                yield base + low.bit_length() - 1
                word ^= low
