"""The RIB's prefix keys and fast networks against netaddr's own constructor."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from netaddr import IPNetwork

from sart.bgp.prefixes import (
    Prefixes,
    key_network,
    key_of,
    key_parts,
    key_version,
    network,
    prefix_key,
)
from sart.bgp.wire.nlri import encode_prefixes


@st.composite
def networks(draw: st.DrawFn) -> IPNetwork:
    version = draw(st.sampled_from((4, 6)))
    width = 32 if version == 4 else 128
    length = draw(st.integers(0, width))
    value = draw(st.integers(0, 2**width - 1)) >> (width - length) << (width - length)
    return IPNetwork((value, length), version)


@given(networks())
def test_network_is_what_netaddr_makes(expected: IPNetwork) -> None:
    made = network(expected.value, expected.prefixlen, expected.version)
    assert made == expected and hash(made) == hash(expected)
    assert (made.version, made.value, made.prefixlen) == (
        expected.version,
        expected.value,
        expected.prefixlen,
    )
    assert str(made) == str(expected) and made.cidr == expected


@given(networks())
def test_a_key_gives_its_prefix_back(prefix: IPNetwork) -> None:
    key = prefix_key(prefix)
    assert key == key_of(prefix.value, prefix.prefixlen, prefix.version)
    assert key_parts(key) == (prefix.version, prefix.value, prefix.prefixlen)
    assert key_network(key) == prefix and key_version(key) == prefix.version


@given(networks(), networks())
def test_keys_differ_exactly_when_prefixes_do(a: IPNetwork, b: IPNetwork) -> None:
    assert (prefix_key(a) == prefix_key(b)) == ((a.version, a) == (b.version, b))


def test_keys_of_a_table_spread_over_the_low_bits() -> None:
    # CPython picks a dict slot from a key's low bits: /24s next to each other must differ
    # there, or a million of them share probe chains.
    keys = {prefix_key(IPNetwork(((10 << 24) + (i << 8), 24), 4)) & 0xFFF for i in range(4096)}
    assert len(keys) == 4096
    assert prefix_key(IPNetwork("0.0.0.0/0")) != prefix_key(IPNetwork("::/0"))


@given(st.lists(networks(), max_size=20), st.sampled_from((4, 6)))
def test_prefixes_read_from_the_wire_are_the_networks(given: list[IPNetwork], version: int) -> None:
    nets = tuple(n for n in given if n.version == version)
    data = encode_prefixes(nets, (), version, add_path=False)
    view = Prefixes(data, version, len(nets))
    assert view.wire() == data and encode_prefixes(view, (), version, add_path=False) == data
    assert view == nets and nets == view and hash(view) == hash(nets)
    assert list(view) == list(nets) and len(view) == len(nets) and bool(view) == bool(nets)
    assert view.keys() == [prefix_key(n) for n in nets]
    carried: list[IPNetwork] = []
    carried += view  # a list stays a list
    assert carried == list(nets)


def test_host_bits_on_the_wire_are_cleared() -> None:
    view = Prefixes(bytes((23, 10, 0, 3)), 4, 1)  # 10.0.3.0/23: the last bit is a host bit
    assert view == (IPNetwork("10.0.2.0/23"),)
    assert view.keys() == [prefix_key(IPNetwork("10.0.2.0/23"))]
    assert view.wire() == bytes((23, 10, 0, 2))  # written again without it
