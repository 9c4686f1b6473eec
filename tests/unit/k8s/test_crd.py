"""The CRDs generated from the models: names and scope as the original sart, the printer columns
users see, the validation (CIDR syntax, bounds, immutable fields) and the committed copies."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sart.k8s import models
from sart.k8s.crd import DOCS_BEGIN, DOCS_END, crd, crds, docs_markdown, main

ROOT = Path(__file__).resolve().parents[3]


def _version(kind: type) -> dict[str, Any]:
    versions = crd(kind)["spec"]["versions"]
    assert len(versions) == 1
    found: dict[str, Any] = versions[0]
    return found


def _schema(kind: type, *path: str) -> dict[str, Any]:
    """The schema at ``path`` (property names; ``[]`` for list items) under openAPIV3Schema."""
    node: dict[str, Any] = _version(kind)["schema"]["openAPIV3Schema"]
    for step in path:
        node = node["items"] if step == "[]" else node["properties"][step]
    return node


def _rules(node: dict[str, Any]) -> list[str]:
    return [rule["rule"] for rule in node.get("x-kubernetes-validations", ())]


def _columns(kind: type, *, wide: bool = False) -> list[tuple[str, str]]:
    return [
        (column["name"], column["jsonPath"])
        for column in _version(kind)["additionalPrinterColumns"]
        if wide or not column.get("priority")
    ]


NAMES = {
    models.AddressPool: ("addresspools", "Cluster"),
    models.AddressBlock: ("addressblocks", "Cluster"),
    models.BlockRequest: ("blockrequests", "Cluster"),
    models.ClusterBGP: ("clusterbgps", "Cluster"),
    models.NodeBGP: ("nodebgps", "Cluster"),
    models.BGPPeer: ("bgppeers", "Cluster"),
    models.BGPPeerTemplate: ("bgppeertemplates", "Cluster"),
    models.BGPAdvertisement: ("bgpadvertisements", "Namespaced"),
}


@pytest.mark.parametrize("kind", models.KINDS, ids=lambda k: k.__name__)
def test_names_scope_version_and_status_subresource(kind: type) -> None:
    document = crd(kind)
    plural, scope = NAMES[kind]
    assert document["apiVersion"] == "apiextensions.k8s.io/v1"
    assert document["metadata"]["name"] == f"{plural}.sart.terassyi.net"
    spec = document["spec"]
    assert spec["group"] == "sart.terassyi.net" and spec["scope"] == scope
    assert spec["names"]["kind"] == kind.__name__
    assert spec["names"]["plural"] == plural
    assert spec["names"]["singular"] == kind.__name__.lower()
    version = _version(kind)
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha2", True, True)
    assert version["subresources"] == {"status": {}}
    assert _schema(kind)["required"] == ["spec"]


def test_addresspool_columns_are_what_kubectl_get_shows() -> None:
    assert _columns(models.AddressPool) == [
        ("CIDR", ".spec.cidr"),
        ("TYPE", ".spec.type"),
        ("BLOCKSIZE", ".spec.blockSize"),
        ("AUTO", ".spec.autoAssign"),
        ("AGE", ".metadata.creationTimestamp"),
    ]
    assert _columns(models.AddressPool, wide=True)[5:] == [
        ("ALLOCATED", ".status.allocatedAddresses"),
        ("FREE", ".status.freeAddresses"),
    ]


def test_bgppeer_columns_are_what_kubectl_get_shows() -> None:
    assert _columns(models.BGPPeer) == [
        ("ASN", ".spec.asn"),
        ("ADDRESS", ".spec.addr"),
        ("NODEBGP", ".spec.nodeBGPRef"),
        ("STATUS", ".status.conditions[-1:].status"),
        ("AGE", ".metadata.creationTimestamp"),
    ]
    assert [name for name, _ in _columns(models.BGPPeer, wide=True)][5:] == [
        "CLUSTERBGP",
        "BACKOFF",
    ]


def test_other_columns_as_the_original() -> None:
    assert [n for n, _ in _columns(models.AddressBlock)] == [
        "CIDR",
        "TYPE",
        "POOLREF",
        "NODEREF",
        "AGE",
    ]
    assert [n for n, _ in _columns(models.NodeBGP)] == ["ASN", "ROUTERID", "AGE", "STATUS"]
    assert [n for n, _ in _columns(models.BGPAdvertisement)] == ["CIDR", "TYPE", "PROTOCOL", "AGE"]
    assert [n for n, _ in _columns(models.BlockRequest)] == ["POOL", "NODE", "AGE"]
    assert [n for n, _ in _columns(models.ClusterBGP)] == ["AGE"]
    assert [n for n, _ in _columns(models.ClusterBGP, wide=True)] == ["AGE", "CONFLICTED"]


REQUIRED = {
    models.AddressPool: ["cidr", "type"],
    models.AddressBlock: ["cidr", "type", "poolRef", "autoAssign"],
    models.BlockRequest: ["pool", "node"],
    models.ClusterBGP: ["asnSelector", "routerIdSelector", "speaker"],
    models.NodeBGP: ["asn", "routerId", "speaker"],
    models.BGPPeer: ["asn", "addr", "nodeBGPRef", "speaker"],
    models.BGPPeerTemplate: None,
    models.BGPAdvertisement: ["cidr", "type", "protocol"],
}


@pytest.mark.parametrize("kind", models.KINDS, ids=lambda k: k.__name__)
def test_required_spec_fields_as_the_original(kind: type) -> None:
    assert _schema(kind, "spec").get("required") == REQUIRED[kind]


def test_addresspool_fields() -> None:
    spec = _schema(models.AddressPool, "spec")
    original = ["cidr", "type", "allocType", "blockSize", "autoAssign"]
    additions = ["namespaces", "serviceSelector", "bgpAttributes", "aggregationLength"]
    assert list(spec["properties"]) == [*original, *additions]
    assert spec["properties"]["type"]["enum"] == ["service", "pod"]
    assert spec["properties"]["allocType"] == {
        **spec["properties"]["allocType"],
        "enum": ["bit"],
        "default": "bit",
    }
    block_size = spec["properties"]["blockSize"]
    assert (block_size["type"], block_size["minimum"], block_size["maximum"]) == ("integer", 0, 128)
    assert spec["properties"]["autoAssign"]["default"] is False


def test_cidrs_are_checked_by_pattern_and_cel() -> None:
    for kind in (models.AddressPool, models.AddressBlock, models.BGPAdvertisement):
        cidr = _schema(kind, "spec", "cidr")
        assert cidr["type"] == "string" and cidr["maxLength"] == 49
        assert cidr["pattern"] == r"^[0-9a-fA-F:.]+/[0-9]{1,3}$"
        assert _rules(cidr)[:2] == [
            "isCIDR(self)",
            "!isCIDR(self) || cidr(self) == cidr(self).masked()",
        ]
    assert "isIP(self)" in _rules(_schema(models.BGPPeer, "spec", "addr"))
    assert "!isIP(self) || ip(self).family() == 4" in _rules(
        _schema(models.NodeBGP, "spec", "routerId")
    )


IMMUTABLE = {
    models.AddressPool: ["cidr", "type", "allocType", "blockSize"],
    models.AddressBlock: ["cidr", "type", "poolRef"],
    models.BlockRequest: ["pool", "node"],
    models.BGPPeer: ["asn", "addr", "nodeBGPRef"],
}


@pytest.mark.parametrize("kind", models.KINDS, ids=lambda k: k.__name__)
def test_immutable_fields_have_a_transition_rule(kind: type) -> None:
    spec = _schema(kind, "spec")
    immutable = [
        name for name, prop in spec["properties"].items() if "self == oldSelf" in _rules(prop)
    ]
    assert immutable == IMMUTABLE.get(kind, [])
    for name in immutable:
        messages = [r["message"] for r in spec["properties"][name]["x-kubernetes-validations"]]
        assert f"{name} is immutable" in messages


def test_adding_or_removing_block_size_is_a_change_too() -> None:
    rules = _schema(models.AddressPool, "spec")["x-kubernetes-validations"]
    assert {
        "rule": "has(self.blockSize) == has(oldSelf.blockSize)",
        "message": "blockSize is immutable",
        "fieldPath": ".blockSize",
    } in rules


def _walk(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    if "items" in node:
        yield from _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}{{}}")
    for name, prop in node.get("properties", {}).items():
        yield from _walk(prop, f"{path}.{name}")


def test_no_transition_rule_where_the_apiserver_cannot_pair_old_and_new() -> None:
    """Under a list, items have no identity: ``oldSelf`` there makes the CRD invalid."""
    for document in crds():
        root = document["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for path, node in _walk(root, ""):
            if "[]" in path:
                assert not any("oldSelf" in rule for rule in _rules(node)), path
    # BGPPeerSpec is immutable as a BGPPeer, not as an item of NodeBGP.spec.peers.
    assert _rules(_schema(models.NodeBGP, "spec", "peers", "[]", "spec", "asn")) == []


def test_every_field_is_typed_and_described() -> None:
    for document in crds():
        root = document["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for path, node in _walk(root, ""):
            assert "type" in node, path
            if path.startswith((".spec.", ".status.")) and not path.endswith(("[]", "{}")):
                assert node.get("description"), path


def test_the_committed_manifests_are_the_generated_ones() -> None:
    for document in crds():
        plural = document["spec"]["names"]["plural"]
        committed = yaml.safe_load((ROOT / "manifests" / "crd" / f"{plural}.yaml").read_text())
        assert committed == document, (
            f"manifests/crd/{plural}.yaml is stale: run scripts/gen-manifests"
        )
    kustomization = yaml.safe_load((ROOT / "manifests" / "crd" / "kustomization.yaml").read_text())
    assert kustomization["resources"] == [f"{k.DEFINITION.plural}.yaml" for k in models.KINDS]


def test_the_docs_tables_are_the_generated_ones() -> None:
    text = (ROOT / "docs" / "crds.md").read_text()
    generated = text.split(DOCS_BEGIN, 1)[1].split(DOCS_END, 1)[0]
    assert generated.strip() == docs_markdown().strip(), "docs/crds.md is stale"
    assert "| `spec.cidr` |" not in generated  # tables are relative to spec / status
    assert "| `cidr` | CIDR | yes |" in generated


def test_main_writes_manifests_and_docs(tmp_path: Path) -> None:
    docs = tmp_path / "crds.md"
    docs.write_text(f"intro\n{DOCS_BEGIN}\nold\n{DOCS_END}\nend\n")
    assert main(["--out", str(tmp_path / "crd"), "--docs", str(docs)]) == 0
    assert sorted(p.name for p in (tmp_path / "crd").iterdir()) == sorted(
        [f"{k.DEFINITION.plural}.yaml" for k in models.KINDS] + ["kustomization.yaml"]
    )
    text = docs.read_text()
    assert (
        text.startswith("intro\n") and text.endswith(f"{DOCS_END}\nend\n") and "\nold\n" not in text
    )
