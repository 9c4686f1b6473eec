"""The validating admission webhook (aiohttp over TLS) for the rules in
`sart.k8s.reconcile.validation`. It is registered for AddressPools and BGPPeers only, so a
controller that is down can never block a write to anything else (MetalLB's webhook, registered
wider, did)."""

from __future__ import annotations

import logging
import ssl
import tempfile
from pathlib import Path
from typing import Any

from aiohttp import web
from kubernetes_asyncio.client import ApiClient, CustomObjectsApi

from sart.k8s.models import GROUP, VERSION
from sart.k8s.reconcile.validation import validate_address_pool, validate_bgp_peer

log = logging.getLogger("sart.k8s")
PATH = "/validate"
NAME = "validate.sart.terassyi.net"  # the webhook's name in its configuration
RULES = {"addresspools": validate_address_pool, "bgppeers": validate_bgp_peer}


def _response(uid: str, problems: list[str]) -> dict[str, Any]:
    response: dict[str, Any] = {"uid": uid, "allowed": not problems}
    if problems:
        response["status"] = {"code": 422, "reason": "Invalid", "message": "; ".join(problems)}
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}


def make_app(api: ApiClient) -> web.Application:
    custom = CustomObjectsApi(api)

    async def validate(request: web.Request) -> web.Response:
        review = await request.json()
        admission = review.get("request", {})
        uid = admission.get("uid", "")
        plural = admission.get("resource", {}).get("resource", "")
        rule = RULES.get(plural)
        if rule is None or admission.get("operation") not in ("CREATE", "UPDATE"):
            return web.json_response(_response(uid, []))
        listing = await custom.list_cluster_custom_object(GROUP, VERSION, plural)
        problems = rule(admission.get("object", {}), listing.get("items", []))
        if problems:
            log.info("admission refused", extra={"resource": plural, "problems": problems})
        return web.json_response(_response(uid, problems))

    app = web.Application()
    app.router.add_post(PATH, validate)
    return app


def load_pair(context: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    """Make `context` serve this certificate and key (PEM) from the next handshake on. Python
    loads them only from files: they are written to a private directory and removed at once.
    They are loaded into a context of their own first: OpenSSL takes the certificate before it
    checks the key, so a pair that does not fit would leave `context` half changed."""
    with tempfile.TemporaryDirectory(prefix="sart-webhook-") as directory:
        cert_file, key_file = Path(directory, "tls.crt"), Path(directory, "tls.key")
        cert_file.write_bytes(cert)
        key_file.touch(mode=0o600)
        key_file.write_bytes(key)
        server_context().load_cert_chain(cert_file, key_file)  # raises if they do not fit
        context.load_cert_chain(cert_file, key_file)


def server_context() -> ssl.SSLContext:
    """A TLS server context with no certificate yet (`load_pair` or `load_cert_chain`)."""
    return ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)


async def serve(api: ApiClient, host: str, port: int, context: ssl.SSLContext) -> web.AppRunner:
    """Serve the webhook with `context`'s certificate (loaded already)."""
    runner = web.AppRunner(make_app(api), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, ssl_context=context).start()
    log.info("webhook listening", extra={"address": f"{host}:{port}"})
    return runner


def configuration(client_config: dict[str, Any], name: str = "sart") -> dict[str, Any]:
    """A ValidatingWebhookConfiguration for our kinds only. `client_config` is the
    admissionregistration clientConfig: {"service": {...}} in a cluster, {"url": ...} in tests,
    with the caBundle."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": NAME,
                "clientConfig": client_config,
                "rules": [
                    {
                        "apiGroups": [GROUP],
                        "apiVersions": [VERSION],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": list(RULES),
                        "scope": "Cluster",
                    }
                ],
                "failurePolicy": "Fail",
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "timeoutSeconds": 5,
            }
        ],
    }
