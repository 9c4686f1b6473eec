"""Apply the CRDs in manifests/crd to a (test) apiserver and wait until they are served."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import yaml
from kubernetes_asyncio.client import ApiClient, ApiextensionsV1Api, CustomObjectsApi
from kubernetes_asyncio.client.exceptions import ApiException

CRD_DIR = Path(
    os.environ.get("SART_CRD_DIR", Path(__file__).resolve().parents[3] / "manifests" / "crd")
)


def crd_documents(directory: Path = CRD_DIR) -> list[dict[str, Any]]:
    documents = []
    for path in sorted(directory.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document and document.get("kind") == "CustomResourceDefinition":
                documents.append(document)
    if not documents:
        raise FileNotFoundError(f"no CustomResourceDefinition in {directory}")
    return documents


async def apply_crds(api: ApiClient, directory: Path = CRD_DIR, timeout: float = 30.0) -> None:
    """Create or replace every CRD, then wait until each is Established and its objects can
    be listed (right after a CRD is established its storage may still answer 429)."""
    extensions = ApiextensionsV1Api(api)
    names = []
    document: Any
    kinds = []
    for document in crd_documents(directory):
        name = document["metadata"]["name"]
        names.append(name)
        spec = document["spec"]
        kinds.append((spec["group"], spec["versions"][0]["name"], spec["names"]["plural"]))
        try:
            current = await extensions.read_custom_resource_definition(name)
            document["metadata"]["resourceVersion"] = current.metadata.resource_version
            await extensions.replace_custom_resource_definition(name, document)
        except ApiException as error:
            if error.status != 404:
                raise
            await extensions.create_custom_resource_definition(document)
    deadline = time.monotonic() + timeout
    for name in names:
        while True:
            crd = await extensions.read_custom_resource_definition(name)
            conditions = crd.status.conditions or []
            if any(c.type == "Established" and c.status == "True" for c in conditions):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"CRD {name} not established in {timeout} s")
            await asyncio.sleep(0.05)
    custom = CustomObjectsApi(api)
    for group, version, plural in kinds:
        while True:
            try:
                await custom.list_cluster_custom_object(group, version, plural, limit=1)
                break
            except ApiException as error:
                if error.status not in (404, 429, 503) or time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.05)
