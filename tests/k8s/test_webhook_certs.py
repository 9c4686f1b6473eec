"""The webhook's certificate kept by the controller (sart.k8s.runtime.certs) with the real
apiserver, the shipped Service, configuration and RBAC (components/webhook): from an empty
cluster the leader makes the Secret and patches the caBundle, and the apiserver then calls the
webhook through the Service by its DNS name; a certificate near expiry is replaced while the
apiserver keeps calling; a second replica serves the same certificate and writes nothing.

The apiserver calls a webhook Service at its ClusterIP (no kube-proxy here): the test puts
that address on the loopback interface and the first replica listens there on the Service's
port, as a Pod behind the Service would."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from kubernetes_asyncio.client import (
    AdmissionregistrationV1Api,
    ApiClient,
    CoreV1Api,
    CustomObjectsApi,
)
from kubernetes_asyncio.client.exceptions import ApiException
from test_webhook import create_pool, free_port

from sart.k8s import certs
from sart.k8s.models import GROUP, VERSION
from sart.k8s.runtime import MERGE, webhook
from sart.k8s.runtime.certs import WebhookCertificates
from sart.testing.controlplane import unique_name
from sart.testing.crds import apply_crds
from sart.testing.rbac import NAMESPACE, RBAC, account_configuration, apply_shipped_rbac
from waiting import until

pytestmark = [pytest.mark.k8s, pytest.mark.asyncio]

COMPONENT = Path(__file__).resolve().parents[2] / "manifests" / "components" / "webhook"
SECRET = "sart-webhook-tls"
NAMES = certs.service_names("sart-webhook", NAMESPACE)


def shipped(kind: str) -> dict[str, Any]:
    [found] = [
        d for d in yaml.safe_load_all((COMPONENT / "webhook.yaml").read_text()) if d["kind"] == kind
    ]
    return found


class Replica:
    """One controller replica's certificate part, on a client with the shipped account's
    token: `follow` always (it serves), `keep` when it leads."""

    def __init__(self, api: ApiClient, host: str, port: int, *, leads: bool) -> None:
        self.host, self.port = host, port
        self.certificates = WebhookCertificates(
            api,
            namespace=NAMESPACE,
            secret=SECRET,
            names=NAMES,
            configuration="sart",
            context=webhook.server_context(),
        )
        self.runners: list[Any] = []
        self.tasks = [asyncio.create_task(self.certificates.follow(self._serve))]
        if leads:
            self.tasks.append(asyncio.create_task(self.certificates.keep()))
        self._api = api

    async def _serve(self) -> None:
        self.runners.append(await webhook.serve(self._api, self.host, self.port,
                                                self.certificates.context))  # fmt: skip

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for runner in self.runners:
            await runner.cleanup()

    async def served(self, ca: bytes) -> bytes:
        """The certificate it serves (DER), verified as the apiserver does: by the CA bundle
        and the Service's name."""
        context = ssl.create_default_context(cadata=ca.decode())
        _, writer = await asyncio.open_connection(
            self.host, self.port, ssl=context, server_hostname=NAMES[0]
        )
        der: bytes = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        writer.close()
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            await writer.wait_closed()
        return der


def der(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


@pytest_asyncio.fixture
async def installed(k8s: Any) -> AsyncIterator[str]:
    """The webhook component's Service, configuration (caBundle empty) and RBAC; the Service's
    ClusterIP on lo. Yields the ClusterIP."""
    await apply_crds(k8s)
    await apply_shipped_rbac(k8s, (*RBAC, COMPONENT / "rbac.yaml"))
    core, admission = CoreV1Api(k8s), AdmissionregistrationV1Api(k8s)
    service = await core.create_namespaced_service(NAMESPACE, shipped("Service"))
    address = service.spec.cluster_ip
    subprocess.run(["ip", "addr", "add", f"{address}/32", "dev", "lo"], check=True)
    configuration = shipped("ValidatingWebhookConfiguration")
    assert "caBundle" not in configuration["webhooks"][0]["clientConfig"]
    await admission.create_validating_webhook_configuration(configuration)
    try:
        yield address
    finally:
        await admission.delete_validating_webhook_configuration("sart")
        subprocess.run(["ip", "addr", "del", f"{address}/32", "dev", "lo"], check=True)
        await core.delete_namespaced_service("sart-webhook", NAMESPACE)
        with contextlib.suppress(ApiException):
            await core.delete_namespaced_secret(SECRET, NAMESPACE)


async def secret_data(core: CoreV1Api) -> dict[str, bytes]:
    try:
        secret = await core.read_namespaced_secret(SECRET, NAMESPACE)
    except ApiException as error:
        if error.status == 404:
            return {}
        raise
    assert secret.type == "kubernetes.io/tls"
    return {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}


async def bundle(admission: AdmissionregistrationV1Api) -> bytes:
    configuration = await admission.read_validating_webhook_configuration("sart")
    [ours] = configuration.webhooks
    return base64.b64decode(ours.client_config.ca_bundle or "")


async def called(custom: Any, cidr: str) -> None:
    """The apiserver calls the webhook: a bad AddressPool (a second autoAssign pool) is
    refused with the webhook's reason (422), a good one accepted."""
    with pytest.raises(ApiException) as refused:
        await create_pool(custom, unique_name("second"), cidr, autoAssign=True)
    assert refused.value.status == 422
    assert "is already the autoAssign pool of type service for IPv4" in str(refused.value.body)


async def test_the_controller_makes_rotates_and_serves_the_certificate(
    k8s: Any, installed: str
) -> None:
    core, admission, custom = CoreV1Api(k8s), AdmissionregistrationV1Api(k8s), CustomObjectsApi(k8s)
    assert await secret_data(core) == {}
    configuration = await account_configuration(k8s, "sart-controller")
    pool = unique_name("auto")
    async with ApiClient(configuration) as leader_api, ApiClient(configuration) as standby_api:
        leader = Replica(leader_api, installed, 443, leads=True)
        standby = Replica(standby_api, "127.0.0.1", free_port(), leads=False)
        try:
            # from nothing: the Secret is made and its CA patched into the configuration
            data = await until(lambda: secret_data(core), 30)
            assert certs.decide(data, NAMES, datetime.datetime.now(datetime.UTC)).renew is (
                certs.Renew.NOTHING
            )
            await until(lambda: bundle_is(admission, data[certs.CA_CERT]), 30)
            # the apiserver calls the webhook (its configuration reaches it within a moment)
            await until(lambda: _created(custom, pool, "10.130.0.0/24"), 30)
            await called(custom, "10.131.0.0/24")
            for replica in (leader, standby):
                await until(lambda r=replica: r.certificates.served == data[certs.TLS_CERT], 30)
                assert await replica.served(data[certs.CA_CERT]) == der(data[certs.TLS_CERT])
            assert (leader.certificates.renewals, standby.certificates.renewals) == (1, 0)

            # a serving certificate near expiry (made here, by the same CA) is replaced
            now = datetime.datetime.now(datetime.UTC)
            ca = x509.load_pem_x509_certificate(data[certs.CA_CERT])
            ca_key = serialization.load_pem_private_key(data[certs.CA_KEY], None)
            assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
            near, near_key = certs.issue_serving(ca, ca_key, NAMES, now, datetime.timedelta(days=3))
            expiring = certs.secret_data(ca, ca_key, near, near_key)
            body = {"data": {k: base64.b64encode(v).decode() for k, v in expiring.items()}}
            await core.patch_namespaced_secret(SECRET, NAMESPACE, body, **MERGE)

            async def renewed() -> dict[str, bytes] | None:
                fresh = await secret_data(core)
                kept = fresh[certs.TLS_CERT] not in (data[certs.TLS_CERT], expiring[certs.TLS_CERT])
                return fresh if kept else None

            rotated = await until(renewed, 30)
            assert rotated[certs.CA_CERT] == data[certs.CA_CERT]  # the same CA: no new bundle
            assert await bundle(admission) == data[certs.CA_CERT]
            for replica in (leader, standby):
                await until(lambda r=replica: r.certificates.served == rotated[certs.TLS_CERT], 30)
                assert await replica.served(rotated[certs.CA_CERT]) == der(rotated[certs.TLS_CERT])
            await called(custom, "10.132.0.0/24")
            assert (leader.certificates.renewals, standby.certificates.renewals) == (2, 0)
        finally:
            await leader.stop()
            await standby.stop()
            with contextlib.suppress(ApiException):
                await custom.delete_cluster_custom_object(GROUP, VERSION, "addresspools", pool)


async def bundle_is(admission: AdmissionregistrationV1Api, expected: bytes) -> bool:
    return await bundle(admission) == expected


async def _created(custom: Any, name: str, cidr: str) -> bool:
    try:
        await create_pool(custom, name, cidr, autoAssign=True)
    except ApiException as error:
        if error.status == 500:  # the apiserver could not call the webhook (yet)
            return False
        raise
    return True
