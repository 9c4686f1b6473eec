"""What `sart-controller` (and `sartd controller`) runs once its flags are checked: the
controllers behind the Lease, the webhook, metrics and probes. Imported only then: this is
where the Kubernetes client comes in."""

from __future__ import annotations

import asyncio
import logging

from kubernetes_asyncio.client import ApiClient, CoordinationV1Api

from sart import __version__
from sart.api.client import parse_endpoint
from sart.cli.controller import Webhook
from sart.cli.daemon import load_kube_config, run_until_stopped
from sart.cli.serving import Health, HttpEndpoint, daemon_registry
from sart.k8s.certs import expires, service_names
from sart.k8s.runtime.blocks import BlockController
from sart.k8s.runtime.calls import read_environment_once
from sart.k8s.runtime.certs import WebhookCertificates
from sart.k8s.runtime.clusterbgp import ClusterBgpController
from sart.k8s.runtime.controller import LoadBalancerController
from sart.k8s.runtime.leader import LeaderElection
from sart.k8s.runtime.legacy import LegacyFinalizers
from sart.k8s.runtime.metrics import ControllerMetrics
from sart.k8s.runtime.watch import SharedWatches
from sart.k8s.runtime.webhook import serve as serve_webhook
from sart.k8s.runtime.webhook import server_context

log = logging.getLogger("sart.controller")


async def serve(
    kubeconfig: str | None,
    lease_namespace: str,
    lease_name: str,
    identity: str,
    field_manager: str,
    elect: bool,
    timing: tuple[float, float, float],
    metrics_address: str,
    webhook: Webhook | None,
) -> None:
    health = Health()
    health.ready("controller", lambda: "no kubeconfig loaded yet")
    health.start_heartbeat(asyncio.get_running_loop())
    metrics = ControllerMetrics(daemon_registry())
    served = None
    if metrics_address:
        served = HttpEndpoint.start(parse_endpoint(metrics_address), health, metrics.registry)
    try:
        await load_kube_config(kubeconfig)
        async with ApiClient() as api:
            read_environment_once(api)
            await _run(
                api, health, metrics, lease_namespace, lease_name, identity, field_manager,
                elect, timing, webhook,
            )  # fmt: skip
    finally:
        health.stop_heartbeat()
        if served is not None:
            served.close()
    log.info("controller stopped")


async def _run(
    api: ApiClient,
    health: Health,
    metrics: ControllerMetrics,
    lease_namespace: str,
    lease_name: str,
    identity: str,
    field_manager: str,
    elect: bool,
    timing: tuple[float, float, float],
    webhook: Webhook | None,
) -> None:
    # The apiserver names the manager of a write (managedFields) after the User-Agent's
    # first part; the identity goes in the rest, for audit logs.
    api.user_agent = f"{field_manager}/{__version__} ({identity})"
    leader = LeaderElection(
        CoordinationV1Api(api),
        name=lease_name,
        namespace=lease_namespace,
        identity=identity,
        duration=timing[0],
        renew_deadline=timing[1],
        renew=timing[2],
        on_change=lambda leading: metrics.leader.set(1 if leading else 0),
    )
    fence = leader.fence if elect else (lambda: None)
    watches = SharedWatches()  # one watch per kind for the LoadBalancer part and the releaser
    balancers = LoadBalancerController(
        api, metrics, fence=fence, aggregate_namespace=lease_namespace, watches=watches
    )
    blocks = BlockController(api, advertise_namespace=lease_namespace, fence=fence, metrics=metrics)
    cluster_bgps = ClusterBgpController(api, fence=fence)
    releaser = LegacyFinalizers(api, fence=fence, watches=watches)
    parts = (watches, balancers, blocks, cluster_bgps, releaser)

    def ready() -> str | None:
        if elect and not leader.leading():
            # A standby is ready: it is there to take over (the body says leader: false).
            return None if leader.answered else f"the Lease {lease_name} not read yet"
        unlisted = [
            name
            for name, part in (("LoadBalancer", balancers), ("pod blocks", blocks),
                               ("ClusterBGP", cluster_bgps))
            if not part.synced
        ]  # fmt: skip
        return f"watches not listed yet: {', '.join(unlisted)}" if unlisted else None

    health.ready("controller", ready)
    health.fact("leader", lambda: leader.leading() if elect else True)

    certificates = keeper = None  # the certificate served from a Secret; kept by the leader
    if webhook is not None:
        host, port = parse_endpoint(webhook.address)
        context = server_context()
        if webhook.secret is not None:
            namespace, secret = webhook.secret
            certificates = WebhookCertificates(
                api,
                namespace=namespace,
                secret=secret,
                names=service_names(webhook.service, namespace),
                configuration=webhook.configuration,
                context=context,
                fence=fence,
                metrics=metrics,
            )
            if webhook.keep:
                keeper = certificates
            # The Service sends the apiserver's calls only to replicas that can answer them.
            health.ready("webhook", certificates.not_serving)
        elif webhook.files is not None:
            context.load_cert_chain(*webhook.files)
            metrics.webhook_expiry.set(expires(webhook.files[0].read_bytes()).timestamp())
            await serve_webhook(api, host, port, context)

    async def every_part() -> None:
        async with asyncio.TaskGroup() as tasks:
            for part in parts:
                tasks.create_task(part.run())
            if keeper is not None:
                tasks.create_task(keeper.keep())

    async def everything() -> None:
        async with asyncio.TaskGroup() as tasks:
            if certificates is not None:  # every replica serves, standbys too
                tasks.create_task(
                    certificates.follow(lambda: serve_webhook(api, host, port, context))
                )
            tasks.create_task(leader.hold(every_part) if elect else every_part())

    try:
        await run_until_stopped(everything())
    finally:
        if elect:
            await leader.release()
