"""The shipped RBAC (manifests/deploy/namespace.yaml and rbac.yaml) applied to a test control
plane, and a client configuration holding a token of one of its ServiceAccounts: tests run the
controller and the agent with exactly the rights users install."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from kubernetes_asyncio.client import (
    ApiClient,
    Configuration,
    CoreV1Api,
    RbacAuthorizationV1Api,
)
from kubernetes_asyncio.client.exceptions import ApiException

DEPLOY = Path(__file__).resolve().parents[3] / "manifests" / "deploy"
RBAC = (DEPLOY / "namespace.yaml", DEPLOY / "rbac.yaml")
NAMESPACE = "sart-system"


async def apply_shipped_rbac(api: ApiClient, paths: tuple[Path, ...] = RBAC) -> None:
    """The namespace, ServiceAccounts and roles of the manifests, as they are now (roles that
    exist already are replaced, so a test sees the current rules)."""
    core, rbac = CoreV1Api(api), RbacAuthorizationV1Api(api)
    documents = [d for path in paths for d in yaml.safe_load_all(path.read_text())]
    for document in documents:
        kind, name = document["kind"], document["metadata"]["name"]
        create: Any = {
            "Namespace": core.create_namespace,
            "ServiceAccount": lambda d: core.create_namespaced_service_account(NAMESPACE, d),
            "ClusterRole": rbac.create_cluster_role,
            "ClusterRoleBinding": rbac.create_cluster_role_binding,
            "Role": lambda d: rbac.create_namespaced_role(NAMESPACE, d),
            "RoleBinding": lambda d: rbac.create_namespaced_role_binding(NAMESPACE, d),
        }.get(kind)
        if create is None:
            continue
        try:
            await create(document)
        except ApiException as error:
            if error.status != 409:
                raise
            if kind == "ClusterRole":
                await rbac.replace_cluster_role(name, document)
            elif kind == "Role":
                await rbac.replace_namespaced_role(name, NAMESPACE, document)


async def account_configuration(api: ApiClient, account: str) -> Configuration:
    """A client configuration for the same apiserver with a token of `account` (in
    sart-system), valid for an hour."""
    request: Any = {"spec": {"expirationSeconds": 3600}}
    token = await CoreV1Api(api).create_namespaced_service_account_token(
        account, NAMESPACE, request
    )
    admin = api.configuration
    configuration = Configuration(host=admin.host)
    configuration.ssl_ca_cert = admin.ssl_ca_cert
    configuration.api_key = {"BearerToken": token.status.token}
    configuration.api_key_prefix = {"BearerToken": "Bearer"}
    return configuration
