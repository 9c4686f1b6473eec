"""The webhook's certificate, kept by the controller itself (`sart.k8s.certs` decides):

- every replica (`follow`) watches the Secret through the API and serves the webhook with its
  tls.crt and tls.key, loading them again as soon as the Secret changes. A Secret mounted as
  files would reach the Pod only after the kubelet's next sync (a minute or more), so replicas
  would serve a certificate the apiserver no longer trusts for that long;
- the leader (`keep`) makes the Secret (kubernetes.io/tls, with ca.crt; never the CA's key)
  when it is missing or unfit and renews it within the rotation window, and patches the CA
  bundle into the caBundle of sart's webhooks (by name) in the ValidatingWebhookConfiguration,
  whenever either changes (it watches both). A bundle that gains a CA goes to the
  configuration before the Secret that serves a certificate signed by it.

Failures follow the runtime's error model (`outcome`): a conflict is decided again at once,
anything temporary backs off, a refused write is logged and retried slowly.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from kubernetes_asyncio.client import AdmissionregistrationV1Api, ApiClient, CoreV1Api
from kubernetes_asyncio.client.exceptions import ApiException

from sart.k8s.certs import CA_CERT, TLS_CERT, TLS_KEY, Renew, decide, expires, next_check, renew
from sart.k8s.runtime import MERGE
from sart.k8s.runtime.calls import call_raw
from sart.k8s.runtime.metrics import ControllerMetrics
from sart.k8s.runtime.outcome import Backoff, sync_passes
from sart.k8s.runtime.watch import watch_objects
from sart.k8s.runtime.webhook import NAME, load_pair

log = logging.getLogger("sart.k8s")
STRATEGIC = {"_content_type": "application/strategic-merge-patch+json"}
LOOK_AGAIN = 3600.0  # seconds at most between two checks of the certificate's dates
REFUSED_RETRY = 60.0  # seconds before a refused write is tried again
WEBHOOKS = (NAME,)  # sart's webhooks: the only ones whose caBundle is ours to write


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _no_fence() -> None:
    """Without leader election every write is ours to make."""


class WebhookCertificates:
    def __init__(
        self,
        api: ApiClient,
        *,
        namespace: str,
        secret: str,
        names: tuple[str, ...],
        configuration: str,
        context: ssl.SSLContext,
        fence: Callable[[], None] = _no_fence,
        clock: Callable[[], datetime.datetime] = _utc_now,
        metrics: ControllerMetrics | None = None,
    ) -> None:
        self.metrics = metrics or ControllerMetrics()
        self.core = CoreV1Api(api)
        self.admission = AdmissionregistrationV1Api(api)
        self.namespace, self.secret, self.names = namespace, secret, names
        self.configuration = configuration
        self.context = context  # what the webhook serves with
        self.fence = fence  # raises LeadershipLost once we may no longer write
        self.clock = clock
        self.data: dict[str, bytes] = {}  # the Secret's, decoded; empty while there is none
        self.version = ""  # the Secret's resourceVersion; empty while there is none
        self.bundles: dict[str, str] | None = None  # our webhooks' caBundle; None: no config
        self.loaded = asyncio.Event()  # the context holds a certificate
        self.listening = False  # the webhook serves it (readiness)
        self.served = b""  # the tls.crt the context holds
        self.renewals = 0  # Secrets written by us (tests wait on this)
        self._listed: set[str] = set()
        self._wake = asyncio.Event()
        self._backoff = Backoff(base=0.5, cap=60.0)

    # --- every replica --------------------------------------------------------------------

    async def follow(self, serve: Callable[[], Awaitable[Any]]) -> None:
        """Watch the Secret and serve its certificate; `serve` starts the webhook once the
        first one is loaded."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(
                watch_objects(
                    self.core.list_namespaced_secret,
                    self._on_secret,
                    "webhook secret",
                    raw=True,
                    namespace=self.namespace,
                    field_selector=f"metadata.name={self.secret}",
                )
            )
            await self.loaded.wait()
            await serve()
            self.listening = True

    def not_serving(self) -> str | None:
        """Why the webhook is not served yet (readiness); None once it is."""
        if self.listening:
            return None
        return f"no certificate read from the Secret {self.namespace}/{self.secret} yet"

    def _on_secret(self, kind: str, secret: Any) -> None:
        if kind == "SYNCED":
            self._listed.add("secret")
        elif kind == "DELETED":
            self.data, self.version = {}, ""
        else:
            self._seen(secret)
        self._wake.set()

    def _seen(self, secret: dict[str, Any]) -> None:
        self.version = secret["metadata"].get("resourceVersion", "")
        self.data = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
        cert, key = self.data.get(TLS_CERT, b""), self.data.get(TLS_KEY, b"")
        if cert == self.served or not cert or not key:
            return
        try:
            load_pair(self.context, cert, key)
            expiry = expires(cert)
        except (ssl.SSLError, ValueError) as error:
            where = f"{self.namespace}/{self.secret}"
            log.error(
                "webhook certificate not loaded", extra={"secret": where, "error": str(error)}
            )
            return  # the leader replaces an unfit pair; until then the last good one serves
        self.served = cert
        self.metrics.webhook_expiry.set(expiry.timestamp())
        self.loaded.set()
        log.info("webhook certificate loaded", extra={"secret": f"{self.namespace}/{self.secret}"})

    # --- the leader -----------------------------------------------------------------------

    async def keep(self) -> None:
        """Keep the Secret fit and the configuration's CA bundle its ca.crt (the leader's part;
        `follow` must run too: it watches the Secret)."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(
                watch_objects(
                    self.admission.list_validating_webhook_configuration,
                    self._on_configuration,
                    "validatingwebhookconfigurations",
                    raw=True,
                    field_selector=f"metadata.name={self.configuration}",
                )
            )
            tasks.create_task(self._work())

    def _on_configuration(self, kind: str, configuration: Any) -> None:
        if kind == "SYNCED":
            self._listed.add("configuration")
        elif kind == "DELETED":
            self.bundles = None
        else:
            self.bundles = {
                webhook["name"]: (webhook.get("clientConfig") or {}).get("caBundle", "")
                for webhook in configuration.get("webhooks") or ()
                if webhook.get("name") in WEBHOOKS
            }
        self._wake.set()

    async def _work(self) -> None:
        await sync_passes(self._wake, lambda: self._listed == {"secret", "configuration"},
                          self.sync, "webhook certificate", backoff=self._backoff,
                          refused_retry=REFUSED_RETRY)  # fmt: skip

    async def sync(self) -> float:
        """One pass: renew the Secret if it needs it, then make the bundle its ca.crt; returns
        the seconds until the certificate's dates must be looked at again."""
        now = self.clock()
        decision = decide(self.data, self.names, now)
        if decision.renew is not Renew.NOTHING:
            fresh = renew(decision, self.data, self.names, now, self._trusted())
            if fresh[CA_CERT] != self.data.get(CA_CERT):
                # The apiserver trusts the new CA before any replica serves what it signed.
                await self._patch_bundles(fresh[CA_CERT])
            await self._write_secret(fresh)
            renewed = {"secret": f"{self.namespace}/{self.secret}",
                       "renewed": decision.renew.value, "reason": decision.reason}  # fmt: skip
            log.info("webhook certificate renewed", extra=renewed)
        await self._patch_bundles(self.data[CA_CERT])
        due = next_check(self.data)
        wait = LOOK_AGAIN if due is None else (due - now).total_seconds()
        return min(max(wait, 0.0), LOOK_AGAIN)

    def _trusted(self) -> bytes:
        """The bundle the apiserver trusts now: our webhooks' caBundle (decoded, joined)."""
        bundles = (self.bundles or {}).values()
        return b"".join(base64.b64decode(b) for b in dict.fromkeys(bundles) if b)

    async def _patch_bundles(self, bundle: bytes) -> None:
        if self.bundles is None:
            log.warning(
                "no ValidatingWebhookConfiguration to give the CA bundle to",
                extra={"configuration": self.configuration},
            )
            return
        wanted = base64.b64encode(bundle).decode()
        stale = [name for name, have in self.bundles.items() if have != wanted]
        if not stale:
            return
        # A strategic merge patch: the webhooks are merged by name, so the others (and every
        # other field of ours) are left as they are.
        body = {"webhooks": [{"name": n, "clientConfig": {"caBundle": wanted}} for n in stale]}
        self.fence()
        await call_raw(
            self.admission.patch_validating_webhook_configuration,
            self.configuration,
            body,
            **STRATEGIC,
        )
        self.bundles.update(dict.fromkeys(stale, wanted))  # before the watch brings it back
        log.info("webhook CA bundle patched", extra={"configuration": self.configuration,
                                                     "webhooks": stale})  # fmt: skip

    async def _write_secret(self, data: dict[str, bytes]) -> None:
        encoded = {k: base64.b64encode(v).decode() for k, v in data.items()}
        self.fence()
        if not self.version:
            body = {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": self.secret, "namespace": self.namespace},
                "type": "kubernetes.io/tls",
                "data": encoded,
            }
            written = await call_raw(self.core.create_namespaced_secret, self.namespace, body)
        else:
            # With the version we decided on: a change meanwhile is a 409, decided again. A
            # merge patch keeps the fields it does not name: the dropped ones (ca.key, as an
            # earlier sart wrote it) are named with null.
            dropped: dict[str, str | None] = dict.fromkeys(set(self.data) - set(data))
            body = {
                "metadata": {"resourceVersion": self.version},
                "data": {**dropped, **encoded},
            }
            try:
                written = await call_raw(
                    self.core.patch_namespaced_secret, self.secret, self.namespace, body, **MERGE
                )
            except ApiException as error:
                if error.status == 404:
                    self.version = ""  # deleted meanwhile: made again (classified REDO)
                raise
        self.renewals += 1
        self._seen(written)  # our own write, before the watch shows it
