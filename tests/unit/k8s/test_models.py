"""The CRD models and their converter: the original sart's manifests load unchanged, every kind
round-trips, and a bad object is refused with messages that name the field."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from netaddr import IPAddress, IPNetwork

from sart.errors import ConfigError
from sart.k8s import models
from sart.k8s.convert import (
    InvalidObject,
    make_converter,
    parse_cidr,
    structure,
    structure_object,
    unstructure,
)
from sart.k8s.models import (
    AddressBlock,
    AddressBlockSpec,
    AddressBlockStatus,
    AddressPool,
    AddressPoolSpec,
    AddressPoolStatus,
    AddressType,
    AdvertiseStatus,
    AllocationType,
    AsnSelectionType,
    AsnSelector,
    BGPAdvertisement,
    BGPAdvertisementSpec,
    BGPAdvertisementStatus,
    BGPPeer,
    BGPPeerCondition,
    BGPPeerConditionStatus,
    BGPPeerSlim,
    BGPPeerSpec,
    BGPPeerStatus,
    BGPPeerTemplate,
    BGPPeerTemplateSpec,
    BGPPeerTemplateStatus,
    BlockRequest,
    BlockRequestSpec,
    BlockRequestStatus,
    ClusterBGP,
    ClusterBGPSpec,
    ClusterBGPStatus,
    InvalidField,
    NodeBGP,
    NodeBGPCondition,
    NodeBGPConditionReason,
    NodeBGPConditionStatus,
    NodeBGPSpec,
    NodeBGPStatus,
    ObjectMeta,
    OwnerReference,
    PeerConfig,
    Protocol,
    RouterIdSelectionType,
    RouterIdSelector,
    SpeakerConfig,
)
from sart_samples import original_samples, without_nulls


def _samples() -> list[dict[str, Any]]:
    return original_samples()


def _contains(big: Any, small: Any) -> bool:
    """Every key of ``small`` is in ``big`` with the same value (recursively)."""
    if isinstance(small, dict):
        return isinstance(big, dict) and all(
            k in big and _contains(big[k], v) for k, v in small.items()
        )
    if isinstance(small, list):
        return isinstance(big, list) and len(big) == len(small) and all(map(_contains, big, small))
    return bool(big == small)


@pytest.mark.parametrize("sample", _samples(), ids=lambda s: f"{s['kind']}-{s['metadata']['name']}")
def test_original_samples_load_and_write_back_the_same(sample: dict[str, Any]) -> None:
    value = structure_object(sample)
    assert type(value).DEFINITION.kind == sample["kind"]
    written = unstructure(value)
    # Same content; the nulls the original wrote are left out, defaults are written.
    assert _contains(written, without_nulls(sample))
    assert structure_object(written) == value


def test_a_sample_reads_as_the_values_it_says() -> None:
    pool, *_ = _samples()
    assert structure(AddressPool, pool) == AddressPool(
        metadata=ObjectMeta(name="default-lb-pool"),
        spec=AddressPoolSpec(
            cidr=IPNetwork("10.0.1.0/24"),
            type=AddressType.SERVICE,
            alloc_type=AllocationType.BIT,
            auto_assign=True,
        ),
    )
    node = structure_object(_samples()[7])
    assert node.spec.router_id == IPAddress("172.18.0.2")
    assert node.spec.peers[0].spec.node_bgp_ref == ""  # what the original writes into NodeBGPs
    peer = structure_object(_samples()[8])
    assert peer.spec.node_bgp_ref == "sart-control-plane" and peer.spec.groups == ("to-spine0",)


FULL: list[Any] = [
    AddressPool(
        metadata=ObjectMeta(
            name="pods",
            labels={"a": "b"},
            annotations={"note": "x"},
            finalizers=(models.ADDRESS_POOL_FINALIZER,),
            uid="0b3c",
            resource_version="42",
            generation=3,
            creation_timestamp="2026-01-02T03:04:05Z",
        ),
        spec=AddressPoolSpec(
            cidr=IPNetwork("fd00:10::/64"), type=AddressType.POD, block_size=120, auto_assign=True
        ),
        status=AddressPoolStatus(
            requested=("req-1",),
            allocated={"pods-node1": 0, "pods-node2": 1},
            released=(),
            allocated_addresses=512,
            free_addresses=2**63 - 1,
        ),
    ),
    AddressBlock(
        metadata=ObjectMeta(
            name="pods-node1",
            owner_references=(
                OwnerReference(
                    api_version=models.API_VERSION,
                    kind="AddressPool",
                    name="pods",
                    uid="0b3c",
                    controller=True,
                    block_owner_deletion=True,
                ),
            ),
        ),
        spec=AddressBlockSpec(
            cidr=IPNetwork("10.1.0.0/29"),
            type=AddressType.POD,
            pool_ref="pods",
            node_ref="node1",
            auto_assign=False,
        ),
        status=AddressBlockStatus(index=0),
    ),
    BlockRequest(
        metadata=ObjectMeta(name="pods-node1"),
        spec=BlockRequestSpec(pool="pods", node="node1"),
        status=BlockRequestStatus(),
    ),
    ClusterBGP(
        metadata=ObjectMeta(name="all"),
        spec=ClusterBGPSpec(
            node_selector={"bgp": "a"},
            asn_selector=AsnSelector(from_=AsnSelectionType.ASN, asn=65000),
            router_id_selector=RouterIdSelector(
                from_=RouterIdSelectionType.ROUTER_ID, router_id=IPAddress("10.255.0.1")
            ),
            speaker=SpeakerConfig(path="127.0.0.1:5000", timeout=10, multipath=False),
            peers=(
                PeerConfig(
                    peer_template_ref="tor",
                    peer_config=BGPPeerTemplateSpec(
                        asn=65001,
                        addr=IPAddress("fd00::1"),
                        capabilities=("ipv4-unicast",),
                        hold_time=0,
                        keepalive_time=0,
                        groups=(),
                    ),
                    node_bgp_selector={"rack": "1"},
                ),
            ),
        ),
        status=ClusterBGPStatus(desired_nodes=("node1", "node2"), nodes=("node1",)),
    ),
    NodeBGP(
        metadata=ObjectMeta(name="node1"),
        spec=NodeBGPSpec(
            asn=4_200_000_000,
            router_id=IPAddress("10.0.0.1"),
            speaker=SpeakerConfig(path="127.0.0.1:5000"),
            peers=(
                BGPPeerSlim(
                    name="tor-node1",
                    spec=BGPPeerSpec(
                        asn=65001,
                        addr=IPAddress("10.0.0.254"),
                        node_bgp_ref="node1",
                        speaker=SpeakerConfig(path="127.0.0.1:5000"),
                    ),
                ),
            ),
        ),
        status=NodeBGPStatus(
            conditions=(
                NodeBGPCondition(
                    status=NodeBGPConditionStatus.AVAILABLE,
                    reason=NodeBGPConditionReason.CONFIGURED,
                ),
            )
        ),
    ),
    BGPPeer(
        metadata=ObjectMeta(name="tor-node1", labels={models.BGP_PEER_NODE_LABEL: "node1"}),
        spec=BGPPeerSpec(
            asn=65001,
            addr=IPAddress("10.0.0.254"),
            hold_time=90,
            keepalive_time=30,
            capabilities=("route-refresh",),
            node_bgp_ref="node1",
            cluster_bgp_ref="all",
            speaker=SpeakerConfig(path="127.0.0.1:5000"),
            groups=("tor",),
        ),
        status=BGPPeerStatus(
            backoff=2,
            conditions=(BGPPeerCondition(status=BGPPeerConditionStatus.ESTABLISHED, reason="up"),),
        ),
    ),
    BGPPeerTemplate(
        metadata=ObjectMeta(name="tor"),
        spec=BGPPeerTemplateSpec(),
        status=BGPPeerTemplateStatus(),
    ),
    BGPAdvertisement(
        metadata=ObjectMeta(name="web-10.0.1.1", namespace="default"),
        spec=BGPAdvertisementSpec(
            cidr=IPNetwork("2001:db8::1/128"),
            type=AddressType.SERVICE,
            protocol=Protocol.IPV6,
            attributes=("community=65000:1",),
            nodes=("node1",),
        ),
        status=BGPAdvertisementStatus(peers={"tor-node1": AdvertiseStatus.ADVERTISED}),
    ),
]


def test_every_kind_has_a_full_example() -> None:
    assert {type(value) for value in FULL} == set(models.KINDS)


@pytest.mark.parametrize("value", FULL, ids=lambda v: type(v).__name__)
def test_every_kind_round_trips(value: Any) -> None:
    written = unstructure(value)
    assert written["apiVersion"] == "sart.terassyi.net/v1alpha2"
    assert written["kind"] == type(value).DEFINITION.kind
    assert structure(type(value), written) == value
    assert structure_object(written) == value
    # A fresh converter gives the same answer (no state shared through the cached one).
    assert structure(type(value), written, converter=make_converter()) == value


def test_writing_leaves_out_nothing_and_names_fields_as_kubernetes_does() -> None:
    peer = FULL[5]
    written = unstructure(peer)
    assert written["spec"]["nodeBGPRef"] == "node1"
    assert written["spec"]["clusterBGPRef"] == "all"
    assert written["spec"]["holdTime"] == 90
    assert written["metadata"] == {
        "name": "tor-node1",
        "labels": {models.BGP_PEER_NODE_LABEL: "node1"},
    }
    template = unstructure(FULL[6])
    assert template["spec"] == {} and template["status"] == {}
    advertisement = unstructure(FULL[7])["spec"]
    assert advertisement["attrs"] == ["community=65000:1"]
    selector = unstructure(FULL[3])["spec"]["asnSelector"]
    assert selector == {"from": "asn", "asn": 65000}
    pool = unstructure(AddressPoolSpec(cidr=IPNetwork("10.0.0.0/24"), type=AddressType.SERVICE))
    assert pool == {
        "cidr": "10.0.0.0/24",
        "type": "service",
        "allocType": "bit",
        "autoAssign": False,
    }


def test_reading_what_the_apiserver_returns() -> None:
    obj = {
        "apiVersion": "sart.terassyi.net/v1alpha2",
        "kind": "AddressPool",
        "metadata": {
            "name": "p",
            "uid": "u",
            "resourceVersion": "7",
            "generation": 1,
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "managedFields": [{"manager": "kubectl", "operation": "Apply"}],
            "deletionGracePeriodSeconds": 0,
        },
        "spec": {"cidr": "10.0.0.0/24", "type": "service", "autoAssign": None, "blockSize": None},
        "status": None,
    }
    pool = structure(AddressPool, obj)
    assert pool.metadata.resource_version == "7" and pool.status is None
    assert pool.spec.auto_assign is False and pool.spec.block_size is None


def _pool(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p"}, "spec": {"cidr": "10.0.1.0/24", "type": "pod", **spec}}


def _peer(status: Any = None, **spec: Any) -> dict[str, Any]:
    base = {"asn": 65000, "addr": "9.9.9.9", "nodeBGPRef": "n", "speaker": {"path": "x"}}
    return {"metadata": {"name": "p"}, "spec": {**base, **spec}, "status": status}


def _cluster(**spec: Any) -> dict[str, Any]:
    base = {"asnSelector": {"from": "label"}, "routerIdSelector": {"from": "label"}}
    return {"metadata": {"name": "c"}, "spec": {**base, "speaker": {"path": "x"}, **spec}}


def _node(**spec: Any) -> dict[str, Any]:
    base = {"asn": 65000, "routerId": "10.0.0.1", "speaker": {"path": "x"}}
    return {"metadata": {"name": "n"}, "spec": {**base, **spec}}


SLIM = {
    "name": "a",
    "spec": {"asn": 1, "addr": "1.1.1.2", "nodeBGPRef": "", "speaker": {"path": 1}},
}
ADVERTISEMENT_V6_OF_V4 = {
    "metadata": {"name": "a"},
    "spec": {"cidr": "10.0.0.1/32", "type": "service", "protocol": "ipv6"},
}
V1ALPHA1 = {"apiVersion": "sart.terassyi.net/v1alpha1", "metadata": {"name": "p"}, "spec": {}}

BAD: list[tuple[type, dict[str, Any], str]] = [
    (AddressPool, _pool(cidr="10.0.1.300/24"), "spec.cidr: '10.0.1.300/24' is not a CIDR"),
    (AddressPool, _pool(cidr="10.0.1.0"), "spec.cidr: '10.0.1.0' is not a CIDR"),
    (AddressPool, _pool(cidr="10.0.1.5/24"), "spec.cidr: '10.0.1.5/24' has host bits set"),
    (
        AddressPool,
        _pool(cidr="::ffff:10.0.0.0/104"),
        "spec.cidr: '::ffff:10.0.0.0/104' is an IPv4-mapped",
    ),
    (AddressPool, _pool(cidr=None), "spec.cidr: expected a CIDR string, got null"),
    (AddressPool, _pool(type="lb"), "spec.type: must be one of service, pod; got str 'lb'"),
    (AddressPool, _pool(blockSize=200), "spec.blockSize: must be between 0 and 128, got 200"),
    (AddressPool, _pool(blockSize=20), "spec.blockSize: blockSize must be between the prefix"),
    (AddressPool, _pool(blockSize=33), "spec.blockSize: blockSize must be between the prefix"),
    (AddressPool, _pool(type="service", blockSize=28), "spec.blockSize: blockSize of a service"),
    (AddressPool, _pool(blockSize="28"), "spec.blockSize: expected an integer, got str '28'"),
    (AddressPool, _pool(autoAssign="true"), "spec.autoAssign: expected true or false"),
    (AddressPool, _pool(autoassign=True), "spec: unknown field(s): autoassign"),
    (
        AddressPool,
        {"metadata": {"name": "p"}, "spec": {"type": "pod"}},
        "spec.cidr: required field missing",
    ),
    (AddressPool, {**_pool(), "metadata": {}}, "metadata.name: required field missing"),
    (
        AddressPool,
        V1ALPHA1,
        "(object): expected apiVersion sart.terassyi.net/v1alpha2 kind AddressPool",
    ),
    (AddressPool, {**_pool(), "kind": "BGPPeer"}, "(object): expected apiVersion"),
    (AddressPoolStatus, {"allocatedAddresses": -1}, "allocatedAddresses: must be >= 0, got -1"),
    (BGPPeer, _peer(asn=0), "spec.asn: must be between 1 and 4294967295, got 0"),
    (BGPPeer, _peer(asn=2**32), "spec.asn: must be between 1 and 4294967295, got 4294967296"),
    (BGPPeer, _peer(addr="9.9.9"), "spec.addr: '9.9.9' is not an IP address"),
    (BGPPeer, _peer(nodeBGPRef=None), "spec.nodeBGPRef: expected a string, got null"),
    (
        BGPPeer,
        {**_peer(), "spec": {"asn": 1, "addr": "1.1.1.1"}},
        "spec.nodeBGPRef: required field missing",
    ),
    (BGPPeer, _peer(holdTime=2), "spec.holdTime: must be 0 (no keepalives) or at least 3"),
    (BGPPeer, _peer(groups="tor"), "spec.groups: expected a list, got str 'tor'"),
    (
        BGPPeer,
        _peer({"conditions": [{"status": "Up", "reason": ""}]}),
        "status.conditions[0].status: must be one of Unknown, Idle",
    ),
    (NodeBGP, _node(routerId="fd00::1"), "spec.routerId: must be an IPv4 address"),
    (NodeBGP, _node(peers=[SLIM]), "spec.peers[0].spec.speaker.path: expected a string, got int 1"),
    (
        ClusterBGP,
        _cluster(asnSelector={"from": "asn"}),
        "spec.asnSelector.asn: asn is required when from is asn",
    ),
    (
        ClusterBGP,
        _cluster(routerIdSelector={"from": "routerId"}),
        "spec.routerIdSelector.routerId: routerId is required",
    ),
    (ClusterBGP, _cluster(nodeSelector=["a"]), "spec.nodeSelector: expected an object, got a list"),
    (
        ClusterBGP,
        _cluster(nodeSelector={"a": 1}),
        "spec.nodeSelector[a]: expected a string, got int 1",
    ),
    (
        BGPAdvertisement,
        ADVERTISEMENT_V6_OF_V4,
        "spec.protocol: protocol must be the address family",
    ),
]


@pytest.mark.parametrize(("cls", "obj", "message"), BAD, ids=[m for _, _, m in BAD])
def test_bad_objects_are_refused_naming_the_field(
    cls: type, obj: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidObject) as raised:
        structure(cls, obj)
    assert any(m.startswith(message) for m in raised.value.messages), raised.value.messages
    assert isinstance(raised.value, ConfigError)


def test_every_problem_is_reported_at_once() -> None:
    obj = {
        "metadata": {"name": "p"},
        "spec": {"cidr": "10.0.1.0/33", "type": "lb", "autoAssign": 1, "extra": True},
    }
    with pytest.raises(InvalidObject) as raised:
        structure(AddressPool, obj)
    assert str(raised.value).startswith("invalid AddressPool p: ")
    assert raised.value.messages == (
        "spec.cidr: '10.0.1.0/33' is not a CIDR",
        "spec.type: must be one of service, pod; got str 'lb'",
        "spec.autoAssign: expected true or false, got int 1",
        "spec: unknown field(s): extra",
    )


def test_structure_object_refuses_what_is_not_ours() -> None:
    with pytest.raises(InvalidObject, match="apiVersion"):
        structure_object({"apiVersion": "v1", "kind": "Service"})
    with pytest.raises(InvalidObject, match="unknown kind 'IPAddressPool'"):
        structure_object({"apiVersion": models.API_VERSION, "kind": "IPAddressPool"})


def test_validators_hold_for_values_built_in_python() -> None:
    with pytest.raises(InvalidField, match="must be between 1 and 4294967295, got 0") as raised:
        BGPPeerSpec(
            asn=0, addr=IPAddress("1.1.1.1"), node_bgp_ref="n", speaker=SpeakerConfig(path="x")
        )
    assert raised.value.field == "asn"
    with pytest.raises(InvalidField, match="blockSize of a service pool"):
        AddressPoolSpec(cidr=IPNetwork("10.0.0.0/24"), type=AddressType.SERVICE, block_size=32)
    spec = AddressPoolSpec(cidr=IPNetwork("10.0.0.0/24"), type=AddressType.POD, block_size=26)
    with pytest.raises(InvalidField, match="between the prefix length"):
        attrs.evolve(spec, block_size=8)
    with pytest.raises(InvalidField, match="IPv4"):
        RouterIdSelector(from_=RouterIdSelectionType.ROUTER_ID, router_id=IPAddress("fd00::1"))
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        spec.block_size = 27  # type: ignore[misc]


def test_parse_cidr_is_strict() -> None:
    assert parse_cidr("fd00::/64") == IPNetwork("fd00::/64")
    for text in ("10.0.0.0", "10.0/16", "10.0.0.0/8 ", "10.0.0.1/8", "fd00::1/64", "10.0.0.0/08"):
        with pytest.raises(ValueError, match=r"CIDR|host bits"):
            parse_cidr(text)


def test_constants_match_the_original() -> None:
    assert (models.GROUP, models.VERSION) == ("sart.terassyi.net", "v1alpha2")
    assert models.ADDRESS_POOL_ANNOTATION == "sart.terassyi.net/addresspool"
    assert models.ADDRESS_POOL_ANNOTATIONS == (
        "sart.terassyi.net/addresspool",
        "sart.terassyi.net/address-pool",
    )
    assert models.LOAD_BALANCER_IPS_ANNOTATION == "sart.terassyi.net/loadBalancerIPs"
    assert models.ALLOW_SHARED_IP_ANNOTATION == "sart.terassyi.net/allow-shared-ip"
    assert models.ADDRESS_POOL_FINALIZER == "addresspool.sart.terassyi.net/finalizer"
    assert models.kind_class("BGPPeer") is BGPPeer
    with pytest.raises(KeyError):
        models.kind_class("Service")
