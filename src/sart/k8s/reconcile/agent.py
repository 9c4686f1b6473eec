"""The node agent's decision: which peers and which paths this node's speaker must have (pure).

From the cluster: the BGPPeers whose nodeBGPRef is this node, and the BGPAdvertisements that
list this node (or list no nodes: every node). From the speaker: its neighbors and its local
paths. Out: what to add and remove, so the speaker holds exactly what the cluster asks."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs
from netaddr import AddrFormatError, IPAddress, IPNetwork


@attrs.frozen
class PeerWanted:
    address: str
    asn: int
    name: str = ""
    hold_time: int | None = None


@attrs.frozen(kw_only=True)
class AgentPlan:
    add_peers: tuple[PeerWanted, ...] = ()
    delete_peers: tuple[str, ...] = ()
    add_paths: tuple[str, ...] = ()
    delete_paths: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.add_peers or self.delete_peers or self.add_paths or self.delete_paths)


def wanted_peers(node: str, peers: Iterable[Mapping[str, Any]]) -> dict[str, PeerWanted]:
    wanted = {}
    for peer in peers:
        spec = peer.get("spec", {})
        if spec.get("nodeBGPRef") != node:
            continue
        try:
            address = str(IPAddress(spec.get("addr")))
        except (AddrFormatError, ValueError, TypeError):
            continue
        wanted[address] = PeerWanted(
            address, int(spec["asn"]), peer["metadata"]["name"], spec.get("holdTime")
        )
    return wanted


def wanted_paths(node: str, advertisements: Iterable[Mapping[str, Any]]) -> set[str]:
    paths = set()
    for advertisement in advertisements:
        spec = advertisement.get("spec", {})
        nodes = spec.get("nodes")
        if nodes is not None and node not in nodes:
            continue
        try:
            paths.add(str(IPNetwork(spec.get("cidr")).cidr))
        except (AddrFormatError, ValueError, TypeError):
            continue
    return paths


def plan(
    peers: Mapping[str, PeerWanted],
    paths: set[str],
    speaker_peers: Mapping[str, int],
    speaker_paths: set[str],
) -> AgentPlan:
    """A peer whose AS changed is deleted and added again."""
    stale = {a for a, asn in speaker_peers.items() if a not in peers or peers[a].asn != asn}
    return AgentPlan(
        add_peers=tuple(
            p for a, p in sorted(peers.items()) if a not in speaker_peers or a in stale
        ),
        delete_peers=tuple(sorted(stale)),
        add_paths=tuple(sorted(paths - speaker_paths)),
        delete_paths=tuple(sorted(speaker_paths - paths)),
    )
