"""sart.k8s.chart's pure parts: the tests on the components' values it writes, the values a
rendered workload gets, and the template lines of objects that differ between sets of
components (tests/k8s/test_helm_chart.py renders the real chart with the real helm)."""

from __future__ import annotations

from typing import Any

import pytest

from sart.k8s import chart

CNI = ".Values.cni.enabled"
CERT = ".Values.webhook.certManager.enabled"
NONE: frozenset[str] = frozenset()
CNI_ONLY = frozenset({"cni"})
CERT_ONLY = frozenset({"webhook-cert-manager"})
BOTH = frozenset({"cni", "webhook-cert-manager"})
ALL = [NONE, CNI_ONLY, CERT_ONLY, BOTH]
NAMES = list(chart.COMPONENTS)


def test_every_set_of_the_present_components() -> None:
    assert chart.combos(["webhook-cert-manager", "cni"]) == ALL
    assert chart.combos(["cni"]) == [NONE, CNI_ONLY]


@pytest.mark.parametrize(
    ("chosen", "expected"),
    [
        (ALL, ""),
        ([CNI_ONLY, BOTH], CNI),
        ([NONE, CERT_ONLY], f"not {CNI}"),
        ([BOTH], f"and {CNI} {CERT}"),
        ([CNI_ONLY], f"and {CNI} (not {CERT})"),
        ([CNI_ONLY, CERT_ONLY], f"or (and {CNI} (not {CERT})) (and (not {CNI}) {CERT})"),
    ],
)
def test_the_shortest_test_of_the_values(chosen: list[frozenset[str]], expected: str) -> None:
    assert chart.condition(set(chosen), ALL, NAMES) == expected


def test_a_test_needs_only_tell_apart_the_sets_at_hand() -> None:
    assert chart.condition({BOTH}, [CERT_ONLY, BOTH], NAMES) == CNI


def test_a_key_that_is_no_identifier_is_indexed() -> None:
    assert chart.values_ref("sartd.resources.install-cni") == (
        '(index .Values.sartd.resources "install-cni")'
    )


def workload(resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "DaemonSet",
        "metadata": {"name": "sartd", "labels": {"app.kubernetes.io/name": "sart"}},
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "bgp",
                            "image": "sart:0.1.0",
                            "command": ["sartd", "bgp"],
                            "resources": resources,
                        }
                    ]
                }
            }
        },
    }


def test_a_workload_takes_its_settings_from_the_values() -> None:
    values = chart.Values()
    obj = chart.parametrize(workload({"requests": {"cpu": "50m"}}), values)
    [container] = obj["spec"]["template"]["spec"]["containers"]
    assert container["command"] == chart.CommandWithExtra(("sartd", "bgp"), "sartd.extraArgs.bgp")
    assert container["resources"] == chart.FromValues("sartd.resources.bgp")
    assert isinstance(container["image"], chart.Inline)
    assert set(obj["metadata"]["labels"]) == {"app.kubernetes.io/name", *chart.HELM_LABELS}
    assert values.tree == {
        "sartd": {
            "nodeSelector": {},
            "tolerations": [],
            "resources": {"bgp": {"requests": {"cpu": "50m"}}},
            "extraArgs": {"bgp": []},
        }
    }


def test_one_value_has_one_default() -> None:
    values = chart.Values()
    chart.parametrize(workload({"requests": {"cpu": "50m"}}), values)
    with pytest.raises(chart.ChartError, match=r"sartd\.resources\.bgp would default to"):
        chart.parametrize(workload({"requests": {"cpu": "60m"}}), values)


def test_the_namespace_becomes_the_release_namespace() -> None:
    found = chart.substitute_namespace(
        {"args": ["--secret", "sart-system/tls"], "name": "x"}, "sart-system"
    )
    assert found == {
        "args": ["--secret", chart.Inline('"{{ .Release.Namespace }}/tls"')],
        "name": "x",
    }


def test_what_differs_is_chosen_where_it_differs() -> None:
    """A key only some sets have goes under their test, a named item too, and a command's
    differing middle between its common ends."""
    base = {
        "kind": "Deployment",
        "containers": [
            {"name": "a", "command": chart.CommandWithExtra(("x", "--y", "z"), "w.extraArgs.a")}
        ],
    }
    cni = {
        "kind": "Deployment",
        "hostNetwork": True,
        "containers": [
            {"name": "a", "command": chart.CommandWithExtra(("x", "--cni", "z"), "w.extraArgs.a")},
            {"name": "b", "image": "i"},
        ],
    }
    lines = chart.Emitter(["cni"]).mapping([(NONE, base), (CNI_ONLY, cni)], 0)
    assert lines == [
        'kind: "Deployment"',
        "containers:",
        '  - name: "a"',
        "    command:",
        '      - "x"',
        f"      {{{{- if not {CNI} }}}}",
        '      - "--y"',
        "      {{- else }}",
        '      - "--cni"',
        "      {{- end }}",
        '      - "z"',
        "      {{- range .Values.w.extraArgs.a }}",
        "      - {{ . | quote }}",
        "      {{- end }}",
        f"  {{{{- if {CNI} }}}}",
        '  - name: "b"',
        '    image: "i"',
        "  {{- end }}",
        f"{{{{- if {CNI} }}}}",
        "hostNetwork: true",
        "{{- end }}",
    ]
