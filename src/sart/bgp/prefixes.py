"""Prefixes as the RIB indexes them: one int per prefix, and netaddr networks made fast.

A full table is a million prefixes. netaddr's `IPNetwork((value, length), version)` parses
and checks its argument (about a microsecond), and its hash, equality and `version` go
through properties and a strategy module: at that scale those costs are most of an ingest.
The codec has checked every prefix it decodes already, so `network` builds the object
directly, and the RIB keys its dictionaries by `prefix_key`, a plain int.
"""

from __future__ import annotations

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
