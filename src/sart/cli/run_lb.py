"""What `sart lb list` reads from the cluster (imported only when it runs: the Kubernetes
client and the controller's views of a Service)."""

from __future__ import annotations

import asyncio
from typing import Any

import click
from kubernetes_asyncio import config as kube_config
from kubernetes_asyncio.client import ApiClient, CoreV1Api, CustomObjectsApi
from kubernetes_asyncio.client.exceptions import ApiException
from netaddr import IPAddress, IPNetwork

from sart.k8s.models import GROUP, VERSION
from sart.k8s.reconcile.loadbalancer import is_ours
from sart.k8s.runtime.controller import SERVICE_LABEL, service_view


def read_rows(kubeconfig: str | None) -> list[dict[str, Any]]:
    """One row per LoadBalancer address; click's error when the cluster cannot be read."""
    try:
        return asyncio.run(_rows(kubeconfig))
    except (ApiException, OSError) as error:
        raise click.ClickException(f"cannot read the cluster: {error}") from None


async def _rows(kubeconfig: str | None) -> list[dict[str, Any]]:
    await kube_config.load_kube_config(config_file=kubeconfig)
    async with ApiClient() as api:
        core, custom = CoreV1Api(api), CustomObjectsApi(api)
        services = (await core.list_service_for_all_namespaces()).items
        pools = (await custom.list_cluster_custom_object(GROUP, VERSION, "addresspools"))["items"]
        ads = await custom.list_cluster_custom_object(
            GROUP, VERSION, "bgpadvertisements", label_selector=SERVICE_LABEL
        )
    nodes: dict[str, list[str]] = {}
    for ad in ads["items"]:
        meta = ad["metadata"]
        announced = str(IPNetwork(ad["spec"]["cidr"]).ip)
        key = f"{meta['namespace']}/{meta['labels'][SERVICE_LABEL]}/{announced}"
        nodes[key] = list(ad["spec"].get("nodes") or [])
    cidrs = [(p["metadata"]["name"], IPNetwork(p["spec"]["cidr"])) for p in pools]
    rows = []
    for service in services:
        view = service_view(api.sanitize_for_serialization(service))
        if not is_ours(view):
            continue
        for text in view.ingress or ("",):
            address = IPAddress(text) if text else None
            pool = next(
                (n for n, c in cidrs if address is not None and address.version == c.version
                 and address in c), "",
            )  # fmt: skip
            rows.append(
                {
                    "address": text or "<pending>",
                    "in_use": bool(text),
                    "namespace": view.namespace,
                    "service": view.name,
                    "pool": pool,
                    "policy": view.external_traffic_policy,
                    "nodes": nodes.get(f"{view.key}/{text}", []),
                }
            )
    return sorted(rows, key=lambda r: (r["address"] == "<pending>", r["address"]))
