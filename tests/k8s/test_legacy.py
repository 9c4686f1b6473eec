"""Switching from the original sart: objects carrying its finalizers are released when deleted
(a Service, a Node, a ClusterBGP, a namespaced BGPAdvertisement), and left alone otherwise; so
is a Service carrying the finalizer earlier versions of sart-controller wrote."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kubernetes_asyncio.client import CoreV1Api, CustomObjectsApi
from kubernetes_asyncio.client.exceptions import ApiException

from sart.k8s.models import GROUP, VERSION
from sart.k8s.runtime.legacy import LegacyFinalizers
from sart.testing.controlplane import create_node, unique_name
from sart.testing.crds import apply_crds
from waiting import until

pytestmark = [pytest.mark.k8s, pytest.mark.asyncio]


async def _gone(call: Any) -> bool:
    try:
        await call()
    except ApiException as error:
        return error.status == 404
    return False


async def test_deletes_never_hang_on_the_originals_finalizers(k8s: Any, namespace: str) -> None:
    await apply_crds(k8s)
    core, custom = CoreV1Api(k8s), CustomObjectsApi(k8s)
    await core.create_namespaced_service(namespace, {
        "metadata": {"name": "old", "finalizers": ["service.sart.terassyi.net/finalizer"]},
        "spec": {"ports": [{"port": 80}]}})  # fmt: skip
    await core.create_namespaced_service(namespace, {
        "metadata": {"name": "live", "finalizers": ["service.sart.terassyi.net/finalizer"]},
        "spec": {"ports": [{"port": 80}]}})  # fmt: skip
    await core.create_namespaced_service(namespace, {
        "metadata": {"name": "earlier", "finalizers": ["sart.terassyi.net/finalizer"]},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}})  # fmt: skip
    node = unique_name("old-node")
    await create_node(k8s, node)
    await core.patch_node(node, {"metadata": {"finalizers": ["node.sart.terassyi.net/finalizer"]}})
    cluster_bgp = unique_name("old-cb")
    await custom.create_cluster_custom_object(GROUP, VERSION, "clusterbgps", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ClusterBGP",
        "metadata": {"name": cluster_bgp, "finalizers": ["clusterbgp.sart.terassyi.net/finalizer"]},
        "spec": {"asnSelector": {"from": "asn", "asn": 65000},
                 "routerIdSelector": {"from": "internalAddress"},
                 "speaker": {"path": "127.0.0.1:5000"},
                 "nodeSelector": {"none": "none"}}})  # fmt: skip
    await custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "bgpadvertisements", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "BGPAdvertisement",
        "metadata": {"name": "old-adv",
                     "finalizers": ["bgpadvertisement.sart.terassyi.net/finalizer"]},
        "spec": {"cidr": "10.0.1.0/32", "type": "service", "protocol": "ipv4"}})  # fmt: skip
    await core.delete_namespaced_service("old", namespace)
    await core.delete_namespaced_service("earlier", namespace)
    await core.delete_node(node)
    await custom.delete_cluster_custom_object(GROUP, VERSION, "clusterbgps", cluster_bgp)
    await custom.delete_namespaced_custom_object(
        GROUP, VERSION, namespace, "bgpadvertisements", "old-adv"
    )
    releaser = LegacyFinalizers(k8s)
    task = asyncio.create_task(releaser.run())
    try:
        for call in (
            lambda: core.read_namespaced_service("old", namespace),
            lambda: core.read_namespaced_service("earlier", namespace),
            lambda: core.read_node(node),
            lambda: custom.get_cluster_custom_object(GROUP, VERSION, "clusterbgps", cluster_bgp),
            lambda: custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, "bgpadvertisements", "old-adv"),
        ):  # fmt: skip
            await until(lambda call=call: _gone(call), 20)
        live = await core.read_namespaced_service("live", namespace)
        assert live.metadata.finalizers == ["service.sart.terassyi.net/finalizer"]  # untouched
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        patch = {"metadata": {"finalizers": None}}
        await core.patch_namespaced_service("live", namespace, patch)
