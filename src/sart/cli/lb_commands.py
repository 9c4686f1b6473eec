"""`sart lb list`: every LoadBalancer address in the cluster and where it is announced from."""

from __future__ import annotations

import json

import click


@click.group("lb")
def lb() -> None:
    """LoadBalancer addresses in the cluster (reads the apiserver)."""


@lb.command("list")
@click.option("--kubeconfig", envvar="KUBECONFIG", help="Default: ~/.kube/config.")
@click.option("--format", "output", type=click.Choice(["plain", "json"]), default="plain")
def lb_list(kubeconfig: str | None, output: str) -> None:
    """Address, in use, namespace, Service, pool and the nodes announcing it."""
    from sart.cli.run_lb import read_rows  # noqa: PLC0415  (the Kubernetes client: only now)

    rows = read_rows(kubeconfig)
    if output == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    header = ["ADDRESS", "IN USE", "NAMESPACE", "SERVICE", "POOL", "POLICY", "NODES"]
    table = [
        [r["address"], "yes" if r["in_use"] else "no", r["namespace"], r["service"], r["pool"],
         r["policy"], ",".join(r["nodes"]) or "-"]
        for r in rows
    ]  # fmt: skip
    widths = [max(len(str(c)) for c in column) for column in zip(header, *table, strict=True)]
    for row in (header, *table):
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
