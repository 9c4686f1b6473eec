"""sart.cni.podnet without the kernel: derived names and the attachment record in the alias."""

from __future__ import annotations

import json

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from netaddr import IPNetwork

from sart.cni.podnet import (
    ALIAS_MAX,
    IFNAME_MAX,
    Attachment,
    PodNetworkError,
    decode_record,
    encode_record,
    host_ifname_for,
    pod_mac_for,
)

CONTAINER = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def attachment(**changes: object) -> Attachment:
    base = Attachment(
        container_id=CONTAINER,
        ifname="eth0",
        network="sart",
        host_ifname=host_ifname_for(CONTAINER, "eth0"),
        addresses=(IPNetwork("10.244.1.23/32"), IPNetwork("fd00:10:244:1::17/128")),
        pod="kube-system/coredns-5d78c9869d-abcde",
        pool="default-pod-pool",
        netns="/var/run/netns/cni-1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901",
        mac=pod_mac_for(CONTAINER, "eth0"),
    )
    return attrs.evolve(base, **changes)


def test_host_ifname_is_short_stable_and_distinct() -> None:
    name = host_ifname_for(CONTAINER, "eth0")
    assert name == host_ifname_for(CONTAINER, "eth0")
    assert len(name) == IFNAME_MAX
    assert name.startswith("sart")
    int(name[4:], 16)
    assert name != host_ifname_for(CONTAINER, "net1")
    assert name != host_ifname_for(CONTAINER[:-1] + "9", "eth0")


def test_pod_mac_is_locally_administered_unicast() -> None:
    mac = pod_mac_for(CONTAINER, "eth0")
    first = int(mac.split(":")[0], 16)
    assert len(mac) == 17
    assert first & 0b11 == 0b10  # locally administered, unicast
    assert mac == pod_mac_for(CONTAINER, "eth0") != pod_mac_for(CONTAINER, "eth1")


def test_a_typical_record_fits_whole() -> None:
    typical = attachment()
    text = encode_record(typical)
    assert len(text) <= ALIAS_MAX
    assert json.loads(text)[:3] == [1, CONTAINER, "eth0"]
    assert decode_record(text, host_mac="aa:bb:cc:dd:ee:ff") == attrs.evolve(
        typical, host_mac="aa:bb:cc:dd:ee:ff"
    )


def test_a_long_record_shortens_pod_then_pool_then_network_only() -> None:
    long = attachment(
        pod="a-namespace-of-sixty-three-characters-" + "n" * 25 + "/" + "p" * 253,
        pool="q" * 200,
        network="n" * 100,
    )
    text = encode_record(long)
    assert len(text) == ALIAS_MAX
    back = decode_record(text)
    assert back is not None
    assert (back.container_id, back.ifname, back.addresses, back.netns) == (
        long.container_id,
        long.ifname,
        long.addresses,
        long.netns,
    )
    assert (back.pod, back.pool) == ("", "")
    assert long.network.startswith(back.network)
    assert 0 < len(back.network) < len(long.network)
    # Shortening is stable: the shortened attachment encodes to the same record.
    assert encode_record(back) == text


def test_a_record_without_room_for_the_essentials_is_refused() -> None:
    with pytest.raises(PodNetworkError, match="more than the 254 an interface alias holds"):
        encode_record(attachment(netns="/proc/" + "1" * 200 + "/ns/net"))


@pytest.mark.parametrize(
    "alias",
    [
        "",
        "a human's note",
        "{}",
        '[2,"x","eth0",[],"","","",""]',
        '[1,"x","eth0",["not an address"],"","","",""]',
        '[1,"x","eth0","10.0.0.1","","","",""]',
        '[1,"x","eth0",[],"","",""]',
        '[1,7,"eth0",[],"","","",""]',
        '[true,"x","eth0",[],"","","",""]',
    ],
)
def test_what_is_not_a_record_decodes_to_none(alias: str) -> None:
    assert decode_record(alias) is None


addresses = st.one_of(
    st.ip_addresses(v=4).map(lambda a: IPNetwork(f"{a}/32")),
    st.ip_addresses(v=6).map(lambda a: IPNetwork(f"{a}/128")),
)
texts = st.text(max_size=120)


@given(
    container_id=st.text(alphabet="0123456789abcdef", min_size=1, max_size=64),
    ifname=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=15),
    addresses=st.lists(addresses, min_size=1, max_size=2, unique=True).map(tuple),
    network=texts,
    pod=texts,
    pool=texts,
    netns=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789/-_.", max_size=60),
)
def test_round_trip(
    container_id: str,
    ifname: str,
    addresses: tuple[IPNetwork, ...],
    network: str,
    pod: str,
    pool: str,
    netns: str,
) -> None:
    """The record keeps the container id, ifname, addresses and netns; what it shortens to fit
    is a prefix of what was given; and the decoded attachment encodes to the same record."""
    given_ = Attachment(
        container_id=container_id,
        ifname=ifname,
        network=network,
        host_ifname=host_ifname_for(container_id, ifname),
        addresses=addresses,
        pod=pod,
        pool=pool,
        netns=netns,
        mac=pod_mac_for(container_id, ifname),
    )
    text = encode_record(given_)
    assert len(text) <= ALIAS_MAX
    text.encode("ascii")
    back = decode_record(text)
    assert back is not None
    assert attrs.evolve(back, network=network, pod=pod, pool=pool) == given_
    assert network.startswith(back.network)
    assert pod.startswith(back.pod)
    assert pool.startswith(back.pool)
    if len(text) <= ALIAS_MAX - 12:  # room for any character more: nothing was shortened
        assert back == given_
    assert encode_record(back) == text
