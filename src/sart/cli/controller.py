"""`sart-controller` (also `sartd controller`): the cluster-wide controllers behind one Lease:
LoadBalancer addresses, pod address blocks, cluster BGP configuration (ClusterBGP -> NodeBGPs
and BGPPeers), and the release of the original sart's finalizers.

This module is the flags only; what runs is in `sart.cli.run_controller`, imported when it
runs, so `--help` and `sartd` load neither the Kubernetes client nor the runtime."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import attrs
import click

from sart.cli.daemon import run_daemon
from sart.cli.logs import configure_logging, log_options


@attrs.frozen
class Webhook:
    """How the webhook is served: with a certificate from files, or from a Secret the
    controller keeps (sart.k8s.runtime.certs)."""

    address: str
    files: tuple[Path, Path] | None = None  # --webhook-cert, --webhook-key
    secret: tuple[str, str] | None = None  # --webhook-cert-secret: namespace, name
    service: str = "sart-webhook"
    configuration: str = "sart"
    keep: bool = True  # the leader makes and rotates the Secret (else only serves it)


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
            help="Where the validating webhook listens (with --webhook-cert-secret, or"
            " --webhook-cert and --webhook-key).",
        ),
        click.option(
            "--webhook-cert",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="TLS certificate of the webhook, read at start; no webhook without it or"
            " --webhook-cert-secret.",
        ),
        click.option("--webhook-key", type=click.Path(exists=True, dir_okay=False, path_type=Path)),
        click.option(
            "--webhook-cert-secret",
            metavar="NAMESPACE/NAME",
            help="Serve the webhook with the certificate of this Secret, read through the API"
            " by every replica; the leader makes it, rotates it and puts its CA in"
            " --webhook-configuration. Instead of --webhook-cert/--webhook-key.",
        ),
        click.option(
            "--webhook-service",
            default="sart-webhook",
            show_default=True,
            help="The Service (in the Secret's namespace) the apiserver calls the webhook"
            " through: the certificate's names.",
        ),
        click.option(
            "--webhook-configuration",
            default="sart",
            show_default=True,
            help="The ValidatingWebhookConfiguration whose sart webhooks get the CA bundle.",
        ),
        click.option(
            "--webhook-cert-keep/--no-webhook-cert-keep",
            default=True,
            show_default=True,
            help="With --webhook-cert-secret: whether the leader makes and rotates the Secret"
            " and patches the CA bundle. --no-webhook-cert-keep when something else keeps them"
            " (cert-manager): the replicas only serve what the Secret holds.",
        ),
        click.option(
            "--metrics-address",
            default="0.0.0.0:9470",
            show_default=True,
            help="Prometheus metrics (/metrics) and the probes (/healthz, /readyz); empty to"
            " turn them off.",
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
    webhook_cert_secret: str | None,
    webhook_service: str,
    webhook_configuration: str,
    webhook_cert_keep: bool,
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
    if not webhook_cert_keep and webhook_cert_secret is None:
        raise click.UsageError("--no-webhook-cert-keep goes with --webhook-cert-secret")
    webhook = None
    if webhook_cert_secret is not None:
        if webhook_cert is not None:
            raise click.UsageError("--webhook-cert-secret or --webhook-cert, not both")
        namespace, _, name = webhook_cert_secret.partition("/")
        if not namespace or not name or "/" in name:
            raise click.UsageError(
                f"--webhook-cert-secret must be NAMESPACE/NAME (got {webhook_cert_secret!r})"
            )
        webhook = Webhook(
            webhook_address,
            secret=(namespace, name),
            service=webhook_service,
            configuration=webhook_configuration,
            keep=webhook_cert_keep,
        )
    elif webhook_cert is not None and webhook_key is not None:
        webhook = Webhook(webhook_address, files=(webhook_cert, webhook_key))
    from sart.cli.run_controller import serve  # noqa: PLC0415  (the Kubernetes client: only now)

    run_daemon(
        serve(
            kubeconfig, lease_namespace, lease_name, identity, field_manager, leader_elect,
            (lease_duration, renew_deadline, retry_period), metrics_address, webhook,
        ),
        "sart-controller",
    )  # fmt: skip


@click.command()
@click.version_option(package_name="sart")
@options
def main(**kwargs: str | bool | None) -> None:
    """Give Services of type LoadBalancer addresses from AddressPools, and configure the
    nodes' BGP from ClusterBGPs."""
    run(**kwargs)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
