"""Prefixes as the RIB indexes them: one int per prefix, and netaddr networks made fast.

A full table is a million prefixes. netaddr's `IPNetwork((value, length), version)` parses
and checks its argument (about a microsecond), and its hash, equality and `version` go
through properties and a strategy module: at that scale those costs are most of an ingest.
The codec has checked every prefix it decodes already, so `network` builds the object
directly, and the RIB keys its dictionaries by `prefix_key`, a plain int.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import overload

from netaddr import IPNetwork

IPV4_BITS = 32
IPV6_BITS = 128
_IPV4_MODULE = IPNetwork("0.0.0.0/0")._module
_IPV6_MODULE = IPNetwork("::/0")._module
_MODULES = {4: _IPV4_MODULE, 6: _IPV6_MODULE}
_new = object.__new__


def network(value: int, length: int, version: int) -> IPNetwork:
    """IPNetwork((value, length), version) for a value the caller has checked: it fits the
    version's width and has no bits past `length` (tests hold this equal to netaddr's own
    constructor, so a netaddr that stores its networks differently fails them, not routing)."""
    made: IPNetwork = _new(IPNetwork)
    made._value = value
    made._prefixlen = length
    made._module = _MODULES[version]
    return made


# A key is the prefix's network bits right-aligned (the address shifted down past its
# length), with the length above them and, for IPv6, a flag above that. Right-aligned, the
# bits that differ between prefixes are the low ones: CPython hashes an int to itself and
# picks a dict slot from the low bits, so a key with the address left in place (every /24
# ending in eight zero bits) sends a million prefixes down the same probe chains.
_V6_FLAG = 1 << (IPV6_BITS + 8)
_V6_MASK = (1 << IPV6_BITS) - 1
_V4_MASK = (1 << IPV4_BITS) - 1


def key_of(value: int, length: int, version: int) -> int:
    """`prefix_key` of the network (value, length) of that IP version (value without host
    bits)."""
    if version == 4:
        return length << IPV4_BITS | value >> (IPV4_BITS - length)
    return _V6_FLAG | length << IPV6_BITS | value >> (IPV6_BITS - length)


def prefix_key(prefix: IPNetwork) -> int:
    """A prefix as one int, distinct for every prefix of either IP version."""
    length: int = prefix._prefixlen
    if prefix._module is _IPV4_MODULE:
        return length << IPV4_BITS | prefix._value >> (IPV4_BITS - length)  # type: ignore[no-any-return]
    return _V6_FLAG | length << IPV6_BITS | prefix._value >> (IPV6_BITS - length)  # type: ignore[no-any-return]


def key_parts(key: int) -> tuple[int, int, int]:
    """(IP version, network value, length) of a `prefix_key`."""
    if key & _V6_FLAG:
        length = key >> IPV6_BITS & 0xFF
        return 6, (key & _V6_MASK) << (IPV6_BITS - length), length
    length = key >> IPV4_BITS
    return 4, (key & _V4_MASK) << (IPV4_BITS - length), length


def key_network(key: int) -> IPNetwork:
    """The network a `prefix_key` stands for."""
    version, value, length = key_parts(key)
    return network(value, length, version)


def key_version(key: int) -> int:
    return 6 if key & _V6_FLAG else 4


def key_wire_length(key: int) -> int:
    """Octets the prefix takes in an UPDATE (length octet included, no path id)."""
    length = key >> IPV6_BITS & 0xFF if key & _V6_FLAG else key >> IPV4_BITS
    return 1 + ((length + 7) >> 3)


def key_wire(key: int) -> bytes:
    """A `prefix_key`'s prefix as an UPDATE (and an MRT RIB record) writes it: its length
    octet, then the octets that length needs (RFC 4271 4.3)."""
    if key & _V6_FLAG:
        length, bits = key >> IPV6_BITS & 0xFF, key & _V6_MASK
    else:
        length, bits = key >> IPV4_BITS, key & _V4_MASK
    size = (length + 7) >> 3
    return bytes((length,)) + (bits << ((size << 3) - length)).to_bytes(size, "big")


def prefixes_of_keys(keys: Sequence[int], version: int) -> Prefixes:
    """The prefixes of these `prefix_key`s (all of `version`) in wire form."""
    return Prefixes(b"".join(map(key_wire, keys)), version, len(keys))


class Prefixes(Sequence[IPNetwork]):
    """Prefixes of one IP version as an UPDATE carries them (a length octet, then the octets
    the length needs: RFC 4271 4.3), turned into networks only when asked.

    The codec walks and checks the field when it decodes the message; what it hands out is
    this view of the octets. The RIB reads `keys()` straight from them, so a full table
    makes no IPNetwork at all; anyone else sees a sequence of networks (equal to the tuple
    of the same networks, with its hash). Host bits past a prefix's length are cleared, as
    RFC 4271 says they are irrelevant."""

    __slots__ = ("_count", "_data", "_networks", "_version")

    def __init__(self, data: bytes, version: int, count: int) -> None:
        self._data = data  # the whole field, already checked: `count` prefixes, nothing else
        self._version = version
        self._count = count
        self._networks: tuple[IPNetwork, ...] | None = None

    def _spans(self) -> Iterator[tuple[int, int]]:
        """(value without host bits, length) of each prefix."""
        data = self._data
        width = IPV4_BITS if self._version == 4 else IPV6_BITS
        pos, end = 0, len(data)
        from_bytes = int.from_bytes
        while pos < end:
            length = data[pos]
            stop = pos + 1 + ((length + 7) >> 3)
            value = from_bytes(data[pos + 1 : stop], "big") << (width + 8 - ((stop - pos) << 3))
            yield value >> (width - length) << (width - length), length
            pos = stop

    def keys(self) -> list[int]:
        """The `prefix_key` of each prefix, without making the networks."""
        data = self._data
        pos, end = 0, len(data)
        keys: list[int] = []
        append = keys.append
        from_bytes = int.from_bytes
        width = IPV4_BITS if self._version == 4 else IPV6_BITS
        flag = 0 if self._version == 4 else _V6_FLAG
        while pos < end:
            length = data[pos]
            stop = pos + 1 + ((length + 7) >> 3)
            bits = from_bytes(data[pos + 1 : stop], "big") >> (((stop - pos - 1) << 3) - length)
            append(flag | length << width | bits)
            pos = stop
        return keys

    @property
    def version(self) -> int:
        return self._version

    def wire(self) -> bytes:
        """The field as an encoder writes it: the octets received when no host bits are set
        past a prefix's length (the usual case), else written again without them."""
        data = self._data
        pos, end = 0, len(data)
        while pos < end:
            length = data[pos]
            pos += 1 + ((length + 7) >> 3)
            if length & 7 and data[pos - 1] & (0xFF >> (length & 7)):
                break
        else:
            return data
        return prefixes_of_keys(self.keys(), self._version)._data  # keys carry no host bits

    @property
    def networks(self) -> tuple[IPNetwork, ...]:
        if self._networks is None:
            version = self._version
            self._networks = tuple(network(v, n, version) for v, n in self._spans())
        return self._networks

    def __len__(self) -> int:
        return self._count

    def __bool__(self) -> bool:
        return self._count > 0

    def __iter__(self) -> Iterator[IPNetwork]:
        return iter(self.networks)

    @overload
    def __getitem__(self, index: int) -> IPNetwork: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[IPNetwork, ...]: ...
    def __getitem__(self, index: int | slice) -> IPNetwork | tuple[IPNetwork, ...]:
        return self.networks[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Prefixes):
            if self._version == other._version and self._data == other._data:
                return True
            return self.networks == other.networks
        if isinstance(other, tuple):
            return self.networks == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.networks)

    def __repr__(self) -> str:
        return repr(self.networks)
