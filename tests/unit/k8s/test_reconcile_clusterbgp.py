"""ClusterBGP -> NodeBGPs and BGPPeers (pure), fed the original sart's sample YAML."""

from __future__ import annotations

from typing import Any

import attrs

from sart.k8s.convert import structure
from sart.k8s.models import (
    BGPPeerTemplate,
    ClusterBGP,
    ClusterBGPStatus,
    Condition,
    ConditionStatus,
    NodeBGP,
    NodeBGPCondition,
    NodeBGPConditionReason,
    NodeBGPConditionStatus,
    NodeBGPStatus,
)
from sart.k8s.reconcile.clusterbgp import (
    CLUSTER_BGP_LABEL,
    PEER_NODE_LABEL,
    NodeView,
    changes,
    plan,
)
from sart_samples import original_samples

NOW = "2026-02-02T00:00:00Z"


def sample(kind: str, name: str) -> dict[str, Any]:
    return next(
        s for s in original_samples() if s["kind"] == kind and s["metadata"]["name"] == name
    )


def cluster_bgp(name: str, created: str = "2026-01-01T00:00:00Z", **spec: Any) -> ClusterBGP:
    body = sample("ClusterBGP", name)
    body = {**body, "metadata": {**body["metadata"], "uid": f"uid-{name}",
                                 "creationTimestamp": created, "generation": 3},
            "spec": {**body["spec"], **spec}}  # fmt: skip
    return structure(ClusterBGP, body)


TEMPLATE = structure(
    BGPPeerTemplate,
    {"apiVersion": "sart.terassyi.net/v1alpha2", "kind": "BGPPeerTemplate",
     "metadata": {"name": "bgppeertemplate-sample"},
     "spec": {"asn": 65000, "addr": "9.9.9.9", "groups": ["to-router0"], "holdTime": 9}},
)  # fmt: skip
TEMPLATES = {"bgppeertemplate-sample": TEMPLATE}


def node(name: str, bgp: str, asn: str | None = "65010", address: str = "172.18.0.2") -> NodeView:
    labels = {"bgp": bgp}
    if asn is not None:
        labels["sart.terassyi.net/asn"] = asn
    return NodeView(name=name, labels=labels, internal_addresses=("fd00::2", address))


def test_the_original_samples_give_a_node_bgp_and_its_peer_per_selected_node() -> None:
    nodes = [
        node("sart-worker", "a"),
        node("sart-worker2", "a", "65011", "172.18.0.3"),
        node("sart-control-plane", "b", "65020", "172.18.0.4"),
        node("other", "c"),
    ]
    wanted = plan([cluster_bgp("clusterbgp-sample-a"), cluster_bgp("clusterbgp-sample-b")],
                  TEMPLATES, nodes, {}, now=NOW)  # fmt: skip
    assert sorted(wanted.node_bgps) == ["sart-control-plane", "sart-worker", "sart-worker2"]
    worker = wanted.node_bgps["sart-worker"]
    assert worker.spec.asn == 65010 and str(worker.spec.router_id) == "172.18.0.2"
    assert worker.spec.speaker.path == "127.0.0.1:5000" and worker.spec.speaker.multipath
    assert worker.metadata.labels[CLUSTER_BGP_LABEL] == "clusterbgp-sample-a"
    assert worker.metadata.owner_references[0].uid == "uid-clusterbgp-sample-a"
    # named as the original names them; the template's settings carried over
    name = "bgppeertemplate-sample-sart-worker-65000-9.9.9.9"
    assert [p.name for p in worker.spec.peers or ()] == [name]
    peer = wanted.peers[name]
    assert peer.metadata.labels[PEER_NODE_LABEL] == "sart-worker"
    assert (peer.spec.asn, str(peer.spec.addr), peer.spec.hold_time) == (65000, "9.9.9.9", 9)
    assert peer.spec.node_bgp_ref == "sart-worker"
    assert peer.spec.cluster_bgp_ref == "clusterbgp-sample-a"
    assert peer.spec.groups == ("to-router0",)
    # sample b has no peers: its node gets a NodeBGP and no BGPPeer
    assert wanted.node_bgps["sart-control-plane"].spec.peers is None
    assert sorted(wanted.peers) == [name, "bgppeertemplate-sample-sart-worker2-65000-9.9.9.9"]
    assert wanted.statuses["clusterbgp-sample-a"].desired_nodes == ("sart-worker",
                                                                     "sart-worker2")  # fmt: skip
    assert wanted.statuses["clusterbgp-sample-a"].nodes == ()  # no agent has reported yet
    assert not wanted.problems


def test_a_node_without_the_label_it_needs_is_said_so() -> None:
    nodes = [node("bare", "a", asn=None), node("bad", "a", asn="seventy")]
    wanted = plan([cluster_bgp("clusterbgp-sample-a")], TEMPLATES, nodes, {}, now=NOW)
    assert wanted.node_bgps == {}
    reasons = {(p.node, p.reason): p.message for p in wanted.problems}
    assert reasons[("bare", "AsnLabelMissing")] == "node bare has no label sart.terassyi.net/asn"
    assert "'seventy' is not an AS number" in reasons[("bad", "AsnLabelInvalid")]


def test_router_id_from_a_label_or_a_fixed_value() -> None:
    by_label = cluster_bgp("clusterbgp-sample-a", routerIdSelector={"from": "label"})
    labelled = attrs.evolve(
        node("n1", "a"),
        labels={
            "bgp": "a",
            "sart.terassyi.net/asn": "65010",
            "sart.terassyi.net/router-id": "10.0.0.9",
        },
    )
    wanted = plan([by_label], TEMPLATES, [labelled, node("n2", "a")], {}, now=NOW)
    assert str(wanted.node_bgps["n1"].spec.router_id) == "10.0.0.9"
    assert [p.reason for p in wanted.problems] == ["RouterIdLabelMissing"]
    fixed = cluster_bgp("clusterbgp-sample-a", routerIdSelector={"from": "routerId",
                                                                 "routerId": "10.9.9.9"},
                        asnSelector={"from": "asn", "asn": 64512})  # fmt: skip
    wanted = plan([fixed], TEMPLATES, [node("n3", "a", asn=None)], {}, now=NOW)
    assert (wanted.node_bgps["n3"].spec.asn, str(wanted.node_bgps["n3"].spec.router_id)) == (
        64512, "10.9.9.9")  # fmt: skip


def test_inline_settings_override_the_template_and_ipv6_names_are_valid() -> None:
    peers = [{"peerTemplateRef": "bgppeertemplate-sample",
              "peerConfig": {"addr": "fd00::1", "holdTime": 30}},
             {"peerConfig": {"asn": 65100, "addr": "10.0.0.1"}, "nodeBGPSelector": {"rack": "1"}},
             {"peerTemplateRef": "missing"}]  # fmt: skip
    wanted = plan([cluster_bgp("clusterbgp-sample-a", peers=peers)], TEMPLATES,
                  [node("n1", "a")], {}, now=NOW)  # fmt: skip
    assert sorted(wanted.peers) == ["bgppeertemplate-sample-n1-65000-fd00--1"]
    peer = wanted.peers["bgppeertemplate-sample-n1-65000-fd00--1"]
    assert (str(peer.spec.addr), peer.spec.hold_time, peer.spec.groups) == (
        "fd00::1", 30, ("to-router0",))  # fmt: skip
    assert [p.message for p in wanted.problems] == ["peers[2]: no BGPPeerTemplate 'missing'"]


def test_session_options_come_from_the_template_and_the_inline_settings() -> None:
    template = structure(BGPPeerTemplate, {
        "apiVersion": "sart.terassyi.net/v1alpha2", "kind": "BGPPeerTemplate",
        "metadata": {"name": "secure"},
        "spec": {"asn": 65000, "addr": "9.9.9.9", "passive": True, "ttl": 2,
                 "authSecretRef": {"name": "router-md5"},
                 "maxPrefixes": {"limit": 100}}})  # fmt: skip
    peers = [{"peerTemplateRef": "secure", "peerConfig": {"ttl": 3}}]
    wanted = plan([cluster_bgp("clusterbgp-sample-a", peers=peers)], {"secure": template},
                  [node("n1", "a")], {}, now=NOW)  # fmt: skip
    spec = wanted.peers["secure-n1-65000-9.9.9.9"].spec
    assert (spec.passive, spec.ttl, spec.max_prefixes and spec.max_prefixes.limit) == (True, 3, 100)
    assert spec.auth_secret_ref is not None
    assert (spec.auth_secret_ref.name, spec.auth_secret_ref.key) == ("router-md5", "password")


def test_bfd_comes_from_the_template_or_the_inline_settings() -> None:
    template = structure(BGPPeerTemplate, {
        "apiVersion": "sart.terassyi.net/v1alpha2", "kind": "BGPPeerTemplate",
        "metadata": {"name": "fast"},
        "spec": {"asn": 65000, "addr": "9.9.9.9",
                 "bfd": {"minRxMs": 100, "minTxMs": 100}}})  # fmt: skip
    peers = [{"peerTemplateRef": "fast"},
             {"peerTemplateRef": "fast", "peerConfig": {"addr": "9.9.9.8",
                                                         "bfd": {"multiplier": 5}}}]  # fmt: skip
    wanted = plan([cluster_bgp("clusterbgp-sample-a", peers=peers)], {"fast": template},
                  [node("n1", "a")], {}, now=NOW)  # fmt: skip
    bfds = [wanted.peers[f"fast-n1-65000-9.9.9.{i}"].spec.bfd for i in (9, 8)]
    assert [(b.min_rx_ms, b.min_tx_ms, b.multiplier) if b else None for b in bfds] == [
        (100, 100, 3), (300, 300, 5)]  # fmt: skip


def conflicted(status: ClusterBGPStatus) -> Condition:
    [condition] = [c for c in status.conditions or () if c.type == "Conflicted"]
    return condition


def test_two_cluster_bgps_claiming_one_node_the_older_keeps_it_and_both_say_so() -> None:
    old = cluster_bgp("clusterbgp-sample-a", created="2026-01-01T00:00:00Z")
    new = cluster_bgp("clusterbgp-sample-b", created="2026-02-01T00:00:00Z",
                      nodeSelector={"bgp": "a"})  # fmt: skip
    for order in ([old, new], [new, old]):  # never a flip-flop
        wanted = plan(order, TEMPLATES, [node("n1", "a"), node("n0", "a")], {}, now=NOW)
        assert wanted.node_bgps["n1"].metadata.labels[CLUSTER_BGP_LABEL] == "clusterbgp-sample-a"
        assert [(p.cluster_bgp, p.node, p.reason) for p in wanted.problems] == [
            ("clusterbgp-sample-b", "n0", "NodeClaimed"),
            ("clusterbgp-sample-b", "n1", "NodeClaimed")]  # fmt: skip
        assert wanted.statuses["clusterbgp-sample-b"].desired_nodes == ()
        assert wanted.statuses["clusterbgp-sample-a"].desired_nodes == ("n0", "n1")
        lost = conflicted(wanted.statuses["clusterbgp-sample-b"])
        assert (lost.status, lost.reason, lost.last_transition_time) == (
            ConditionStatus.TRUE, "NodeClaimed", NOW)  # fmt: skip
        assert lost.message == (
            "configured by an older ClusterBGP, not this one: node n0 (clusterbgp-sample-a),"
            " node n1 (clusterbgp-sample-a)")  # fmt: skip
        kept = conflicted(wanted.statuses["clusterbgp-sample-a"])
        assert (kept.status, kept.reason) == (ConditionStatus.TRUE, "NodeAlsoSelected")
        assert kept.message == (
            "configured by this one, selected by a younger ClusterBGP too: node n0"
            " (clusterbgp-sample-b), node n1 (clusterbgp-sample-b)")  # fmt: skip


def test_the_same_creation_time_the_name_decides() -> None:
    first = cluster_bgp("clusterbgp-sample-a")
    second = cluster_bgp("clusterbgp-sample-b", nodeSelector={"bgp": "a"})
    wanted = plan([second, first], TEMPLATES, [node("n1", "a")], {}, now=NOW)
    assert wanted.node_bgps["n1"].metadata.labels[CLUSTER_BGP_LABEL] == "clusterbgp-sample-a"
    assert conflicted(wanted.statuses["clusterbgp-sample-b"]).reason == "NodeClaimed"


def test_the_conflicted_condition_follows_the_overlap_and_keeps_its_transition_time() -> None:
    old = cluster_bgp("clusterbgp-sample-a", created="2026-01-01T00:00:00Z")
    new = cluster_bgp("clusterbgp-sample-b", created="2026-02-01T00:00:00Z",
                      nodeSelector={"bgp": "a"})  # fmt: skip
    alone = plan([old], TEMPLATES, [node("n1", "a")], {}, now=NOW)
    clear = conflicted(alone.statuses["clusterbgp-sample-a"])
    assert (clear.status, clear.reason) == (ConditionStatus.FALSE, "NoConflict")
    assert clear.observed_generation == 3
    # Each pass sees the status the one before wrote.
    old = attrs.evolve(old, status=alone.statuses["clusterbgp-sample-a"])
    later = "2026-03-01T00:00:00Z"
    again = plan([old], TEMPLATES, [node("n1", "a")], {}, now=later)
    assert again.statuses["clusterbgp-sample-a"] == alone.statuses["clusterbgp-sample-a"]
    both = plan([old, new], TEMPLATES, [node("n1", "a")], {}, now=later)
    assert conflicted(both.statuses["clusterbgp-sample-a"]).last_transition_time == later
    old = attrs.evolve(old, status=both.statuses["clusterbgp-sample-a"])
    # More nodes in the overlap: the message changes, the transition time stays.
    many = [node(f"n{i:02}", "a") for i in range(12)]
    grown = plan([old, new], TEMPLATES, many, {}, now="2026-04-01T00:00:00Z")
    condition = conflicted(grown.statuses["clusterbgp-sample-a"])
    assert condition.last_transition_time == later
    assert condition.message.endswith("node n09 (clusterbgp-sample-b) and 2 more")
    # The younger one gone (or being deleted): cleared, a new transition.
    leaving = attrs.evolve(
        new, metadata=attrs.evolve(new.metadata, deletion_timestamp="2026-05-01T00:00:00Z")
    )
    gone = plan([old, leaving], TEMPLATES, many, {}, now="2026-05-01T00:00:01Z")
    cleared = conflicted(gone.statuses["clusterbgp-sample-a"])
    assert (cleared.status, cleared.reason) == (ConditionStatus.FALSE, "NoConflict")
    assert cleared.last_transition_time == "2026-05-01T00:00:01Z"
    assert "clusterbgp-sample-b" not in gone.statuses


def test_changes_touch_only_what_a_cluster_bgp_made() -> None:
    ours = cluster_bgp("clusterbgp-sample-a")
    first = plan([ours], TEMPLATES, [node("n1", "a"), node("n2", "a")], {}, now=NOW)
    todo = changes(first, {}, {})
    assert [o.metadata.name for o in todo.create] == [
        "n1", "n2", "bgppeertemplate-sample-n1-65000-9.9.9.9",
        "bgppeertemplate-sample-n2-65000-9.9.9.9"]  # fmt: skip
    assert not changes(first, first.node_bgps, first.peers)  # applied: nothing left to do
    # n2 relabelled away, a hand-written NodeBGP beside: n2's objects go, the other stays
    hand = structure(NodeBGP, sample("NodeBGP", "sart-worker"))
    seen = {**first.node_bgps, "sart-worker": hand}
    second = plan([ours], TEMPLATES, [node("n1", "a")], seen, now=NOW)
    todo = changes(second, seen, first.peers)
    assert todo.delete_node_bgps == ("n2",)
    assert todo.delete_peers == ("bgppeertemplate-sample-n2-65000-9.9.9.9",)
    assert not todo.create and not todo.update


def test_a_hand_written_node_bgp_is_left_alone_and_ready_nodes_are_counted() -> None:
    hand = structure(NodeBGP, sample("NodeBGP", "sart-worker"))
    wanted = plan([cluster_bgp("clusterbgp-sample-a")], TEMPLATES,
                  [node("sart-worker", "a"), node("n2", "a")], {"sart-worker": hand},
                  now=NOW)  # fmt: skip
    assert "sart-worker" not in wanted.node_bgps
    assert [p.reason for p in wanted.problems] == ["NodeBGPNotManaged"]
    available = NodeBGPStatus(
        conditions=(
            NodeBGPCondition(
                status=NodeBGPConditionStatus.AVAILABLE, reason=NodeBGPConditionReason.CONFIGURED
            ),
        )
    )
    ready = attrs.evolve(wanted.node_bgps["n2"], status=available)
    wanted = plan(
        [cluster_bgp("clusterbgp-sample-a")],
        TEMPLATES,
        [node("sart-worker", "a"), node("n2", "a")],
        {"sart-worker": hand, "n2": ready},
        now=NOW,
    )
    assert wanted.statuses["clusterbgp-sample-a"].nodes == ("n2",)
