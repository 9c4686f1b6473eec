"""The generated CRDs in a real kube-apiserver: they install (idempotently), the original sart's
manifests are accepted, the models round-trip through the apiserver, invalid objects are refused
with a message naming the field (the same objects the converter refuses), immutable fields stay
put, and `kubectl get` shows the columns documented."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from netaddr import IPAddress, IPNetwork

from sart.k8s import models
from sart.k8s.convert import InvalidObject, structure, structure_object, unstructure
from sart.k8s.crd import crds
from sart.testing.controlplane import ControlPlane, unique_name, wait_until
from sart_samples import one_per_kind, without_nulls

pytestmark = pytest.mark.k8s

APPLY_PATCH = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"
FIELD_MANAGER = "sart-tests"

_INSTALLED: set[str] = set()
"""Control planes (by kubeconfig) the CRDs were applied to: the plane lives for the session."""


async def apply_crds(api: Any) -> list[Any]:
    """Server-side apply of every CRD (idempotent), then wait until each is Established."""
    extensions = client.ApiextensionsV1Api(api)
    for document in crds():
        await extensions.patch_custom_resource_definition(
            document["metadata"]["name"],
            document,
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type=APPLY_PATCH,
        )
    served = []
    for document in crds():
        name = document["metadata"]["name"]

        async def established(name: str = name) -> Any:
            found = await extensions.read_custom_resource_definition(name)
            conditions = {c.type: c.status for c in (found.status.conditions or ())}
            return found if conditions.get("Established") == "True" else None

        served.append(await wait_until(established, what=f"{name} Established"))
    return served


@pytest_asyncio.fixture
async def sart_api(k8s: Any, control_plane: ControlPlane) -> Any:
    """The API client, with sart's CRDs installed in the session's control plane."""
    if str(control_plane.kubeconfig) not in _INSTALLED:
        await apply_crds(k8s)
        _INSTALLED.add(str(control_plane.kubeconfig))
    return k8s


class Objects:
    """Creates sart objects under unique names and deletes them all at the end (the control
    plane is shared by the whole session)."""

    def __init__(self, api: Any, namespace: str) -> None:
        self.api = client.CustomObjectsApi(api)
        self.namespace = namespace
        self.created: list[tuple[str, str | None, str]] = []

    def _where(self, kind: str) -> tuple[str, str | None]:
        definition = models.kind_class(kind).DEFINITION
        return definition.plural, self.namespace if definition.namespaced else None

    def named(self, body: dict[str, Any]) -> dict[str, Any]:
        """``body`` with a unique name made from its own."""
        metadata = {**body["metadata"], "name": unique_name(body["metadata"]["name"])}
        if models.kind_class(body["kind"]).DEFINITION.namespaced:
            metadata["namespace"] = self.namespace
        return {**body, "metadata": metadata}

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        plural, namespace = self._where(body["kind"])
        group, version = models.GROUP, models.VERSION
        if namespace is None:
            made = await self.api.create_cluster_custom_object(group, version, plural, body)
        else:
            made = await self.api.create_namespaced_custom_object(
                group, version, namespace, plural, body
            )
        self.created.append((plural, namespace, made["metadata"]["name"]))
        return dict(made)

    async def patch(
        self, kind: str, name: str, body: dict[str, Any], *, status: bool = False
    ) -> dict[str, Any]:
        plural, namespace = self._where(kind)
        args = (models.GROUP, models.VERSION)
        if namespace is None:
            call = (
                self.api.patch_cluster_custom_object_status
                if status
                else self.api.patch_cluster_custom_object
            )
            made = await call(*args, plural, name, body, _content_type=MERGE_PATCH)
        else:
            call = (
                self.api.patch_namespaced_custom_object_status
                if status
                else self.api.patch_namespaced_custom_object
            )
            made = await call(*args, namespace, plural, name, body, _content_type=MERGE_PATCH)
        return dict(made)

    async def table(self, kind: str, name: str) -> dict[str, Any]:
        """What ``kubectl get <kind> <name>`` prints, as the apiserver's Table."""
        plural, namespace = self._where(kind)
        where = f"namespaces/{namespace}/" if namespace else ""
        found = await self.api.api_client.call_api(
            f"/apis/{models.GROUP}/{models.VERSION}/{where}{plural}/{name}",
            "GET",
            header_params={"Accept": TABLE},
            response_types_map={200: "object"},
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
        )
        return dict(found)

    async def delete_all(self) -> None:
        for plural, namespace, name in reversed(self.created):
            try:
                if namespace is None:
                    await self.api.delete_cluster_custom_object(
                        models.GROUP, models.VERSION, plural, name
                    )
                else:
                    await self.api.delete_namespaced_custom_object(
                        models.GROUP, models.VERSION, namespace, plural, name
                    )
            except ApiException as error:
                if error.status != 404:
                    raise


@pytest_asyncio.fixture
async def objects(sart_api: Any, namespace: str) -> AsyncIterator[Objects]:
    made = Objects(sart_api, namespace)
    try:
        yield made
    finally:
        await made.delete_all()


def _message(error: ApiException) -> str:
    return str(json.loads(error.body)["message"])


@pytest.mark.asyncio
async def test_crds_apply_idempotently_and_are_established(
    k8s: Any, control_plane: ControlPlane
) -> None:
    first = await apply_crds(k8s)
    _INSTALLED.add(str(control_plane.kubeconfig))
    again = await apply_crds(k8s)
    assert [c.metadata.generation for c in again] == [c.metadata.generation for c in first]
    for served, document in zip(again, crds(), strict=True):
        version = served.spec.versions[0]
        assert served.spec.scope == document["spec"]["scope"]
        assert version.name == "v1alpha2" and version.subresources.status == {}
        columns = [(c.name, c.json_path) for c in version.additional_printer_columns]
        expected = document["spec"]["versions"][0]["additionalPrinterColumns"]
        assert columns == [(c["name"], c["jsonPath"]) for c in expected]


@pytest.mark.asyncio
async def test_the_original_manifests_are_accepted_and_read_back(objects: Objects) -> None:
    samples = one_per_kind()
    assert {s["kind"] for s in samples} == {k.DEFINITION.kind for k in models.KINDS}
    for sample in samples:
        made = await objects.create(objects.named(sample))
        assert without_nulls(made["spec"]) == {
            **without_nulls(made["spec"]),
            **without_nulls(sample["spec"]),
        }, sample["kind"]
        value = structure_object(made)
        assert value == structure_object({**sample, "metadata": made["metadata"]})


@pytest.mark.asyncio
async def test_defaults_are_filled_in(objects: Objects) -> None:
    pool = objects.named(
        {
            "apiVersion": models.API_VERSION,
            "kind": "AddressPool",
            "metadata": {"name": "bare"},
            "spec": {"cidr": "10.2.0.0/16", "type": "pod"},
        }
    )
    made = await objects.create(pool)
    assert made["spec"] == {
        "cidr": "10.2.0.0/16",
        "type": "pod",
        "allocType": "bit",
        "autoAssign": False,
    }


@pytest.mark.asyncio
async def test_models_round_trip_through_the_apiserver(objects: Objects, namespace: str) -> None:
    peer = models.BGPPeer(
        metadata=models.ObjectMeta(name=unique_name("tor"), labels={"rack": "1"}),
        spec=models.BGPPeerSpec(
            asn=4_200_000_001,
            addr=IPAddress("fd00::1"),
            hold_time=0,
            keepalive_time=0,
            capabilities=("route-refresh",),
            node_bgp_ref="node1",
            cluster_bgp_ref="all",
            speaker=models.SpeakerConfig(path="127.0.0.1:5000", timeout=3, multipath=True),
            groups=("tor",),
        ),
    )
    advertisement = models.BGPAdvertisement(
        metadata=models.ObjectMeta(name=unique_name("web"), namespace=namespace),
        spec=models.BGPAdvertisementSpec(
            cidr=IPNetwork("2001:db8::/64"),
            type=models.AddressType.POD,
            protocol=models.Protocol.IPV6,
            nodes=("node1", "node2"),
        ),
    )
    for value, status in (
        (
            peer,
            models.BGPPeerStatus(
                backoff=1,
                conditions=(
                    models.BGPPeerCondition(
                        status=models.BGPPeerConditionStatus.OPEN_CONFIRM, reason="opened"
                    ),
                ),
            ),
        ),
        (
            advertisement,
            models.BGPAdvertisementStatus(peers={"tor": models.AdvertiseStatus.ADVERTISED}),
        ),
    ):
        kind = type(value)
        made = structure(kind, await objects.create(unstructure(value)))
        assert made.spec == value.spec and made.status is None
        assert made.metadata.labels == value.metadata.labels and made.metadata.uid
        patched = await objects.patch(
            kind.DEFINITION.kind,
            value.metadata.name,
            {"status": unstructure(status)},
            status=True,
        )
        assert structure(kind, patched).status == status


async def _rejected(call: Any) -> str:
    with pytest.raises(ApiException) as raised:
        await call
    assert raised.value.status == 422, raised.value.body
    return _message(raised.value)


def _pool(**spec: Any) -> dict[str, Any]:
    base = {"cidr": "10.3.0.0/24", "type": "pod"}
    return {
        "apiVersion": models.API_VERSION,
        "kind": "AddressPool",
        "metadata": {"name": "bad-pool"},
        "spec": {**base, **spec},
    }


def _peer(**spec: Any) -> dict[str, Any]:
    base = {"asn": 65000, "addr": "9.9.9.9", "nodeBGPRef": "n1", "speaker": {"path": "x"}}
    return {
        "apiVersion": models.API_VERSION,
        "kind": "BGPPeer",
        "metadata": {"name": "bad-peer"},
        "spec": {**base, **spec},
    }


def _other(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": models.API_VERSION,
        "kind": kind,
        "metadata": {"name": f"bad-{kind.lower()}"},
        "spec": spec,
    }


SPEAKER = {"path": "127.0.0.1:5000"}
INVALID = [
    (_pool(cidr="10.3.0.300/24"), "spec.cidr", "must be a CIDR"),
    (_pool(cidr="nonsense"), "spec.cidr", "must be a CIDR"),
    (_pool(cidr="10.3.0.5/24"), "spec.cidr", "must be a network address"),
    (_pool(type="lb"), "spec.type", 'supported values: "service", "pod"'),
    (_pool(blockSize=200), "spec.blockSize", "less than or equal to 128"),
    (_pool(blockSize=16), "spec.blockSize", "blockSize must be between the prefix length"),
    (_pool(blockSize=40), "spec.blockSize", "blockSize must be between the prefix length"),
    (_pool(type="service", blockSize=28), "spec.blockSize", "service pool must equal"),
    (_pool(autoAssign="yes"), "spec.autoAssign", "must be of type boolean"),
    (
        _pool(type="service", bgpAttributes={"communities": ["65000:100", "65536:1"]}),
        "spec.bgpAttributes.communities",
        "not a community: 65536:1",
    ),
    (
        _pool(type="service", bgpAttributes={"largeCommunities": ["65000:1"]}),
        "spec.bgpAttributes.largeCommunities",
        "not a large community: 65000:1",
    ),
    (
        _pool(type="service", bgpAttributes={"med": 2**32}),
        "spec.bgpAttributes.med",
        "less than or equal to 4294967295",
    ),
    (
        _pool(type="service", aggregationLength=20),
        "spec.aggregationLength",
        "aggregationLength must be between the prefix length",
    ),
    (_pool(aggregationLength=28), "spec.aggregationLength", "for service pools only"),
    (_peer(asn=0), "spec.asn", "greater than or equal to 1"),
    (_peer(asn=2**32), "spec.asn", "less than or equal to 4294967295"),
    (_peer(addr="9.9.9"), "spec.addr", "must be an IPv4 or IPv6 address"),
    (_peer(holdTime=2), "spec.holdTime", "at least 3 seconds"),
    (
        _other("NodeBGP", {"asn": 65000, "routerId": "fd00::1", "speaker": SPEAKER}),
        "spec.routerId",
        "must be an IPv4 address",
    ),
    (
        _other(
            "ClusterBGP",
            {
                "asnSelector": {"from": "asn"},
                "routerIdSelector": {"from": "label"},
                "speaker": SPEAKER,
            },
        ),
        "spec.asnSelector.asn",
        "asn is required when from is asn",
    ),
    (
        _other("BGPAdvertisement", {"cidr": "10.0.1.1/32", "type": "service", "protocol": "ipv6"}),
        "spec.protocol",
        "protocol must be the address family of cidr",
    ),
    (
        _other(
            "BGPAdvertisement",
            {"cidr": "10.0.1.1/32", "type": "service", "protocol": "ipv4", "attrs": ["med:5"]},
        ),
        "spec.attrs",
        "not a path attribute: med:5",
    ),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(("body", "field", "message"), INVALID, ids=[m for _, _, m in INVALID])
async def test_invalid_objects_are_refused_with_the_field_named(
    objects: Objects, body: dict[str, Any], field: str, message: str
) -> None:
    text = await _rejected(objects.create(objects.named(body)))
    assert f"{field}: " in text and message in text, text
    # The converter refuses the same object, naming the same field: one source of truth.
    with pytest.raises(InvalidObject) as raised:
        structure_object(body)
    assert any(m.startswith(f"{field}: ") for m in raised.value.messages), raised.value.messages


@pytest.mark.asyncio
async def test_immutable_fields_cannot_change(objects: Objects) -> None:
    pool = await objects.create(objects.named(_pool(cidr="10.4.0.0/24")))
    name = pool["metadata"]["name"]
    for change, message in (
        ({"cidr": "10.5.0.0/24"}, 'spec.cidr: Invalid value: "string": cidr is immutable'),
        ({"type": "service"}, "type is immutable"),
        ({"blockSize": 28}, 'spec.blockSize: Invalid value: "object": blockSize is immutable'),
    ):
        assert message in await _rejected(objects.patch("AddressPool", name, {"spec": change}))
    changed = await objects.patch("AddressPool", name, {"spec": {"autoAssign": True}})
    assert changed["spec"]["autoAssign"] is True

    sized = await objects.create(objects.named(_pool(cidr="10.6.0.0/24", blockSize=26)))
    name = sized["metadata"]["name"]
    for change in ({"blockSize": 27}, {"blockSize": None}):
        text = await _rejected(objects.patch("AddressPool", name, {"spec": change}))
        assert "blockSize is immutable" in text

    peer = await objects.create(objects.named(_peer()))
    name = peer["metadata"]["name"]
    for field, value in (("addr", "9.9.9.8"), ("asn", 65010), ("nodeBGPRef", "n2")):
        change = {field: value}
        text = await _rejected(objects.patch("BGPPeer", name, {"spec": change}))
        assert f"spec.{field}: " in text and f"{field} is immutable" in text
    changed = await objects.patch("BGPPeer", name, {"spec": {"groups": ["tor"], "holdTime": 9}})
    assert changed["spec"]["groups"] == ["tor"]


@pytest.mark.asyncio
async def test_kubectl_get_shows_the_documented_columns(objects: Objects) -> None:
    pool = await objects.create(
        objects.named(_pool(cidr="10.7.0.0/24", type="service", blockSize=24, autoAssign=True))
    )
    name = pool["metadata"]["name"]
    # The status subresource: status goes through /status, spec changes there are ignored.
    await objects.patch(
        "AddressPool",
        name,
        {"status": {"allocatedAddresses": 3, "freeAddresses": 253}, "spec": {"autoAssign": False}},
        status=True,
    )
    table = await objects.table("AddressPool", name)
    columns = [(c["name"], c["priority"]) for c in table["columnDefinitions"]]
    assert columns == [
        ("Name", 0),
        ("CIDR", 0),
        ("TYPE", 0),
        ("BLOCKSIZE", 0),
        ("AUTO", 0),
        ("AGE", 0),
        ("ALLOCATED", 1),
        ("FREE", 1),
    ]
    cells = table["rows"][0]["cells"]
    assert cells[:5] == [name, "10.7.0.0/24", "service", 24, True]
    assert cells[6:] == [3, 253]

    peer = await objects.create(objects.named(_peer(clusterBGPRef="all")))
    name = peer["metadata"]["name"]
    status = {"backoff": 0, "conditions": [{"status": "Established", "reason": "up"}]}
    await objects.patch("BGPPeer", name, {"status": status}, status=True)
    table = await objects.table("BGPPeer", name)
    shown = [c["name"] for c in table["columnDefinitions"] if c["priority"] == 0]
    assert shown == ["Name", "ASN", "ADDRESS", "NODEBGP", "STATUS", "AGE"]
    cells = table["rows"][0]["cells"]
    assert cells[:5] == [name, 65000, "9.9.9.9", "n1", "Established"]
