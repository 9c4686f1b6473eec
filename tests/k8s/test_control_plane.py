"""The test control plane itself: it serves, CRDs work, the real endpointslice controller
reacts to fake nodes and pods, the build is cached, and nothing outlives a stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from sart.testing.controlplane import (
    BIN_DIR_ENV,
    BINARIES,
    BUILD_SCRIPT,
    ControlPlane,
    create_node,
    create_ready_pod,
    unique_name,
    wait_until,
)

pytestmark = pytest.mark.k8s

MERGE_PATCH = "application/merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


def _alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie (an orphan waiting for init)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _listening(server: str) -> bool:
    host, port = server.removeprefix("https://").rsplit(":", 1)
    with socket.socket() as sock:
        return sock.connect_ex((host, int(port))) == 0


def _wait_gone(pids: list[int], directory: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(_alive(pid) for pid in pids) and not directory.exists():
            return
        time.sleep(0.1)
    left = [pid for pid in pids if _alive(pid)]
    pytest.fail(f"left behind after {timeout} s: pids {left}, directory {directory.exists()}")


@pytest.mark.asyncio
async def test_serves_the_pinned_version_with_controllers(k8s: Any, namespace: str) -> None:
    version = await client.VersionApi(k8s).get_code()
    assert version.git_version == "v1.34.4"
    core = client.CoreV1Api(k8s)
    # The controller-manager is running: the root CA is published into every namespace.
    config_map = await wait_until(
        lambda: _read_or_none(core.read_namespaced_config_map("kube-root-ca.crt", namespace)),
        what="kube-root-ca.crt",
    )
    assert "BEGIN CERTIFICATE" in config_map.data["ca.crt"]
    # RBAC is on and service-account tokens are minted by the apiserver.
    token = await core.create_namespaced_service_account_token(
        "default",
        namespace,
        client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[])),
    )
    assert token.status.token.count(".") == 2
    review = await client.AuthorizationV1Api(k8s).create_subject_access_review(
        {
            "spec": {
                "user": f"system:serviceaccount:{namespace}:default",
                "resourceAttributes": {"verb": "list", "resource": "namespaces"},
            }
        }
    )
    assert review.status.allowed is False


async def _read_or_none(call: Any) -> Any:
    try:
        return await call
    except ApiException as error:
        if error.status == 404:
            return None
        raise


@pytest.mark.asyncio
async def test_a_crd_is_applied_and_served(k8s: Any, namespace: str) -> None:
    group = f"t{uuid.uuid4().hex[:8]}.sart.test"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "required": ["cidr"],
                                    "properties": {"cidr": {"type": "string"}},
                                    "x-kubernetes-validations": [
                                        {"rule": "isCIDR(self.cidr)", "message": "not a CIDR"}
                                    ],
                                },
                                "status": {
                                    "type": "object",
                                    "properties": {"ready": {"type": "boolean"}},
                                },
                            },
                        }
                    },
                }
            ],
        },
    }
    extensions = client.ApiextensionsV1Api(k8s)
    # Server-side apply, as sart's controllers will do it.
    await extensions.patch_custom_resource_definition(
        f"widgets.{group}",
        crd,
        field_manager="sart-tests",
        force=True,
        _content_type=APPLY_PATCH,
    )
    try:

        async def established() -> bool:
            found = await extensions.read_custom_resource_definition(f"widgets.{group}")
            conditions = found.status.conditions or []
            return any(c.type == "Established" and c.status == "True" for c in conditions)

        await wait_until(established, what="CRD Established")
        custom = client.CustomObjectsApi(k8s)
        body = {
            "apiVersion": f"{group}/v1",
            "kind": "Widget",
            "metadata": {"name": "w1"},
            "spec": {"cidr": "10.1.0.0/24"},
        }
        await custom.create_namespaced_custom_object(group, "v1", namespace, "widgets", body)
        await custom.patch_namespaced_custom_object_status(
            group,
            "v1",
            namespace,
            "widgets",
            "w1",
            {"status": {"ready": True}},
            _content_type=MERGE_PATCH,
        )
        listed = await custom.list_namespaced_custom_object(group, "v1", namespace, "widgets")
        assert [(w["spec"]["cidr"], w["status"]["ready"]) for w in listed["items"]] == [
            ("10.1.0.0/24", True)
        ]
        bad = {**body, "metadata": {"name": "w2"}, "spec": {"cidr": "nonsense"}}
        with pytest.raises(ApiException) as rejected:
            await custom.create_namespaced_custom_object(group, "v1", namespace, "widgets", bad)
        assert rejected.value.status == 422
        assert "not a CIDR" in rejected.value.body
    finally:
        await extensions.delete_custom_resource_definition(f"widgets.{group}")


@pytest.mark.asyncio
async def test_a_service_over_a_ready_pod_gets_a_real_endpointslice(
    k8s: Any, namespace: str
) -> None:
    core = client.CoreV1Api(k8s)
    node_name = unique_name("node")
    await create_node(
        k8s,
        node_name,
        addresses=["192.0.2.11", ("Hostname", node_name)],
        labels={"bgp": "a"},
    )
    try:
        node = await core.read_node(node_name)
        assert node.metadata.labels["bgp"] == "a"
        assert [(a.type, a.address) for a in node.status.addresses] == [
            ("InternalIP", "192.0.2.11"),
            ("Hostname", node_name),
        ]
        assert [(c.type, c.status) for c in node.status.conditions] == [("Ready", "True")]

        pod = await create_ready_pod(
            k8s,
            namespace,
            "web-0",
            node=node_name,
            ips=["10.244.0.5"],
            labels={"app": "web"},
            ports={"http": 8080},
            host_ip="192.0.2.11",
        )
        assert pod.status.phase == "Running"
        await core.create_namespaced_service(
            namespace,
            client.V1Service(
                metadata=client.V1ObjectMeta(name="web"),
                spec=client.V1ServiceSpec(
                    type="LoadBalancer",
                    selector={"app": "web"},
                    ports=[client.V1ServicePort(name="http", port=80, target_port="http")],
                ),
            ),
        )
        discovery = client.DiscoveryV1Api(k8s)

        async def endpoint_slice() -> Any:
            slices = await discovery.list_namespaced_endpoint_slice(
                namespace, label_selector="kubernetes.io/service-name=web"
            )
            return next((s for s in slices.items if s.endpoints), None)

        found = await wait_until(endpoint_slice, what="EndpointSlice for web")
        assert found.metadata.labels["endpointslice.kubernetes.io/managed-by"] == (
            "endpointslice-controller.k8s.io"
        )
        assert found.address_type == "IPv4"
        assert [(p.name, p.port) for p in found.ports] == [("http", 8080)]
        [endpoint] = found.endpoints
        assert endpoint.addresses == ["10.244.0.5"]
        assert endpoint.conditions.ready is True
        assert endpoint.node_name == node_name
        assert endpoint.target_ref.name == "web-0"
    finally:
        await core.delete_node(node_name)


def test_a_second_build_reuses_the_cached_binaries(control_plane: ControlPlane) -> None:
    if os.environ.get(BIN_DIR_ENV):
        pytest.skip(f"binaries come from ${BIN_DIR_ENV}, not from the build cache")
    before = {name: (control_plane.bin_dir / name).stat().st_mtime_ns for name in BINARIES}
    began = time.monotonic()
    built = subprocess.run(
        [str(BUILD_SCRIPT), "build"], capture_output=True, text=True, check=True, timeout=60
    )
    took = time.monotonic() - began
    assert "cached:" in built.stderr, built.stderr
    assert took < 10
    after = {name: (control_plane.bin_dir / name).stat().st_mtime_ns for name in BINARIES}
    assert after == before
    where = subprocess.run(
        [str(BUILD_SCRIPT), "bin-dir"], capture_output=True, text=True, check=True
    )
    assert Path(where.stdout.strip()) == control_plane.bin_dir


def test_stop_leaves_no_process_and_no_file(
    control_plane: ControlPlane, k8s_report: Callable[[str], None]
) -> None:
    second = ControlPlane()  # the binaries are found in the cache again, not rebuilt
    with pytest.raises(RuntimeError, match="a failing test"), second:
        k8s_report(f"second start (stop test): ready in {second.times}")
        pids = list(second.pids.values())
        directory, server = second.directory, second.server
        assert all(_alive(pid) for pid in pids)
        assert directory.is_dir() and _listening(server)
        raise RuntimeError("a failing test")
    assert not [pid for pid in pids if _alive(pid)]
    assert not directory.exists()
    assert not _listening(server)
    assert control_plane.exited() == []  # the session's plane is untouched


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "sigkill"])
def test_the_foreground_command_leaves_nothing_when_stopped(
    signum: signal.Signals, k8s_report: Callable[[str], None]
) -> None:
    command = subprocess.Popen(
        [sys.executable, "-m", "sart.testing.controlplane"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert command.stdout is not None
        printed: dict[str, str] = {}
        for line in command.stdout:
            key, _, value = line.partition(":")
            printed[key.strip()] = value.strip()
            if key == "kubeconfig":
                break
        assert "kubeconfig" in printed, command.stderr.read() if command.stderr else ""
        k8s_report(f"foreground command, stopped by {signum.name}: ready in {printed['ready']}")
    finally:
        command.send_signal(signum)
        try:
            command.wait(timeout=30)
        except subprocess.TimeoutExpired:
            command.kill()  # its reaper then stops the control plane
            raise
    kubeconfig = Path(printed["kubeconfig"])
    pids = [int(p.split()[-1]) for p in printed["pids"].split(",")]
    assert len(pids) == 4  # etcd, kube-apiserver, kube-controller-manager, the reaper
    # Ctrl-C: the command stops everything itself; SIGKILL: the reaper notices and does it.
    _wait_gone(pids, kubeconfig.parent, timeout=15)
