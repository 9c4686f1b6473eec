"""manifests/ as users install it: `kubectl kustomize` (kubectl built from Go modules at the
control plane's version, scripts/kubectl) renders the base and its components
(sart.k8s.chart.render, as for the Helm chart); every rendered object is accepted by the real
apiserver (server-side apply, dry run: validation, defaulting and admission, without a
kubelet), and the Pods the workloads would make are admitted too (the controller's under the
restricted Pod Security level)."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_asyncio.client import CoreV1Api

import sart
from sart.k8s import chart
from sart.k8s.certs import service_names
from sart.k8s.runtime import webhook
from sart.testing.cluster_lab import GRACEFUL_RESTART_FLAGS
from sart.testing.controlplane import ControlPlane
from sart.testing.rbac import NAMESPACE, apply_shipped_rbac

pytestmark = pytest.mark.k8s

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
# Where each daemon serves /healthz and /readyz (its --metrics-address default).
METRICS_PORTS = {"bgp": 9469, "controller": 9470, "agent": 9471, "fib": 9472}
VARIANTS = {
    "base": (),
    "cni": ("cni",),
}


@pytest.fixture(scope="module")
def rendered(kubectl: Path) -> dict[str, Any]:
    """What `kubectl apply -k` would send: manifests/ with each variant's components."""
    return {
        name: chart.render(kubectl, MANIFESTS, components) for name, components in VARIANTS.items()
    }


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    [found] = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def containers(pod_spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in pod_spec["containers"]}


def test_kubectl_apply_k_manifests_is_the_base(kubectl: Path) -> None:
    """`kubectl kustomize manifests/` itself (what `kubectl apply -k manifests/` sends) renders,
    and is the CRDs of manifests/crd plus the daemons and the webhook."""
    out = subprocess.run(
        [kubectl, "kustomize", MANIFESTS], capture_output=True, text=True, check=True
    ).stdout
    objects = [d for d in yaml.safe_load_all(out) if d]
    kinds = sorted({(o["kind"], o["metadata"]["name"]) for o in objects})
    crds = {
        yaml.safe_load(p.read_text())["metadata"]["name"]
        for p in (MANIFESTS / "crd").glob("*.yaml")
        if p.name != "kustomization.yaml"
    }
    assert {n for k, n in kinds if k == "CustomResourceDefinition"} == crds
    assert {
        ("Namespace", "sart-system"),
        ("ServiceAccount", "sart-controller"),
        ("ServiceAccount", "sart-agent"),
        ("ClusterRole", "sart-controller"),
        ("ClusterRole", "sart-agent"),
        ("Deployment", "sart-controller"),
        ("PodDisruptionBudget", "sart-controller"),
        ("DaemonSet", "sartd"),
        ("Service", "sart-webhook"),
        ("ValidatingWebhookConfiguration", "sart"),
        ("ClusterRole", "sart-controller-webhook"),
        ("Role", "sart-controller-webhook-tls"),
    } <= set(kinds)
    for o in objects:
        assert o["metadata"]["labels"]["app.kubernetes.io/part-of"] == "sart"


def test_every_variant_runs_the_image_of_the_package_version(rendered: dict[str, Any]) -> None:
    """The version is written once (sart.__version__): the manifests name the image without a
    tag, and the kustomization's image tag and version label are that version."""
    image = f"sart:{sart.__version__}"
    for variant, objects in rendered.items():
        for o in objects:
            template = o.get("spec", {}).get("template")
            if template is None:
                continue
            spec = template["spec"]
            for c in [*spec.get("initContainers", []), *spec["containers"]]:
                assert c["image"] == image, (variant, o["metadata"]["name"], c["name"])
            labels = o["metadata"]["labels"]
            assert labels["app.kubernetes.io/version"] == sart.__version__, (variant, o)


def test_host_network_daemons_serve_metrics_on_the_node_address_only(
    rendered: dict[str, Any],
) -> None:
    """The DaemonSet runs on the host network: its metrics and probes listen on the node's
    address (the pod's), not on every interface of the host."""
    for variant, objects in rendered.items():
        spec = find(objects, "DaemonSet", "sartd")["spec"]["template"]["spec"]
        for name, container in containers(spec).items():
            command = container["command"]
            address = command[command.index("--metrics-address") + 1]
            env = {e["name"]: e.get("valueFrom") for e in container["env"]}
            assert address.startswith("[$(NODE_IP)]:"), (variant, name, address)
            assert env["NODE_IP"] == {"fieldRef": {"fieldPath": "status.hostIP"}}, (variant, name)
            port = int(address.rpartition(":")[2])
            assert port in {p["containerPort"] for p in container["ports"]}, (variant, name)


def test_the_base_writes_nothing_to_the_nodes(rendered: dict[str, Any]) -> None:
    """LoadBalancer-only clusters: no CNI configuration, plugin, host path or FIB on the nodes."""
    daemonset = find(rendered["base"], "DaemonSet", "sartd")
    spec = daemonset["spec"]["template"]["spec"]
    assert "initContainers" not in spec
    assert set(containers(spec)) == {"bgp", "agent"}
    assert all("hostPath" not in v for v in spec["volumes"])
    assert "--cni-socket" not in containers(spec)["agent"]["command"]
    controller = find(rendered["base"], "Deployment", "sart-controller")
    assert "hostNetwork" not in controller["spec"]["template"]["spec"]


def test_the_cni_component_installs_the_plugin_and_serves_it(rendered: dict[str, Any]) -> None:
    spec = find(rendered["cni"], "DaemonSet", "sartd")["spec"]["template"]["spec"]
    [init] = spec["initContainers"]
    assert init["command"] == [
        "python", "-m", "sart.cni.install",
        "--bin-dir", "/host/opt/cni/bin", "--conf-dir", "/host/etc/cni/net.d",
    ]  # fmt: skip
    agent = containers(spec)["agent"]
    command = agent["command"]
    assert command[command.index("--cni-socket") + 1] == "/run/sart/cni.sock"
    assert set(agent["securityContext"]["capabilities"]["add"]) == {"NET_ADMIN", "SYS_ADMIN"}
    fib = containers(spec)["fib"]
    assert fib["command"][:2] == ["sartd", "fib"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["run"] == {
        "name": "run",
        "hostPath": {"path": "/run/sart", "type": "DirectoryOrCreate"},
    }
    assert volumes["netns"]["hostPath"]["path"] == "/run/netns"
    netns = [m for m in agent["volumeMounts"] if m["name"] == "netns"]
    assert netns == [
        {"name": "netns", "mountPath": "/run/netns", "mountPropagation": "HostToContainer"}
    ]
    mounts = {m["mountPath"]: volumes[m["name"]]["hostPath"]["path"] for m in init["volumeMounts"]}
    assert mounts == {"/host/opt/cni/bin": "/opt/cni/bin", "/host/etc/cni/net.d": "/etc/cni/net.d"}
    controller = find(rendered["cni"], "Deployment", "sart-controller")
    assert controller["spec"]["template"]["spec"]["hostNetwork"] is True


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_daemon_is_probed_at_its_metrics_port(rendered: dict[str, Any], variant: str) -> None:
    """docs/operations.md's probes, at the port each daemon serves them by default (a command's
    --metrics-address sets only the host), a startup probe before the liveness probe (a slow
    start on busy cores is not a stuck loop), and the node daemons as critical."""
    seen = set()
    for kind, name in (("Deployment", "sart-controller"), ("DaemonSet", "sartd")):
        spec = find(rendered[variant], kind, name)["spec"]["template"]["spec"]
        for container in spec["containers"]:
            command = container["command"]
            daemon = "controller" if command[0] == "sart-controller" else command[1]
            port = METRICS_PORTS[daemon]
            if "--metrics-address" in command:
                address = command[command.index("--metrics-address") + 1]
                assert int(address.rpartition(":")[2]) == port, (daemon, address)
            ports = {p.get("name"): p["containerPort"] for p in container["ports"]}
            probes = (
                ("startupProbe", "/healthz"),
                ("livenessProbe", "/healthz"),
                ("readinessProbe", "/readyz"),
            )
            for probe, path in probes:
                get = container[probe]["httpGet"]
                assert get["path"] == path
                assert ports.get(get["port"], get["port"]) == port
            assert container["resources"]["requests"]
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
            startup = container["startupProbe"]
            assert startup["periodSeconds"] * startup["failureThreshold"] >= 120, startup
            seen.add(daemon)
        if kind == "DaemonSet":
            assert spec["priorityClassName"] == "system-node-critical"
            assert spec["tolerations"] == [{"operator": "Exists"}]
    assert seen == ({"bgp", "agent", "controller", "fib"} if "cni" in variant else
                    {"bgp", "agent", "controller"})  # fmt: skip


def test_the_speaker_starts_with_the_node_address_for_the_agent_to_set(
    rendered: dict[str, Any],
) -> None:
    """No shared configuration file: the router ID is the node's address (downward API) until
    the agent sets the NodeBGP's; the AS a reserved placeholder."""
    spec = find(rendered["base"], "DaemonSet", "sartd")["spec"]["template"]["spec"]
    bgp = containers(spec)["bgp"]
    command = bgp["command"]
    assert command[command.index("--router-id") + 1] == "$(NODE_IP)"
    assert command[command.index("--as") + 1] == "65535"
    assert "-f" not in command
    [env] = bgp["env"]
    assert env == {"name": "NODE_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}
    assert all(o["kind"] != "ConfigMap" for o in rendered["base"])


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_the_speaker_restarts_gracefully_as_in_the_cluster_lab(
    rendered: dict[str, Any], variant: str
) -> None:
    """The speaker runs with the flags under which tests/k8s/test_original_samples.py restarts
    it without a route leaving the spines (graceful restart, End-of-RIB after the agent's first
    sync); the agent needs none (it calls EndOfInitialTable when the speaker holds End-of-RIB)."""
    spec = find(rendered[variant], "DaemonSet", "sartd")["spec"]["template"]["spec"]
    command = containers(spec)["bgp"]["command"]
    assert set(GRACEFUL_RESTART_FLAGS) <= set(command)
    assert not [f for f in command if f.startswith(("--no-graceful", "--no-defer"))]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_the_base_registers_the_webhook_the_controller_serves(
    rendered: dict[str, Any], variant: str
) -> None:
    """The webhook is installed with the rest: the configuration is what the controller's code
    makes, the Service reaches the replicas' webhook port, and the controller keeps the
    certificate of the Secret with rights to that Secret and that configuration only."""
    objects = rendered[variant]
    registered = find(objects, "ValidatingWebhookConfiguration", "sart")
    reference = {"name": "sart-webhook", "namespace": NAMESPACE, "path": webhook.PATH, "port": 443}
    expected = webhook.configuration({"service": reference})
    registered["metadata"].pop("labels")
    assert registered == expected
    deployment = find(objects, "Deployment", "sart-controller")
    service = find(objects, "Service", "sart-webhook")["spec"]
    assert service["selector"] == deployment["spec"]["selector"]["matchLabels"]
    spec = deployment["spec"]["template"]["spec"]
    controller = containers(spec)["controller"]
    command = controller["command"]
    secret = f"{NAMESPACE}/sart-webhook-tls"
    assert command[command.index("--webhook-cert-secret") + 1] == secret
    assert "--no-webhook-cert-keep" not in command  # the leader keeps it
    [port] = [p for p in controller["ports"] if p["name"] == service["ports"][0]["targetPort"]]
    assert command[command.index("--webhook-address") + 1] == f"0.0.0.0:{port['containerPort']}"
    # the Secret is read through the API, not mounted; its pair goes through a /tmp in memory
    in_memory = {"medium": "Memory", "sizeLimit": "1Mi"}
    assert spec["volumes"] == [{"name": "tmp", "emptyDir": in_memory}]
    assert controller["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert controller["securityContext"]["readOnlyRootFilesystem"] is True
    # the controller may touch that Secret and that configuration only (by name)
    role = find(objects, "Role", "sart-controller-webhook-tls")
    assert role["rules"][1]["resourceNames"] == ["sart-webhook-tls"]
    assert find(objects, "ClusterRole", "sart-controller-webhook")["rules"][0]["resourceNames"] == [
        "sart"
    ]


def test_the_cert_manager_component_renders(kubectl: Path) -> None:
    """Only rendered here: the apiserver has no cert-manager kinds (what the controller does
    with it: tests/k8s/test_webhook_certs.py). A CA Issuer signs the serving Certificate, the
    CA is injected by annotation, the controller serves the Secret and keeps nothing."""
    objects = chart.render(kubectl, MANIFESTS, ["webhook-cert-manager"])
    certificate = find(objects, "Certificate", "sart-webhook")
    assert certificate["spec"]["secretName"] == "sart-webhook-tls"
    assert certificate["spec"]["dnsNames"] == list(service_names("sart-webhook", NAMESPACE))
    assert certificate["spec"]["issuerRef"] == {"kind": "Issuer", "name": "sart-webhook-ca"}
    assert find(objects, "Issuer", "sart-webhook-ca")["spec"] == {
        "ca": {"secretName": "sart-webhook-ca"}
    }
    assert find(objects, "Certificate", "sart-webhook-ca")["spec"]["isCA"] is True
    registered = find(objects, "ValidatingWebhookConfiguration", "sart")
    annotations = registered["metadata"]["annotations"]
    assert annotations["cert-manager.io/inject-ca-from"] == f"{NAMESPACE}/sart-webhook"
    spec = find(objects, "Deployment", "sart-controller")["spec"]["template"]["spec"]
    command = containers(spec)["controller"]["command"]
    assert command[command.index("--webhook-cert-secret") + 1] == f"{NAMESPACE}/sart-webhook-tls"
    assert "--no-webhook-cert-keep" in command
    role = find(objects, "Role", "sart-controller-webhook-tls")
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["sart-webhook-tls"],
         "verbs": ["get", "list", "watch"]}
    ]  # fmt: skip
    assert "sart-controller-webhook" not in {o["metadata"]["name"] for o in objects}


def dry_run_apply(
    kubectl: Path, plane: ControlPlane, objects: list[dict[str, Any]]
) -> subprocess.CompletedProcess[str]:
    documents = "---\n".join(yaml.safe_dump(o) for o in objects)
    return subprocess.run(
        [kubectl, "--kubeconfig", plane.kubeconfig, "apply", "--server-side", "--force-conflicts",
         "--field-manager", "sart-test-manifests", "--dry-run=server", "-o", "json", "-f", "-"],
        input=documents, capture_output=True, text=True, check=False,
    )  # fmt: skip


def pod_of(workload: dict[str, Any], namespace: str) -> dict[str, Any]:
    template = workload["spec"]["template"]
    metadata = {**template["metadata"], "name": f"{workload['metadata']['name']}-x"}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {**metadata, "namespace": namespace},
        "spec": template["spec"],
    }


@pytest.mark.asyncio
@pytest.mark.parametrize("variant", list(VARIANTS))
async def test_the_apiserver_accepts_every_rendered_object(
    rendered: dict[str, Any],
    kubectl: Path,
    control_plane: ControlPlane,
    k8s: Any,
    variant: str,
) -> None:
    """Server-side apply, dry run, of everything `kubectl apply -k` sends (CRDs, RBAC, the
    workloads, the webhook), then of the Pods the workloads would make: the apiserver's
    validation and admission (Pod Security at the namespace's level, priority classes, service
    accounts) accept them. sart-system and its accounts are created for real first (what the
    RBAC tests apply): namespaced objects need their namespace to exist even in a dry run."""
    await apply_shipped_rbac(k8s)
    objects = rendered[variant]
    applied = dry_run_apply(kubectl, control_plane, objects)
    assert applied.returncode == 0, applied.stderr
    assert "Warning" not in applied.stderr, applied.stderr
    answered = json.loads(applied.stdout)
    items = answered["items"] if answered["kind"] == "List" else [answered]
    assert sorted((i["kind"], i["metadata"]["name"]) for i in items) == sorted(
        (o["kind"], o["metadata"]["name"]) for o in objects
    )
    pods = [
        pod_of(find(objects, "Deployment", "sart-controller"), NAMESPACE),
        pod_of(find(objects, "DaemonSet", "sartd"), NAMESPACE),
    ]
    admitted = dry_run_apply(kubectl, control_plane, pods)
    assert admitted.returncode == 0, admitted.stderr
    assert "Warning" not in admitted.stderr, admitted.stderr
    # The dry run validates: a broken probe is refused.
    broken = copy.deepcopy(find(objects, "DaemonSet", "sartd"))
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["port"] = 0
    refused = dry_run_apply(kubectl, control_plane, [broken])
    assert refused.returncode != 0
    assert "livenessProbe.httpGet.port" in refused.stderr


@pytest.mark.asyncio
async def test_the_controller_pod_is_admitted_as_restricted(
    rendered: dict[str, Any], kubectl: Path, control_plane: ControlPlane, k8s: Any, namespace: str
) -> None:
    """The controller's Pod (without the CNI component's changes too) passes the restricted
    Pod Security level; the node daemons' Pod is refused there (host network, root, and with
    the CNI component host paths): sart-system is privileged for them."""
    core = CoreV1Api(k8s)
    await core.patch_namespace(
        namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}
    )
    for account in ("sart-controller", "sart-agent"):
        await core.create_namespaced_service_account(namespace, {"metadata": {"name": account}})
    for variant in VARIANTS:
        objects = rendered[variant]
        controller = pod_of(find(objects, "Deployment", "sart-controller"), namespace)
        admitted = dry_run_apply(kubectl, control_plane, [controller])
        if "cni" in variant:  # on the host network: refused, as it should be
            assert admitted.returncode != 0
            assert "hostNetwork" in admitted.stderr
        else:
            assert admitted.returncode == 0, (variant, admitted.stderr)
            assert "Warning" not in admitted.stderr, admitted.stderr
        node = pod_of(find(objects, "DaemonSet", "sartd"), namespace)
        refused = dry_run_apply(kubectl, control_plane, [node])
        assert refused.returncode != 0
        assert "violates PodSecurity" in refused.stderr
