"""The cross-object rules on plain dicts."""

from __future__ import annotations

from typing import Any

from sart.k8s.reconcile.validation import validate_address_pool, validate_bgp_peer


def pool(name: str, cidr: str, kind: str = "service", auto: bool = False) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"cidr": cidr, "type": kind, "autoAssign": auto}}


def peer(name: str, node: str, addr: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"nodeBGPRef": node, "addr": addr}}


def test_address_pools() -> None:
    existing = [pool("lb", "10.0.0.0/24", auto=True), pool("pods", "10.1.0.0/16", "pod", True)]
    assert validate_address_pool(pool("v6", "2001:db8::/64", auto=True), existing) == []
    assert validate_address_pool(pool("b", "10.2.0.0/24", auto=True), existing) == [
        "AddressPool lb is already the autoAssign pool of type service for IPv4"
    ]
    assert validate_address_pool(pool("c", "10.0.0.128/25"), existing) == [
        "cidr 10.0.0.128/25 overlaps AddressPool lb (10.0.0.0/24)"
    ]
    assert validate_address_pool(pool("d", "10.1.2.0/24"), existing) == []  # other type
    assert validate_address_pool(pool("lb", "10.0.0.0/23", auto=True), existing) == []  # itself


def test_bgp_peers() -> None:
    existing = [peer("a", "node1", "10.0.0.1")]
    assert validate_bgp_peer(peer("b", "node2", "10.0.0.1"), existing) == []
    assert validate_bgp_peer(peer("c", "node1", "10.0.0.1"), existing) == [
        "BGPPeer a already peers node node1 with 10.0.0.1"
    ]
    assert validate_bgp_peer(peer("a", "node1", "10.0.0.1"), existing) == []
