"""Rules that span objects, which a CRD schema cannot say (the validating webhook's logic):
at most one autoAssign AddressPool per type and IP family (one of each for dual-stack), no
overlapping AddressPools of a type, no two BGPPeers for one node and address. Pure: the object
and its siblings in, problems out."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from netaddr import AddrFormatError, IPAddress, IPNetwork

Object = Mapping[str, Any]


def _name(obj: Object) -> str:
    return str(obj.get("metadata", {}).get("name", ""))


def _cidr(obj: Object) -> IPNetwork | None:
    try:
        return IPNetwork(obj.get("spec", {}).get("cidr", ""))
    except (AddrFormatError, ValueError, TypeError):
        return None


def _overlap(a: IPNetwork, b: IPNetwork) -> bool:
    return a.version == b.version and (a in b or b in a)


def validate_address_pool(pool: Object, others: Iterable[Object]) -> list[str]:
    spec = pool.get("spec", {})
    kind = spec.get("type", "service")
    cidr = _cidr(pool)
    problems = []
    for other in others:
        if _name(other) == _name(pool):
            continue  # itself, when updated
        other_spec = other.get("spec", {})
        if other_spec.get("type", "service") != kind:
            continue
        theirs = _cidr(other)
        same_family = cidr is None or theirs is None or cidr.version == theirs.version
        if spec.get("autoAssign") and other_spec.get("autoAssign") and same_family:
            family = f" for IPv{cidr.version}" if cidr is not None else ""
            problems.append(
                f"AddressPool {_name(other)} is already the autoAssign pool of type {kind}{family}"
            )
        if cidr is not None and theirs is not None and _overlap(cidr, theirs):
            problems.append(f"cidr {cidr} overlaps AddressPool {_name(other)} ({theirs})")
    return problems


def validate_bgp_peer(peer: Object, others: Iterable[Object]) -> list[str]:
    spec = peer.get("spec", {})
    node, address = spec.get("nodeBGPRef"), spec.get("addr")
    try:
        ip = IPAddress(address)
    except (AddrFormatError, ValueError, TypeError):
        return []  # the schema reports a bad address
    problems = []
    for other in others:
        other_spec = other.get("spec", {})
        if _name(other) == _name(peer) or other_spec.get("nodeBGPRef") != node:
            continue
        try:
            same = IPAddress(other_spec.get("addr")) == ip
        except (AddrFormatError, ValueError, TypeError):
            continue
        if same:
            problems.append(f"BGPPeer {_name(other)} already peers node {node} with {ip}")
    return problems
