"""`sart-controller` (also `sartd controller`): the cluster-wide controllers behind one Lease:
LoadBalancer addresses, pod address blocks, cluster BGP configuration (ClusterBGP -> NodeBGPs
and BGPPeers), and the release of the original sart's finalizers."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from pathlib import Path

import click
from kubernetes_asyncio.client import ApiClient, CoordinationV1Api
from prometheus_client import start_http_server

from sart import __version__
from sart.api.client import parse_endpoint
from sart.cli.daemon import load_kube_config, run_daemon, run_until_stopped
from sart.cli.logs import configure_logging, log_options
from sart.k8s.runtime.blocks import BlockController
from sart.k8s.runtime.clusterbgp import ClusterBgpController
from sart.k8s.runtime.controller import LoadBalancerController
from sart.k8s.runtime.leader import LeaderElection
from sart.k8s.runtime.legacy import LegacyFinalizers
from sart.k8s.runtime.metrics import ControllerMetrics
from sart.k8s.runtime.webhook import serve as serve_webhook

log = logging.getLogger("sart.controller")


async def _run(
    kubeconfig: str | None,
    lease_namespace: str,
    lease_name: str,
    identity: str,
    field_manager: str,
    elect: bool,
    timing: tuple[float, float, float],
    metrics_address: str,
    webhook: tuple[str, Path, Path] | None,
) -> None:
    await load_kube_config(kubeconfig)
    async with ApiClient() as api:
        # The apiserver names the manager of a write (managedFields) after the User-Agent's
        # first part; the identity goes in the rest, for audit logs.
        api.user_agent = f"{field_manager}/{__version__} ({identity})"
        metrics = ControllerMetrics()
        if metrics_address:
            host, port = parse_endpoint(metrics_address)
            start_http_server(port, host, registry=metrics.registry)
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
        parts = (
            LoadBalancerController(api, metrics, fence=fence),
            BlockController(api, advertise_namespace=lease_namespace, fence=fence, metrics=metrics),
            ClusterBgpController(api, fence=fence),
            LegacyFinalizers(api, fence=fence),
        )

        async def every_part() -> None:
            async with asyncio.TaskGroup() as tasks:
                for part in parts:
                    tasks.create_task(part.run())

        if webhook is not None:
            address, cert, key = webhook
            host, port = parse_endpoint(address)
            await serve_webhook(api, host, port, cert, key)
        try:
            await run_until_stopped(leader.hold(every_part) if elect else every_part())
        finally:
            if elect:
                await leader.release()
        log.info("controller stopped")


def options(function: click.decorators.FC) -> click.decorators.FC:
    decorators = [
        click.option("--kubeconfig", envvar="KUBECONFIG", help="Default: in-cluster config."),
        click.option("--lease-namespace", default="kube-system", show_default=True),
        click.option("--lease-name", default="sart-controller", show_default=True),
        click.option("--identity", default=socket.gethostname(), show_default="the host name"),
        click.option(
            "--field-manager",
            default="sart-controller",
            show_default=True,
            help="Name the apiserver records as the manager of this process's writes"
            " (metadata.managedFields): the first part of its User-Agent, which carries the"
            " identity after it. Give each replica its own to tell apart who wrote what.",
        ),
        click.option("--leader-elect/--no-leader-elect", default=True, show_default=True),
        click.option(
            "--lease-duration",
            type=click.FloatRange(min=1.0),
            default=15.0,
            show_default=True,
            help="Seconds a standby waits, after it last saw the Lease change, to take it over.",
        ),
        click.option(
            "--renew-deadline",
            type=click.FloatRange(min=0.5),
            default=10.0,
            show_default=True,
            help="Seconds the leader keeps acting without a successful renewal.",
        ),
        click.option(
            "--retry-period",
            type=click.FloatRange(min=0.1),
            default=2.0,
            show_default=True,
            help="Seconds between attempts to acquire or renew the Lease.",
        ),
        click.option(
            "--webhook-address",
            default="0.0.0.0:9443",
            show_default=True,
            help="Where the validating webhook listens (with --webhook-cert and --webhook-key).",
        ),
        click.option(
            "--webhook-cert",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="TLS certificate of the webhook; no webhook without it.",
        ),
        click.option("--webhook-key", type=click.Path(exists=True, dir_okay=False, path_type=Path)),
        click.option(
            "--metrics-address",
            default="0.0.0.0:9470",
            show_default=True,
            help="Prometheus metrics; empty to turn them off.",
        ),
    ]
    for decorator in reversed(decorators):
        function = decorator(function)
    return log_options(function)


def run(
    kubeconfig: str | None,
    lease_namespace: str,
    lease_name: str,
    identity: str,
    field_manager: str,
    leader_elect: bool,
    lease_duration: float,
    renew_deadline: float,
    retry_period: float,
    metrics_address: str,
    webhook_address: str,
    webhook_cert: Path | None,
    webhook_key: Path | None,
    log_format: str,
    level: str,
) -> None:
    configure_logging(log_format, level)
    identity = f"{identity}-{os.getpid()}"
    if not field_manager or "/" in field_manager:
        raise click.UsageError("--field-manager must be a non-empty name without '/'")
    if (webhook_cert is None) != (webhook_key is None):
        raise click.UsageError("--webhook-cert and --webhook-key go together")
    if not retry_period < renew_deadline < lease_duration:
        raise click.UsageError(
            "--retry-period < --renew-deadline < --lease-duration is needed"
            f" (got {retry_period}, {renew_deadline}, {lease_duration})"
        )
    webhook = None
    if webhook_cert is not None and webhook_key is not None:
        webhook = (webhook_address, webhook_cert, webhook_key)
    run_daemon(
        _run(
            kubeconfig, lease_namespace, lease_name, identity, field_manager, leader_elect,
            (lease_duration, renew_deadline, retry_period), metrics_address, webhook,
        ),
        "sart-controller",
    )  # fmt: skip


@click.command()
@options
def main(**kwargs: str | bool | None) -> None:
    """Give Services of type LoadBalancer addresses from AddressPools, and configure the
    nodes' BGP from ClusterBGPs."""
    run(**kwargs)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
