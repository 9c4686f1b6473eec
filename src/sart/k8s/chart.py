"""The Helm chart charts/sart, generated from what kustomize renders of manifests/.

The chart is not a second copy of the manifests: ``kubectl kustomize`` renders manifests/ with
every set of its components (``COMPONENTS``: each one a boolean of the values), and each
rendered object becomes one template. What all sets render alike is written as it is; where
they differ (a key, a list item named ``name``, a whole value or object), the template chooses
with ``if`` on the components' values, so ``helm template`` with a set of booleans gives what
kustomize gives with that set of components. Then the parts a Helm user sets are replaced by
values, their defaults being what kustomize rendered: the image (repository, tag defaulting to
the chart's appVersion, pull policy), each workload's replicas, nodeSelector, tolerations, each
container's resources and extra arguments (appended to its command). The namespace is the
release's: every string naming the rendered one names ``.Release.Namespace`` instead, and the
Namespace object is left out (Helm installs into an existing namespace; docs/install.md).
CustomResourceDefinitions go to crds/, as Helm expects them. Every object keeps the
app.kubernetes.io labels of the manifests and gets helm.sh/chart, app.kubernetes.io/managed-by
and app.kubernetes.io/instance.

``python -m sart.k8s.chart --kubectl PATH --out charts/sart`` writes the chart;
``scripts/gen-helm --check`` fails when the committed one is stale.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import shutil
import subprocess
import tempfile
import textwrap
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs
import yaml

import sart

# The components under manifests/components, each turned on by the boolean at its values path.
COMPONENTS: dict[str, tuple[str, ...]] = {
    "cni": ("cni", "enabled"),
    "webhook-cert-manager": ("webhook", "certManager", "enabled"),
}
WORKLOAD_KINDS = ("Deployment", "DaemonSet")
IMAGE_REPOSITORY = "sart"
NAMESPACE_TEMPLATE = "{{ .Release.Namespace }}"
HELM_LABELS = {
    "helm.sh/chart": '{{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | quote }}',
    "app.kubernetes.io/managed-by": "{{ .Release.Service | quote }}",
    "app.kubernetes.io/instance": "{{ .Release.Name | quote }}",
}
# Lists merged by name whose order matters: init containers run one after the other, and an
# environment variable can refer to those before it.
ORDERED_LISTS = ("initContainers", "env")
PULL_POLICIES = ["Always", "IfNotPresent", "Never"]

Combo = frozenset[str]
Obj = dict[str, Any]


class ChartError(Exception):
    """The rendered manifests cannot be made into the chart (what and where in the message)."""


# Template values standing in a rendered object for what the chart's values set.
@attrs.frozen
class Inline:
    """A scalar written as a template expression."""

    text: str


@attrs.frozen
class FromValues:
    """A mapping or list taken from the values at `path`; the key is left out when it is empty."""

    path: str


@attrs.frozen
class CommandWithExtra:
    """A command whose arguments are followed by the list of strings at `path` in the values."""

    items: tuple[Any, ...]
    path: str


def render(kubectl: Path, manifests: Path, components: Sequence[str]) -> list[Obj]:
    """What `kubectl apply -k` sends for manifests/ with `components`, named by a kustomization
    of one's own (as docs/install.md has it; kustomize refuses one inside manifests/)."""
    with tempfile.TemporaryDirectory(prefix="sart-chart-") as tmp:
        root = Path(tmp)
        (root / "sart").symlink_to(manifests.resolve())
        kustomization = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": ["sart"],
            "components": [f"sart/components/{c}" for c in components],
        }
        (root / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
        done = subprocess.run(
            [str(kubectl), "kustomize", str(root)], capture_output=True, text=True, check=False
        )
    if done.returncode != 0:
        raise ChartError(
            f"kubectl kustomize of manifests/ with components {list(components)} failed: "
            f"{done.stderr.strip()}"
        )
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def combos(present: Iterable[str]) -> list[Combo]:
    """Every set of the present components."""
    names = [c for c in COMPONENTS if c in set(present)]
    return [
        frozenset(chosen)
        for n in range(len(names) + 1)
        for chosen in itertools.combinations(names, n)
    ]


def in_order(combo: Combo) -> list[str]:
    return [c for c in COMPONENTS if c in combo]


def values_ref(path: str) -> str:
    """The template expression of the value at dotted `path` (`index` past a key that is no
    template identifier, such as a container named install-cni)."""
    expr = ".Values"
    for key in path.split("."):
        expr = f"{expr}.{key}" if key.isidentifier() else f'(index {expr} "{key}")'
    return expr


def value_ref(component: str) -> str:
    return values_ref(".".join(COMPONENTS[component]))


def condition(chosen: set[Combo], context: Sequence[Combo], names: Sequence[str]) -> str:
    """The shortest test of the components' values that holds in the `chosen` sets of `context`
    and in no other set of `context` ("" when all of `context` is chosen)."""
    if chosen == set(context):
        return ""
    literals = [(c, on) for c in names for on in (True, False)]

    def text(lits: Sequence[tuple[str, bool]]) -> str:
        if len(lits) == 1:
            [(c, on)] = lits
            return value_ref(c) if on else f"not {value_ref(c)}"
        return "and " + " ".join(value_ref(c) if on else f"(not {value_ref(c)})" for c, on in lits)

    for size in range(1, len(names) + 1):
        for lits in itertools.combinations(literals, size):
            if len({c for c, _ in lits}) < size:
                continue
            holds = {k for k in context if all((c in k) == on for c, on in lits)}
            if holds == chosen:
                return text(lits)
    # A choice no conjunction describes (one component or the other): a conjunction per set.
    terms = [f"({text([(c, c in k) for c in names])})" for k in context if k in chosen]
    return "or " + " ".join(terms)


def substitute_namespace(value: Any, namespace: str) -> Any:
    """`value` with every string naming `namespace` naming the release's instead."""
    if isinstance(value, dict):
        return {k: substitute_namespace(v, namespace) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute_namespace(v, namespace) for v in value]
    if isinstance(value, str) and namespace in value:
        return Inline(json.dumps(value).replace(namespace, NAMESPACE_TEMPLATE))
    return value


class Values:
    """The chart's values as the objects' templates name them, with their rendered defaults."""

    def __init__(self) -> None:
        self.tree: dict[str, Any] = {}
        self.comments: dict[str, list[str]] = {}  # of each top-level key

    def describe(self, key: str, comment: str) -> None:
        found = self.comments.setdefault(key, [])
        if comment not in found:
            found.append(comment)

    def set(self, path: str, default: Any, where: str) -> None:
        *parents, last = path.split(".")
        node = self.tree
        for key in parents:
            node = node.setdefault(key, {})
        if last in node and node[last] != default:
            raise ChartError(
                f"{where}: the value {path} would default to {node[last]!r} in one set of "
                f"components and {default!r} in another; the chart has one default"
            )
        node[last] = default


def parametrize(obj: Obj, values: Values) -> Obj:
    """`obj` with the parts the values set replaced by templates, and the Helm labels."""
    obj = copy.deepcopy(obj)
    where = f"{obj['kind']} {obj['metadata']['name']}"
    obj["metadata"].setdefault("labels", {}).update({k: Inline(v) for k, v in HELM_LABELS.items()})
    if obj["kind"] not in WORKLOAD_KINDS:
        return obj
    workload = obj["metadata"]["name"].removeprefix("sart-")
    values.describe(
        workload,
        f"The {where}: its pods' nodeSelector and tolerations, and by container name the "
        "resources and extraArgs (appended to the command).",
    )
    spec = obj["spec"]
    if "replicas" in spec:
        values.set(f"{workload}.replicas", spec["replicas"], where)
        spec["replicas"] = Inline(f"{{{{ {values_ref(workload + '.replicas')} }}}}")
    pod = spec["template"]["spec"]
    for key, empty in (("nodeSelector", {}), ("tolerations", [])):
        values.set(f"{workload}.{key}", pod.get(key, empty), where)
        pod[key] = FromValues(f"{workload}.{key}")
    for container in pod.get("initContainers", []) + pod["containers"]:
        name = container["name"]
        at = f"{where} container {name}"
        if container.get("image", "").split(":")[0] == IMAGE_REPOSITORY:
            container["image"] = Inline(
                '"{{ .Values.image.repository }}:'
                '{{ .Values.image.tag | default .Chart.AppVersion }}"'
            )
            container["imagePullPolicy"] = Inline("{{ .Values.image.pullPolicy | quote }}")
        values.set(f"{workload}.resources.{name}", container.get("resources", {}), at)
        container["resources"] = FromValues(f"{workload}.resources.{name}")
        if "command" in container:
            values.set(f"{workload}.extraArgs.{name}", [], at)
            container["command"] = CommandWithExtra(
                tuple(container["command"]), f"{workload}.extraArgs.{name}"
            )
    return obj


Alternatives = list[tuple[Combo, Any]]


class Emitter:
    """YAML text with Helm conditionals, for one object rendered differently by the sets."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = names

    def wrap(self, cond: str, lines: list[str], indent: int) -> list[str]:
        if not cond:
            return lines
        pad = " " * indent
        return [f"{pad}{{{{- if {cond} }}}}", *lines, f"{pad}{{{{- end }}}}"]

    def scalar(self, value: Any) -> str:
        if isinstance(value, Inline):
            return value.text
        return json.dumps(value)

    def plain(self, key: str, value: Any, indent: int) -> list[str]:
        """`key: value` alike in every set."""
        pad = " " * indent
        if isinstance(value, FromValues):
            return [
                f"{pad}{{{{- with {values_ref(value.path)} }}}}",
                f"{pad}{key}:",
                f"{pad}  {{{{- toYaml . | nindent {indent + 2} }}}}",
                f"{pad}{{{{- end }}}}",
            ]
        return (
            [f"{pad}{key}:", *self.block(value, indent + 2)]
            if self.nested(value)
            else [f"{pad}{key}: {self.inline(value)}"]
        )

    def nested(self, value: Any) -> bool:
        return isinstance(value, CommandWithExtra) or (
            isinstance(value, dict | list) and len(value) > 0
        )

    def inline(self, value: Any) -> str:
        if isinstance(value, dict | list):
            return "{}" if isinstance(value, dict) else "[]"
        return self.scalar(value)

    def block(self, value: Any, indent: int) -> list[str]:
        """A non-empty mapping or list (or a scalar) on lines of its own at `indent`."""
        pad = " " * indent
        if isinstance(value, CommandWithExtra):
            return [
                *(f"{pad}- {self.scalar(a)}" for a in value.items),
                f"{pad}{{{{- range {values_ref(value.path)} }}}}",
                f"{pad}- {{{{ . | quote }}}}",
                f"{pad}{{{{- end }}}}",
            ]
        if isinstance(value, dict):
            return [line for k, v in value.items() for line in self.plain(k, v, indent)]
        if isinstance(value, list):
            return [line for item in value for line in self.item(item, indent)]
        return [f"{pad}{self.scalar(value)}"]

    def item(self, value: Any, indent: int) -> list[str]:
        pad = " " * indent
        if not self.nested(value):
            return [f"{pad}- {self.inline(value)}"]
        lines = self.block(value, indent + 2)
        if lines[0].lstrip().startswith("{{"):
            return [f"{pad}-", *lines]
        return [f"{pad}- {lines[0][indent + 2 :]}", *lines[1:]]

    def mapping(self, alts: Alternatives, indent: int) -> list[str]:
        """The keys of a mapping present (as a mapping) in the sets of `alts`."""
        context = [c for c, _ in alts]
        keys = list(dict.fromkeys(k for _, d in alts for k in d))
        groups: list[tuple[str, list[str]]] = []  # adjacent keys under one condition together
        for key in keys:
            present = [(c, d[key]) for c, d in alts if key in d]
            cond = condition({c for c, _ in present}, context, self.names)
            lines = self.keyed(key, present, indent)
            if groups and groups[-1][0] == cond:
                groups[-1][1].extend(lines)
            else:
                groups.append((cond, lines))
        return [line for cond, lines in groups for line in self.wrap(cond, lines, indent)]

    def keyed(self, key: str, alts: Alternatives, indent: int) -> list[str]:
        pad = " " * indent
        values = [v for _, v in alts]
        if all(v == values[0] for v in values):
            return self.plain(key, values[0], indent)
        if all(isinstance(v, dict) and v for v in values):
            return [f"{pad}{key}:", *self.mapping(alts, indent + 2)]
        if all(isinstance(v, CommandWithExtra) for v in values):
            return self.commands(key, alts, indent)
        if all(self.named(v) for v in values):
            return [f"{pad}{key}:", *self.named_items(key, alts, indent + 2)]
        return [f"{pad}{key}:", *self.choice(alts, indent + 2)]

    def named(self, value: Any) -> bool:
        if not isinstance(value, list) or not value:
            return False
        if not all(isinstance(i, dict) and isinstance(i.get("name"), str) for i in value):
            return False
        return len({i["name"] for i in value}) == len(value)

    def named_items(self, key: str, alts: Alternatives, indent: int) -> list[str]:
        """A list of mappings each with its own name: item by item, by name, in the order of
        the first set that has each (Kubernetes merges these lists by name: a component's
        patch may put a container first). Where order means something it must stay."""
        context = [c for c, _ in alts]
        names = list(dict.fromkeys(i["name"] for _, v in alts for i in v))
        for combo, value in alts:
            own = [i["name"] for i in value]
            if key in ORDERED_LISTS and own != [n for n in names if n in own]:
                raise ChartError(
                    f"{key}: the order {own} of components {in_order(combo)} differs from "
                    f"that of another set, {names}; one template keeps one order"
                )
        pad = " " * indent
        groups: list[tuple[str, list[str]]] = []
        for name in names:
            present = [
                (c, {k: x for k, x in i.items() if k != "name"})
                for c, v in alts
                for i in v
                if i["name"] == name
            ]
            cond = condition({c for c, _ in present}, context, self.names)
            body = [f"{pad}- name: {json.dumps(name)}", *self.mapping(present, indent + 2)]
            if groups and groups[-1][0] == cond:
                groups[-1][1].extend(body)
            else:
                groups.append((cond, body))
        return [line for cond, lines in groups for line in self.wrap(cond, lines, indent)]

    def choice(
        self, alts: Alternatives, indent: int, lines_of: Callable[[Any], list[str]] | None = None
    ) -> list[str]:
        """A value that differs as a whole: each distinct one under its condition, written by
        `lines_of` (as a block at `indent` by default)."""
        context = [c for c, _ in alts]
        distinct: list[tuple[Any, set[Combo]]] = []
        for combo, value in alts:
            for known, where in distinct:
                if known == value:
                    where.add(combo)
                    break
            else:
                distinct.append((value, {combo}))
        pad = " " * indent
        written = []
        for value, where in distinct:
            if lines_of is not None:
                block = lines_of(value)
            elif isinstance(value, FromValues):
                raise ChartError(f"{value.path}: a value set by the chart differs between sets")
            elif self.nested(value):
                block = self.block(value, indent)
            else:
                block = [f"{pad}{self.inline(value)}"]
            if block:  # nothing to write: no branch
                written.append((block, where))
        lines = []
        for n, (block, where) in enumerate(written):
            cond = condition(where, context, self.names)
            if n == 0:
                lines.append(f"{pad}{{{{- if {cond} }}}}")
            elif n < len(written) - 1 or len(written) < len(distinct):
                lines.append(f"{pad}{{{{- else if {cond} }}}}")
            else:
                lines.append(f"{pad}{{{{- else }}}}")
            lines += block
        lines.append(f"{pad}{{{{- end }}}}")
        return lines

    def commands(self, key: str, alts: Alternatives, indent: int) -> list[str]:
        """Commands that differ: their common first and last arguments once, the rest under
        conditions, then the extra arguments."""
        pad = " " * indent
        commands: list[CommandWithExtra] = [v for _, v in alts]
        [path] = {c.path for c in commands}
        first = commands[0].items
        head = 0
        while all(len(c.items) > head and c.items[head] == first[head] for c in commands):
            head += 1
        tail = 0
        while all(
            len(c.items) - head > tail and c.items[-1 - tail] == first[-1 - tail] for c in commands
        ):
            tail += 1
        middles = [(combo, c.items[head : len(c.items) - tail]) for combo, c in alts]
        return [
            f"{pad}{key}:",
            *(f"{pad}  - {self.scalar(a)}" for a in first[:head]),
            *self.choice(middles, indent + 2, lambda m: [f"{pad}  - {self.scalar(a)}" for a in m]),
            *self.block(CommandWithExtra(first[len(first) - tail :], path), indent + 2),
        ]


def schema(values: dict[str, Any], components: Sequence[str]) -> dict[str, Any]:
    """values.schema.json: the types of every value, no other key."""

    def closed(properties: dict[str, Any]) -> dict[str, Any]:
        return {"type": "object", "additionalProperties": False, "properties": properties}

    strings = {"type": "array", "items": {"type": "string"}}
    resources = closed(
        {
            k: {"type": "object", "additionalProperties": {"type": ["string", "number"]}}
            for k in ("requests", "limits")
        }
    )
    properties: dict[str, Any] = {
        "image": closed(
            {
                "repository": {"type": "string", "minLength": 1},
                "tag": {"type": "string"},
                "pullPolicy": {"enum": PULL_POLICIES},
            }
        )
    }
    for component in components:
        path = COMPONENTS[component]
        node = properties
        for key in path[:-1]:
            node = node.setdefault(key, closed({}))["properties"]
        node[path[-1]] = {"type": "boolean"}
    for workload, settings in values.items():
        if workload in properties:
            continue
        found: dict[str, Any] = {
            "nodeSelector": {"type": "object", "additionalProperties": {"type": "string"}},
            "tolerations": {"type": "array", "items": {"type": "object"}},
            "resources": closed(dict.fromkeys(settings["resources"], resources)),
            "extraArgs": closed(dict.fromkeys(settings.get("extraArgs", {}), strings)),
        }
        if "replicas" in settings:
            found["replicas"] = {"type": "integer", "minimum": 0}
        properties[workload] = closed(found)
    return {"$schema": "http://json-schema.org/draft-07/schema#", **closed(properties)}


def values_yaml(values: Values) -> str:
    parts = [
        "# The values of the sart chart, generated by scripts/gen-helm from manifests/: the\n"
        "# defaults are what `kubectl kustomize manifests/` renders (docs/install.md).\n"
    ]
    for key, value in values.tree.items():
        comment = "".join(
            f"# {line}\n" for c in values.comments[key] for line in textwrap.wrap(c, 94)
        )
        parts.append(comment + yaml.safe_dump({key: value}, sort_keys=False))
    return "\n".join(parts)


def chart_yaml() -> str:
    chart = {
        "apiVersion": "v2",
        "name": "sart",
        "description": "BGP for Kubernetes: LoadBalancer addresses and pod addresses",
        "type": "application",
        "version": sart.__version__,
        "appVersion": sart.__version__,
    }
    return "# Generated by scripts/gen-helm; the version is sart.__version__.\n" + yaml.safe_dump(
        chart, sort_keys=False
    )


def generate(kubectl: Path, manifests: Path, out: Path) -> None:
    present = sorted(p.name for p in (manifests / "components").iterdir() if p.is_dir())
    unknown = [c for c in present if c not in COMPONENTS]
    if unknown:
        raise ChartError(
            f"manifests/components/{unknown[0]} has no values key: add it to COMPONENTS in "
            "src/sart/k8s/chart.py"
        )
    names = [c for c in COMPONENTS if c in present]
    sets = combos(names)
    rendered = {combo: render(kubectl, manifests, in_order(combo)) for combo in sets}
    namespaces = [o["metadata"]["name"] for o in rendered[frozenset()] if o["kind"] == "Namespace"]
    if len(namespaces) != 1:
        raise ChartError(f"manifests/ renders {len(namespaces)} Namespaces, not sart's one")
    [namespace] = namespaces
    values = Values()
    values.set("image.repository", IMAGE_REPOSITORY, "image")
    values.set("image.tag", "", "image")
    values.set("image.pullPolicy", "IfNotPresent", "image")
    values.describe("image", "The image of every container (the tag: the chart's appVersion).")
    for component in names:
        path = ".".join(COMPONENTS[component])
        values.set(path, False, f"components/{component}")
        values.describe(path.split(".")[0], f"{path}: manifests/components/{component}.")
    objects: dict[tuple[str, str, str], Alternatives] = {}
    crds: dict[str, Obj] = {}
    for combo, objs in rendered.items():
        for obj in objs:
            meta = obj["metadata"]
            if obj["kind"] == "Namespace" and meta["name"] == namespace:
                continue
            if obj["kind"] == "CustomResourceDefinition":
                if crds.setdefault(meta["name"], obj) != obj:
                    raise ChartError(f"CustomResourceDefinition {meta['name']} differs by set")
                continue
            key = (obj["kind"], meta.get("namespace", ""), meta["name"])
            templated = parametrize(substitute_namespace(obj, namespace), values)
            objects.setdefault(key, []).append((combo, templated))
    if out.exists():
        shutil.rmtree(out)
    (out / "templates").mkdir(parents=True)
    (out / "crds").mkdir()
    (out / "Chart.yaml").write_text(chart_yaml())
    (out / "values.yaml").write_text(values_yaml(values))
    (out / "values.schema.json").write_text(json.dumps(schema(values.tree, names), indent=2) + "\n")
    generated = "# Generated by scripts/gen-helm from manifests/; do not edit.\n"
    for name, crd in sorted(crds.items()):
        (out / "crds" / f"{name}.yaml").write_text(generated + yaml.safe_dump(crd))
    emitter = Emitter(names)
    for (kind, _, name), alts in objects.items():
        cond = condition({c for c, _ in alts}, sets, names)
        body = emitter.mapping(alts, 0)
        text = "\n".join(emitter.wrap(cond, body, 0)) + "\n"
        (out / "templates" / f"{kind.lower()}-{name}.yaml").write_text(generated + text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sart.k8s.chart", description=__doc__)
    parser.add_argument("--kubectl", type=Path, required=True, help="kubectl to render with")
    parser.add_argument("--manifests", type=Path, default=Path("manifests"))
    parser.add_argument("--out", type=Path, required=True, help="the chart's directory")
    args = parser.parse_args(argv)
    try:
        generate(args.kubectl, args.manifests, args.out)
    except ChartError as exc:
        parser.exit(1, f"sart.k8s.chart: {exc}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
