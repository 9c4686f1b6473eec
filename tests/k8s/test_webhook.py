"""The validating webhook, registered with the real apiserver: rules across objects refused
with a clear message, and nothing but our kinds ever blocked when the webhook is down."""

from __future__ import annotations

import base64
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from kubernetes_asyncio.client import AdmissionregistrationV1Api, CoreV1Api, CustomObjectsApi
from kubernetes_asyncio.client.exceptions import ApiException

from sart.k8s.models import GROUP, VERSION
from sart.k8s.runtime import webhook
from sart.testing.controlplane import ControlPlane, unique_name
from sart.testing.crds import apply_crds

pytestmark = [pytest.mark.k8s, pytest.mark.asyncio]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest_asyncio.fixture
async def registered(k8s: Any, control_plane: ControlPlane) -> AsyncIterator[Any]:
    """The webhook served in this process with the control plane's 127.0.0.1 certificate, and
    registered with the apiserver."""
    await apply_crds(k8s)
    port = free_port()
    directory = control_plane.directory
    context = webhook.server_context()
    context.load_cert_chain(directory / "apiserver.crt", directory / "apiserver.key")
    runner = await webhook.serve(k8s, "127.0.0.1", port, context)
    ca = base64.b64encode((directory / "ca.crt").read_bytes()).decode()
    name = unique_name("sart-webhook")
    config = webhook.configuration(
        {"url": f"https://127.0.0.1:{port}{webhook.PATH}", "caBundle": ca}, name
    )
    admission = AdmissionregistrationV1Api(k8s)
    await admission.create_validating_webhook_configuration(config)
    try:
        yield runner
    finally:
        await runner.cleanup()
        await admission.delete_validating_webhook_configuration(name)


async def create_pool(custom: CustomObjectsApi, name: str, cidr: str, **spec: Any) -> None:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "AddressPool",
        "metadata": {"name": name},
        "spec": {"cidr": cidr, "type": "service", **spec},
    }
    await custom.create_cluster_custom_object(GROUP, VERSION, "addresspools", body)


async def test_rules_across_objects_and_scope(k8s: Any, registered: Any, namespace: str) -> None:
    custom = CustomObjectsApi(k8s)
    first, second, third = (unique_name(n) for n in ("auto", "second-auto", "overlap"))
    await create_pool(custom, first, "10.120.0.0/24", autoAssign=True)
    try:
        with pytest.raises(ApiException) as refused:
            await create_pool(custom, second, "10.121.0.0/24", autoAssign=True)
        assert refused.value.status == 422
        assert (
            f"AddressPool {first} is already the autoAssign pool of type service for IPv4"
            in str(refused.value.body)
        )
        with pytest.raises(ApiException) as overlapping:
            await create_pool(custom, third, "10.120.0.128/25")
        assert f"cidr 10.120.0.128/25 overlaps AddressPool {first}" in str(overlapping.value.body)
        await create_pool(custom, third, "10.122.0.0/24")  # fine
        await custom.delete_cluster_custom_object(GROUP, VERSION, "addresspools", third)
        # the webhook goes down: our kinds are blocked (failurePolicy Fail), nothing else is
        await registered.cleanup()
        with pytest.raises(ApiException):
            await create_pool(custom, third, "10.123.0.0/24")
        service = {
            "metadata": {"name": "unaffected"},
            "spec": {"type": "ClusterIP", "ports": [{"port": 80}]},
        }
        await CoreV1Api(k8s).create_namespaced_service(namespace, service)
    finally:
        await custom.delete_cluster_custom_object(GROUP, VERSION, "addresspools", first)
