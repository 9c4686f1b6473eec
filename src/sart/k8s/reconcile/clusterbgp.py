"""Cluster BGP configuration (pure): ClusterBGPs, BGPPeerTemplates and Nodes in; the NodeBGPs
and BGPPeers they call for out, as model values, plus what to create, change and delete to get
there.

As the original sart does it: every Node a ClusterBGP's `nodeSelector` matches gets a NodeBGP
named after the node (ASN from `asnSelector`, router id from `routerIdSelector`, the speaker
endpoint and multipath from `speaker`, the node's peers listed in `spec.peers`), and every
`peers` entry whose `nodeBGPSelector` matches the node becomes a BGPPeer named
`<template>-<node>-<asn>-<address>` (`<node>-<asn>-<address>` without a template) and labelled
`bgppeer.sart.terassyi.net/node: <node>`. IPv6 addresses put `-` for `:` in the name (a `:`
is not allowed in an object name; the original fails there).

Additions: an inline `peerConfig` overrides every field it sets of its template (the original
only takes its asn and addr); what a ClusterBGP made carries the label
`sart.terassyi.net/clusterbgp: <name>` and is owned by it, so only those are ever changed or
deleted (a NodeBGP written by hand is left alone, and said so); a node selected by two
ClusterBGPs stays with the older one (by creation time, then name: never a flip-flop), and
both say so in their `Conflicted` condition, True while the overlap lasts and False once it is
gone (the younger one also in a Warning Event).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import attrs
from netaddr import AddrFormatError, IPAddress

from sart.k8s.models import (
    ASN_LABEL,
    ASN_MAX,
    CLUSTER_BGP_CONFLICTED,
    GROUP,
    ROUTER_ID_LABEL,
    VERSION,
    AsnSelectionType,
    BGPPeer,
    BGPPeerSlim,
    BGPPeerSpec,
    BGPPeerTemplate,
    BGPPeerTemplateSpec,
    ClusterBGP,
    ClusterBGPStatus,
    Condition,
    ConditionStatus,
    NodeBGP,
    NodeBGPConditionStatus,
    NodeBGPSpec,
    ObjectMeta,
    OwnerReference,
    PeerConfig,
    RouterIdSelectionType,
)
from sart.k8s.reconcile.conditions import set_condition

CLUSTER_BGP_LABEL = "sart.terassyi.net/clusterbgp"  # on what a ClusterBGP made: its name
PEER_NODE_LABEL = "bgppeer.sart.terassyi.net/node"  # on a BGPPeer: its node (the original's)
NODES_NAMED = 10  # nodes a Conflicted message names; the rest are counted


@attrs.frozen(kw_only=True)
class NodeView:
    """What the reconciler reads of a Node."""

    name: str
    labels: Mapping[str, str] = attrs.field(factory=dict)
    internal_addresses: tuple[str, ...] = ()  # status.addresses of type InternalIP, in order


@attrs.frozen
class Problem:
    """Something a ClusterBGP cannot do for a node: a Warning Event on the ClusterBGP."""

    cluster_bgp: str
    node: str
    reason: str
    message: str


@attrs.frozen
class Overlap:
    """A node two ClusterBGPs select: the older configures it, the younger does not."""

    node: str
    older: str
    younger: str


@attrs.frozen(kw_only=True)
class ClusterBgpPlan:
    node_bgps: Mapping[str, NodeBGP]  # the NodeBGPs ClusterBGPs call for, by name
    peers: Mapping[str, BGPPeer]  # the BGPPeers they call for, by name
    statuses: Mapping[str, ClusterBGPStatus]  # by ClusterBGP name
    problems: tuple[Problem, ...] = ()


@attrs.frozen(kw_only=True)
class Changes:
    """What to write so the cluster holds the plan (objects as models, names for deletes)."""

    create: tuple[NodeBGP | BGPPeer, ...] = ()
    update: tuple[NodeBGP | BGPPeer, ...] = ()  # metadata (labels, owners) and spec
    delete_node_bgps: tuple[str, ...] = ()
    delete_peers: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.create or self.update or self.delete_node_bgps or self.delete_peers)


class NodeRefused(Exception):
    """A node cannot be configured (a label missing or wrong): the reason, then the message."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


def selects(selector: Mapping[str, str] | None, labels: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in (selector or {}).items())


def node_asn(cluster_bgp: ClusterBGP, node: NodeView) -> int:
    selector = cluster_bgp.spec.asn_selector
    if selector.from_ is AsnSelectionType.ASN:
        assert selector.asn is not None  # the model's rule
        return selector.asn
    text = node.labels.get(ASN_LABEL)
    if text is None:
        raise NodeRefused("AsnLabelMissing", f"node {node.name} has no label {ASN_LABEL}")
    if not text.isdigit() or not 1 <= int(text) <= ASN_MAX:
        raise NodeRefused(
            "AsnLabelInvalid", f"node {node.name}: label {ASN_LABEL}={text!r} is not an AS number"
        )
    return int(text)


def node_router_id(cluster_bgp: ClusterBGP, node: NodeView) -> IPAddress:
    selector = cluster_bgp.spec.router_id_selector
    if selector.from_ is RouterIdSelectionType.ROUTER_ID:
        assert selector.router_id is not None  # the model's rule
        return selector.router_id
    if selector.from_ is RouterIdSelectionType.LABEL:
        text = node.labels.get(ROUTER_ID_LABEL)
        if text is None:
            raise NodeRefused(
                "RouterIdLabelMissing", f"node {node.name} has no label {ROUTER_ID_LABEL}"
            )
        where = f"label {ROUTER_ID_LABEL}={text!r}"
        candidates: Iterable[str] = (text,)
    else:
        where = "its InternalIP addresses"
        candidates = node.internal_addresses
    for candidate in candidates:
        try:
            address = IPAddress(candidate)
        except (AddrFormatError, ValueError):
            continue
        if address.version == 4:
            return address
    raise NodeRefused(
        "RouterIdNotFound", f"node {node.name}: no IPv4 router id in {where or 'none'}"
    )


def _merge(template: BGPPeerTemplateSpec, override: BGPPeerTemplateSpec) -> BGPPeerTemplateSpec:
    changes = {
        field.name: getattr(override, field.name)
        for field in attrs.fields(BGPPeerTemplateSpec)
        if getattr(override, field.name) is not None
    }
    return attrs.evolve(template, **changes)


def peer_name(template: str | None, node: str, asn: int, address: IPAddress) -> str:
    text = str(address).replace(":", "-")
    return f"{template}-{node}-{asn}-{text}" if template else f"{node}-{asn}-{text}"


def node_peers(
    cluster_bgp: ClusterBGP, node: NodeView, templates: Mapping[str, BGPPeerTemplate]
) -> tuple[list[BGPPeerSlim], list[Problem]]:
    """The node's peers from the ClusterBGP's `peers`, and problems (unknown template,
    no asn or address)."""
    peers, problems = [], []
    name = cluster_bgp.metadata.name
    for index, entry in enumerate(cluster_bgp.spec.peers or ()):
        if not selects(entry.node_bgp_selector, node.labels):
            continue
        spec = _peer_settings(entry, templates)
        if isinstance(spec, str):
            problems.append(Problem(name, node.name, "PeerInvalid", f"peers[{index}]: {spec}"))
            continue
        assert spec.asn is not None and spec.addr is not None
        peer = BGPPeerSpec(
            asn=spec.asn,
            addr=spec.addr,
            hold_time=spec.hold_time,
            keepalive_time=spec.keepalive_time,
            capabilities=spec.capabilities,
            node_bgp_ref=node.name,
            cluster_bgp_ref=name,
            speaker=cluster_bgp.spec.speaker,
            groups=spec.groups,
            max_prefixes=spec.max_prefixes,
            bfd=spec.bfd,
            passive=spec.passive,
            ttl=spec.ttl,
            auth_secret_ref=spec.auth_secret_ref,
        )
        peer_id = peer_name(entry.peer_template_ref, node.name, spec.asn, spec.addr)
        peers.append(BGPPeerSlim(name=peer_id, spec=peer))
    return peers, problems


def _peer_settings(
    entry: PeerConfig, templates: Mapping[str, BGPPeerTemplate]
) -> BGPPeerTemplateSpec | str:
    """The entry's settings (template, then inline overrides), or why there are none."""
    settings = BGPPeerTemplateSpec()
    if entry.peer_template_ref is not None:
        template = templates.get(entry.peer_template_ref)
        if template is None:
            return f"no BGPPeerTemplate {entry.peer_template_ref!r}"
        settings = template.spec
    if entry.peer_config is not None:
        settings = _merge(settings, entry.peer_config)
    if settings.asn is None or settings.addr is None:
        return "a peer needs an asn and an addr (from its template or peerConfig)"
    return settings


def _owner(cluster_bgp: ClusterBGP) -> OwnerReference:
    return OwnerReference(
        api_version=f"{GROUP}/{VERSION}",
        kind="ClusterBGP",
        name=cluster_bgp.metadata.name,
        uid=cluster_bgp.metadata.uid or "",
        controller=True,
        block_owner_deletion=True,
    )


def _seniority(cluster_bgp: ClusterBGP) -> tuple[str, str]:
    return (cluster_bgp.metadata.creation_timestamp or "", cluster_bgp.metadata.name)


def plan(
    cluster_bgps: Iterable[ClusterBGP],
    templates: Mapping[str, BGPPeerTemplate],
    nodes: Iterable[NodeView],
    node_bgps: Mapping[str, NodeBGP],
    *,
    now: str,
) -> ClusterBgpPlan:
    """What every ClusterBGP calls for. `node_bgps` (as observed) tells which NodeBGPs are
    hand-written (left alone) and which are ready (for the ClusterBGPs' status); `now` (RFC
    3339) is the transition time of a condition that changes."""
    live = sorted(
        (c for c in cluster_bgps if c.metadata.deletion_timestamp is None), key=_seniority
    )
    wanted_nodes: dict[str, NodeBGP] = {}
    wanted_peers: dict[str, BGPPeer] = {}
    problems: list[Problem] = []
    claimed: dict[str, str] = {}  # node -> the ClusterBGP that configures it
    overlaps: list[Overlap] = []
    statuses = {}
    for node in sorted(nodes, key=lambda n: n.name):
        for cluster_bgp in live:
            name = cluster_bgp.metadata.name
            if not selects(cluster_bgp.spec.node_selector, node.labels):
                continue
            if node.name in claimed:
                overlaps.append(Overlap(node.name, claimed[node.name], name))
                message = f"node {node.name} is configured by ClusterBGP {claimed[node.name]}"
                problems.append(Problem(name, node.name, "NodeClaimed", message))
                continue
            claimed[node.name] = name
            existing = node_bgps.get(node.name)
            if existing is not None and CLUSTER_BGP_LABEL not in existing.metadata.labels:
                message = f"NodeBGP {node.name} was not made by a ClusterBGP: left as it is"
                problems.append(Problem(name, node.name, "NodeBGPNotManaged", message))
                continue
            try:
                asn, router_id = node_asn(cluster_bgp, node), node_router_id(cluster_bgp, node)
            except NodeRefused as refused:
                problems.append(Problem(name, node.name, refused.reason, refused.message))
                continue
            peers, peer_problems = node_peers(cluster_bgp, node, templates)
            problems.extend(peer_problems)
            labels = {**node.labels, CLUSTER_BGP_LABEL: name}
            meta = ObjectMeta(
                name=node.name, labels=labels, owner_references=(_owner(cluster_bgp),)
            )
            spec = NodeBGPSpec(
                asn=asn,
                router_id=router_id,
                speaker=cluster_bgp.spec.speaker,
                peers=tuple(peers) or None,
            )
            wanted_nodes[node.name] = NodeBGP(metadata=meta, spec=spec)
            for peer in peers:
                peer_labels = {PEER_NODE_LABEL: node.name, CLUSTER_BGP_LABEL: name}
                peer_meta = ObjectMeta(
                    name=peer.name, labels=peer_labels, owner_references=(_owner(cluster_bgp),)
                )
                wanted_peers[peer.name] = BGPPeer(metadata=peer_meta, spec=peer.spec)
    for cluster_bgp in live:
        name = cluster_bgp.metadata.name
        desired = sorted(n for n, owner in claimed.items() if owner == name)
        ready = sorted(n for n in desired if n in wanted_nodes and _ready(node_bgps.get(n)))
        seen = cluster_bgp.status.conditions if cluster_bgp.status is not None else None
        conflicted = _conflicted(cluster_bgp, overlaps, now)
        statuses[name] = ClusterBGPStatus(
            desired_nodes=tuple(desired),
            nodes=tuple(ready),
            conditions=set_condition(seen, conflicted),
        )
    return ClusterBgpPlan(
        node_bgps=wanted_nodes, peers=wanted_peers, statuses=statuses, problems=tuple(problems)
    )


def _conflicted(cluster_bgp: ClusterBGP, overlaps: Iterable[Overlap], now: str) -> Condition:
    """The ClusterBGP's Conflicted condition: True while it shares a node with another, the
    reason NodeClaimed when it lost one (to an older ClusterBGP), NodeAlsoSelected when it
    only kept them (from younger ones)."""
    name = cluster_bgp.metadata.name
    lost = [(o.node, o.older) for o in overlaps if o.younger == name]
    kept = [(o.node, o.younger) for o in overlaps if o.older == name]
    said = []
    if lost:
        said.append(f"configured by an older ClusterBGP, not this one: {_listing(lost)}")
    if kept:
        said.append(f"configured by this one, selected by a younger ClusterBGP too: "
                     f"{_listing(kept)}")  # fmt: skip
    reason = "NodeClaimed" if lost else "NodeAlsoSelected" if kept else "NoConflict"
    return Condition(
        type=CLUSTER_BGP_CONFLICTED,
        status=ConditionStatus.TRUE if said else ConditionStatus.FALSE,
        reason=reason,
        message="; ".join(said) or "no other ClusterBGP selects any of its nodes",
        last_transition_time=now,
        observed_generation=cluster_bgp.metadata.generation,
    )


def _listing(pairs: list[tuple[str, str]]) -> str:
    """`node (ClusterBGP), ...`, sorted, the first NODES_NAMED named and the rest counted."""
    pairs = sorted(pairs)
    named = ", ".join(f"node {node} ({other})" for node, other in pairs[:NODES_NAMED])
    more = len(pairs) - NODES_NAMED
    return f"{named} and {more} more" if more > 0 else named


def _ready(node_bgp: NodeBGP | None) -> bool:
    """Whether the node's agent reports its speaker configured (last condition Available)."""
    if node_bgp is None or node_bgp.status is None or not node_bgp.status.conditions:
        return False
    return node_bgp.status.conditions[-1].status is NodeBGPConditionStatus.AVAILABLE


def _differs(wanted: NodeBGP | BGPPeer, seen: NodeBGP | BGPPeer) -> bool:
    return (
        wanted.spec != seen.spec
        or any(seen.metadata.labels.get(k) != v for k, v in wanted.metadata.labels.items())
        or wanted.metadata.owner_references != seen.metadata.owner_references
    )


def changes(
    wanted: ClusterBgpPlan, node_bgps: Mapping[str, NodeBGP], peers: Mapping[str, BGPPeer]
) -> Changes:
    """The writes that make the observed NodeBGPs and BGPPeers those of the plan; only objects
    a ClusterBGP made (CLUSTER_BGP_LABEL) are changed or deleted."""
    create: list[NodeBGP | BGPPeer] = []
    update: list[NodeBGP | BGPPeer] = []
    observed: list[tuple[Mapping[str, NodeBGP | BGPPeer], Mapping[str, NodeBGP | BGPPeer]]] = [
        (wanted.node_bgps, node_bgps),
        (wanted.peers, peers),
    ]
    for desired, seen in observed:
        for name, obj in sorted(desired.items()):
            current = seen.get(name)
            if current is None:
                create.append(obj)
            elif _differs(obj, current):
                update.append(obj)
    return Changes(
        create=tuple(create),
        update=tuple(update),
        delete_node_bgps=_unwanted(node_bgps, wanted.node_bgps),
        delete_peers=_unwanted(peers, wanted.peers),
    )


def _unwanted(
    seen: Mapping[str, NodeBGP | BGPPeer], wanted: Mapping[str, NodeBGP | BGPPeer]
) -> tuple[str, ...]:
    return tuple(
        sorted(
            name
            for name, obj in seen.items()
            if name not in wanted and CLUSTER_BGP_LABEL in obj.metadata.labels
        )
    )
