"""The webhook's certificate kept by the controller (sart.k8s.runtime.certs) with the real
apiserver, the shipped Service, configuration and RBAC (manifests/deploy): from an empty
cluster the leader makes the Secret and patches the caBundle, and the apiserver then calls the
webhook through the Service by its DNS name; a certificate near expiry is replaced by a new CA
and serving certificate while the apiserver keeps calling, and a replica still serving the old
certificate stays trusted; the Secret never holds the CA's key, and one written by an earlier
sart (with ca.key) is taken over; a second replica serves the same certificate and writes
nothing.

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
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from kubernetes_asyncio.client import (
    AdmissionregistrationV1Api,
    ApiClient,
    CoreV1Api,
    CustomObjectsApi,
)
from kubernetes_asyncio.client.exceptions import ApiException
from test_probes import start, wait
from test_webhook import create_pool

from probes import free_port, wait_probe
from sart.k8s import certs
from sart.k8s.models import GROUP, VERSION
from sart.k8s.runtime import MERGE, webhook
from sart.k8s.runtime.certs import STRATEGIC, WebhookCertificates
from sart.testing.controlplane import ControlPlane, unique_name
from sart.testing.crds import apply_crds
from sart.testing.rbac import NAMESPACE, account_configuration, apply_shipped_rbac
from waiting import until

pytestmark = [pytest.mark.k8s, pytest.mark.asyncio]

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
WEBHOOK = MANIFESTS / "deploy" / "webhook.yaml"
CERT_MANAGER = MANIFESTS / "components" / "webhook-cert-manager"
SECRET = "sart-webhook-tls"
NAMES = certs.service_names("sart-webhook", NAMESPACE)


def shipped(kind: str) -> dict[str, Any]:
    [found] = [d for d in yaml.safe_load_all(WEBHOOK.read_text()) if d["kind"] == kind]
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
        return await served_at(self.host, self.port, ca)


@contextlib.asynccontextmanager
async def old_replica(api: ApiClient, data: dict[str, bytes]) -> AsyncIterator[int]:
    """A replica that has not read the new Secret yet: it serves `data`'s pair on 127.0.0.1
    (yields the port)."""
    context = webhook.server_context()
    webhook.load_pair(context, data[certs.TLS_CERT], data[certs.TLS_KEY])
    port = free_port()
    runner = await webhook.serve(api, "127.0.0.1", port, context)
    try:
        yield port
    finally:
        await runner.cleanup()


async def trusted_by_the_apiserver(
    admission: AdmissionregistrationV1Api, port: int, data: dict[str, bytes]
) -> None:
    """The replica at `port` serves `data`'s certificate, and the configuration's caBundle
    trusts it for the Service's name (what the apiserver checks)."""
    assert await served_at("127.0.0.1", port, await bundle(admission)) == der(data[certs.TLS_CERT])


async def served_at(host: str, port: int, ca: bytes) -> bytes:
    """The certificate served there (DER), verified as the apiserver does: by the CA bundle
    and the Service's name."""
    context = ssl.create_default_context(cadata=ca.decode())
    _, writer = await asyncio.open_connection(host, port, ssl=context, server_hostname=NAMES[0])
    der: bytes = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    with contextlib.suppress(ssl.SSLError, ConnectionError):
        await writer.wait_closed()
    return der


def der(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


@pytest_asyncio.fixture
async def installed(k8s: Any) -> AsyncIterator[str]:
    """The shipped webhook Service, configuration (caBundle empty) and RBAC; the Service's
    ClusterIP on lo. Yields the ClusterIP."""
    await apply_crds(k8s)
    await apply_shipped_rbac(k8s)
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


@pytest_asyncio.fixture
async def pools(k8s: Any) -> AsyncIterator[list[str]]:
    """A name for the test's autoAssign pool, deleted afterwards."""
    names = [unique_name("auto")]
    yield names
    for name in names:
        with contextlib.suppress(ApiException):
            await CustomObjectsApi(k8s).delete_cluster_custom_object(
                GROUP, VERSION, "addresspools", name
            )


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


async def refused(custom: Any, cidr: str) -> bool:
    """Whether the apiserver called the webhook: a bad AddressPool (a second autoAssign pool)
    is refused with the webhook's reason (422). False when it could not call it (500)."""
    try:
        await create_pool(custom, unique_name("second"), cidr, autoAssign=True)
    except ApiException as error:
        if error.status == 500:
            return False
        assert error.status == 422
        assert "is already the autoAssign pool of type service for IPv4" in str(error.body)
        return True
    raise AssertionError("a second autoAssign pool was accepted")


async def called(custom: Any, cidr: str) -> None:
    """The apiserver calls the webhook now."""
    assert await refused(custom, cidr)


async def bundle_is(admission: AdmissionregistrationV1Api, expected: bytes) -> bool:
    return await bundle(admission) == expected


async def auto_pool(custom: Any, name: str, cidr: str) -> None:
    """An autoAssign pool, created once the apiserver can call the webhook (its configuration
    reaches the apiserver's cache within a moment of the caBundle's patch)."""

    async def created() -> bool:
        try:
            await create_pool(custom, name, cidr, autoAssign=True)
        except ApiException as error:
            if error.status == 500:  # the apiserver could not call the webhook (yet)
                return False
            raise
        return True

    await until(created, 30)


@contextlib.asynccontextmanager
async def replicas(k8s: Any, address: str) -> AsyncIterator[tuple[Replica, Replica]]:
    """The leader, serving at the Service's ClusterIP, and a standby on 127.0.0.1."""
    configuration = await account_configuration(k8s, "sart-controller")
    async with ApiClient(configuration) as leader_api, ApiClient(configuration) as standby_api:
        leader = Replica(leader_api, address, 443, leads=True)
        standby = Replica(standby_api, "127.0.0.1", free_port(), leads=False)
        try:
            yield leader, standby
        finally:
            await leader.stop()
            await standby.stop()


async def serve_everywhere(data: dict[str, bytes], *serving: Replica) -> None:
    """Every replica serves the Secret's certificate, trusted by its bundle for the name."""
    expiry = certs.expires(data[certs.TLS_CERT]).timestamp()
    for replica in serving:
        await until(lambda r=replica: r.certificates.served == data[certs.TLS_CERT], 30)
        assert await replica.served(data[certs.CA_CERT]) == der(data[certs.TLS_CERT])
        registry = replica.certificates.metrics.registry
        metric = "sart_controller_webhook_certificate_expiration_timestamp_seconds"
        assert registry.get_sample_value(metric) == expiry


async def test_the_controller_makes_rotates_and_serves_the_certificate(
    k8s: Any, installed: str, pools: list[str], k8s_report: Callable[[str], None]
) -> None:
    core, admission, custom = CoreV1Api(k8s), AdmissionregistrationV1Api(k8s), CustomObjectsApi(k8s)
    assert await secret_data(core) == {}
    began = time.monotonic()
    async with replicas(k8s, installed) as (leader, standby):
        reason = f"no certificate read from the Secret {NAMESPACE}/{SECRET} yet"
        assert standby.certificates.not_serving() == reason  # not ready (readiness) until then
        # from nothing: the Secret is made and its CA patched into the configuration
        data = await until(lambda: secret_data(core), 30)
        now = datetime.datetime.now(datetime.UTC)
        assert certs.decide(data, NAMES, now).renew is certs.Renew.NOTHING
        await until(lambda: bundle_is(admission, data[certs.CA_CERT]), 30)
        # the apiserver calls the webhook by the Service's name
        await auto_pool(custom, pools[0], "10.130.0.0/24")
        callable_after = time.monotonic() - began
        await called(custom, "10.131.0.0/24")
        await serve_everywhere(data, leader, standby)
        assert standby.certificates.not_serving() is None
        assert (leader.certificates.renewals, standby.certificates.renewals) == (1, 0)

        assert certs.CA_KEY not in data

        # a Secret whose certificate is near expiry (as a leader before left it, with its CA
        # and the first one in ca.crt) is rotated: a new CA and serving certificate, the
        # earlier CAs kept in the bundle, so a replica still serving the old certificate is
        # trusted; the apiserver calls the webhook all along
        ca, ca_key = certs.issue_ca(now)
        near, near_key = certs.issue_serving(ca, ca_key, NAMES, now, datetime.timedelta(days=3))
        expiring = certs.secret_data(ca, near, near_key, x509.load_pem_x509_certificates(
            data[certs.CA_CERT]))  # fmt: skip
        body = {"data": {k: base64.b64encode(v).decode() for k, v in expiring.items()}}
        await core.patch_namespaced_secret(SECRET, NAMESPACE, body, **MERGE)
        began = time.monotonic()

        async def renewed() -> dict[str, bytes] | None:
            fresh = await secret_data(core)
            kept = fresh[certs.TLS_CERT] not in (data[certs.TLS_CERT], expiring[certs.TLS_CERT])
            return fresh if kept else None

        rotated = await until(renewed, 30)
        assert certs.CA_KEY not in rotated
        new_ca, *earlier = x509.load_pem_x509_certificates(rotated[certs.CA_CERT])
        assert earlier == [ca, *x509.load_pem_x509_certificates(data[certs.CA_CERT])]
        x509.load_pem_x509_certificate(rotated[certs.TLS_CERT]).verify_directly_issued_by(new_ca)
        assert await bundle(admission) == rotated[certs.CA_CERT]
        await serve_everywhere(rotated, leader, standby)
        rotated_after = time.monotonic() - began
        await called(custom, "10.133.0.0/24")
        async with old_replica(k8s, expiring) as old:
            await trusted_by_the_apiserver(admission, old, expiring)
        assert (leader.certificates.renewals, standby.certificates.renewals) == (2, 0)
    k8s_report(
        f"webhook: called by the apiserver {callable_after:.2f} s after the controller started"
        f" from no Secret; a certificate near expiry served renewed by both replicas"
        f" {rotated_after:.2f} s after it was written"
    )


async def test_a_secret_with_the_ca_key_is_taken_over(
    k8s: Any, installed: str, pools: list[str]
) -> None:
    """A Secret as an earlier sart wrote it (a 10-year CA with ca.key, in the caBundle) is
    rotated at once: a new CA, ca.key gone from the Secret, the old CA kept in the bundle so a
    replica still serving the old certificate stays trusted; a configuration applied again with
    an empty caBundle gets it back."""
    core, admission, custom = CoreV1Api(k8s), AdmissionregistrationV1Api(k8s), CustomObjectsApi(k8s)
    now = datetime.datetime.now(datetime.UTC)
    old_ca, old_key = certs.issue_ca(now, datetime.timedelta(days=3650))
    serving, serving_key = certs.issue_serving(old_ca, old_key, NAMES, now)
    old = {**certs.secret_data(old_ca, serving, serving_key), certs.CA_KEY: old_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())}  # fmt: skip
    encoded = {k: base64.b64encode(v).decode() for k, v in old.items()}
    secret = {"metadata": {"name": SECRET}, "type": "kubernetes.io/tls", "data": encoded}
    await core.create_namespaced_secret(NAMESPACE, secret)
    ca_bundle = base64.b64encode(old[certs.CA_CERT]).decode()
    patch = {"webhooks": [{"name": webhook.NAME, "clientConfig": {"caBundle": ca_bundle}}]}
    await admission.patch_validating_webhook_configuration("sart", patch, **STRATEGIC)
    async with replicas(k8s, installed) as (leader, standby), old_replica(k8s, old) as before:

        async def renewed() -> dict[str, bytes] | None:
            fresh = await secret_data(core)
            return fresh if fresh[certs.CA_CERT] != old[certs.CA_CERT] else None

        data = await until(renewed, 30)
        assert set(data) == {certs.TLS_CERT, certs.TLS_KEY, certs.CA_CERT}  # no ca.key
        new_ca, kept = x509.load_pem_x509_certificates(data[certs.CA_CERT])
        assert kept == old_ca
        x509.load_pem_x509_certificate(data[certs.TLS_CERT]).verify_directly_issued_by(new_ca)
        await until(lambda: bundle_is(admission, data[certs.CA_CERT]), 30)
        await auto_pool(custom, pools[0], "10.134.0.0/24")
        await serve_everywhere(data, leader, standby)
        await called(custom, "10.135.0.0/24")
        await trusted_by_the_apiserver(admission, before, old)

        await admission.delete_validating_webhook_configuration("sart")
        await admission.create_validating_webhook_configuration(
            shipped("ValidatingWebhookConfiguration")
        )
        await until(lambda: bundle_is(admission, data[certs.CA_CERT]), 30)
        await until(lambda: refused(custom, "10.136.0.0/24"), 30)
        assert (leader.certificates.renewals, standby.certificates.renewals) == (1, 0)


async def test_sart_controller_processes_keep_it_across_a_leader_change(
    k8s: Any, control_plane: ControlPlane, installed: str, pools: list[str], tmp_path: Path
) -> None:
    """Two `sart-controller` processes with the webhook flags of the shipped Deployment, on a
    token of the shipped account: both serve, the leader keeps the Secret; when it stops, the
    standby leads and makes a deleted Secret again."""
    core, admission, custom = CoreV1Api(k8s), AdmissionregistrationV1Api(k8s), CustomObjectsApi(k8s)
    options = await controller_options(k8s, control_plane, tmp_path)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        leader = start(processes, "sart.cli.controller", *options,
                       "--webhook-address", f"{installed}:443")  # fmt: skip
        ready = await wait(leader, 200)
        assert (ready["leader"], ready["checks"]["webhook"]) == (True, "ok")
        standby_port = free_port()
        standby = start(processes, "sart.cli.controller", *options,
                        "--webhook-address", f"127.0.0.1:{standby_port}")  # fmt: skip
        ready = await wait(standby, 200)
        assert (ready["leader"], ready["checks"]["webhook"]) == (False, "ok")
        data = await until(lambda: secret_data(core), 30)
        await until(lambda: bundle_is(admission, data[certs.CA_CERT]), 30)
        await auto_pool(custom, pools[0], "10.137.0.0/24")
        await called(custom, "10.138.0.0/24")
        tls = data[certs.TLS_CERT]
        assert await until(lambda: _serves(installed, 443, data), 30)
        assert await until(lambda: _serves("127.0.0.1", standby_port, data), 30)

        processes[0].terminate()
        assert processes[0].wait(15) == 0
        leads = await asyncio.to_thread(
            wait_probe, standby, "/readyz", 200, 30.0, lambda body: body["leader"] is True
        )
        assert leads["checks"]["controller"] == "ok"
        await core.delete_namespaced_secret(SECRET, NAMESPACE)

        async def made_again() -> dict[str, bytes] | None:
            fresh = await secret_data(core)
            return fresh if fresh and fresh[certs.TLS_CERT] != tls else None

        again = await until(made_again, 30)
        # a new CA, and the one the apiserver trusted until now, which the replicas still
        # serve until they read the new Secret
        cas = x509.load_pem_x509_certificates(again[certs.CA_CERT])
        assert cas[1:] == x509.load_pem_x509_certificates(data[certs.CA_CERT])
        await until(lambda: bundle_is(admission, again[certs.CA_CERT]), 30)
        assert await until(lambda: _serves("127.0.0.1", standby_port, again), 30)
    finally:
        for process in processes:
            process.terminate()
        assert [process.wait(15) for process in processes] == [0] * len(processes)


async def controller_options(k8s: Any, control_plane: ControlPlane, tmp_path: Path) -> list[str]:
    """sart-controller's webhook flags as the shipped Deployment gives them, on a kubeconfig
    holding a token of the shipped account."""
    account = await account_configuration(k8s, "sart-controller")
    kubeconfig = yaml.safe_load(control_plane.kubeconfig.read_text())
    kubeconfig["users"][0]["user"] = {"token": account.api_key["BearerToken"]}
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump(kubeconfig))
    return ["--kubeconfig", str(tmp_path / "kubeconfig"), "--lease-namespace", NAMESPACE,
            "--lease-name", unique_name("webhook"), "--retry-period", "0.5",
            "--renew-deadline", "2", "--lease-duration", "3",
            "--webhook-cert-secret", f"{NAMESPACE}/{SECRET}"]  # fmt: skip


async def test_a_certificate_kept_elsewhere_is_served_as_it_changes(
    k8s: Any, control_plane: ControlPlane, installed: str, pools: list[str], tmp_path: Path
) -> None:
    """cert-manager's way (components/webhook-cert-manager): something else writes the Secret
    (no ca.key) and the caBundle; `sart-controller --no-webhook-cert-keep`, with only the right
    to read that Secret, serves it and each renewal at once, and writes neither."""
    core, admission, custom = CoreV1Api(k8s), AdmissionregistrationV1Api(k8s), CustomObjectsApi(k8s)
    read_only = [
        d for d in yaml.safe_load_all((CERT_MANAGER / "rbac.yaml").read_text()) if "$patch" not in d
    ]
    (tmp_path / "rbac.yaml").write_text(yaml.safe_dump_all(read_only))
    await apply_shipped_rbac(k8s, (tmp_path / "rbac.yaml",))
    now = datetime.datetime.now(datetime.UTC)
    ca, ca_key = certs.issue_ca(now)

    def issued() -> dict[str, bytes]:
        serving, serving_key = certs.issue_serving(ca, ca_key, NAMES, now)
        return certs.secret_data(ca, serving, serving_key)  # its CA's key kept elsewhere

    first = issued()
    encoded = {k: base64.b64encode(v).decode() for k, v in first.items()}
    secret = {"metadata": {"name": SECRET}, "type": "kubernetes.io/tls", "data": encoded}
    await core.create_namespaced_secret(NAMESPACE, secret)
    ca_bundle = base64.b64encode(first[certs.CA_CERT]).decode()
    patch = {"webhooks": [{"name": webhook.NAME, "clientConfig": {"caBundle": ca_bundle}}]}
    await admission.patch_validating_webhook_configuration("sart", patch, **STRATEGIC)
    options = await controller_options(k8s, control_plane, tmp_path)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        port = start(processes, "sart.cli.controller", *options, "--no-webhook-cert-keep",
                     "--webhook-address", f"{installed}:443")  # fmt: skip
        ready = await wait(port, 200)
        assert (ready["leader"], ready["checks"]["webhook"]) == (True, "ok")
        await auto_pool(custom, pools[0], "10.139.0.0/24")
        await called(custom, "10.140.0.0/24")
        assert await _serves(installed, 443, first)
        renewed = issued()
        body = {"data": {k: base64.b64encode(v).decode() for k, v in renewed.items()}}
        await core.patch_namespaced_secret(SECRET, NAMESPACE, body, **MERGE)
        assert await until(lambda: _serves(installed, 443, renewed), 30)
        await called(custom, "10.141.0.0/24")
        assert await secret_data(core) == renewed  # nothing written by the controller
    finally:
        for process in processes:
            process.terminate()
        assert [process.wait(15) for process in processes] == [0] * len(processes)


async def _serves(host: str, port: int, data: dict[str, bytes]) -> bool:
    try:
        return await served_at(host, port, data[certs.CA_CERT]) == der(data[certs.TLS_CERT])
    except (OSError, ssl.SSLError):
        return False  # not listening yet, or the certificate before
