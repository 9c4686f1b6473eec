"""`sartd`: the daemons. `sartd bgp` runs the BGP speaker (the agent and the controller join
it as subcommands)."""

from __future__ import annotations

import gc
import logging
import sys
from pathlib import Path
from typing import Any

import click
from grpclib.server import Server
from kubernetes_asyncio.client import ApiClient
from prometheus_client import CollectorRegistry, start_http_server

from sart.api.client import parse_endpoint, unix_socket_path
from sart.api.original_service import OriginalBgpService
from sart.api.speaker_service import SpeakerService
from sart.bgp.config import load_config
from sart.bgp.metrics import SpeakerCollector
from sart.bgp.speaker import Speaker
from sart.cli.controller import options as controller_options
from sart.cli.controller import run as run_controller
from sart.cli.daemon import load_kube_config, run_daemon, run_until_stopped, stop_on_signals
from sart.cli.logs import configure_logging, log_options
from sart.errors import ConfigError
from sart.k8s.runtime.agent import NodeAgent
from sart.k8s.runtime.metrics import AgentMetrics

log = logging.getLogger("sart.sartd")


@click.group()
@click.version_option(package_name="sart")
def main() -> None:
    """sartd: the sart daemons."""


def _config_error(message: str) -> None:
    click.echo(f"sartd: {message}", err=True)
    sys.exit(2)


@main.command()
@click.option(
    "-f",
    "--file",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="YAML configuration (the original sart's format, extended).",
)
@click.option("--as", "asn", type=int, help="Our AS number (overrides the file).")
@click.option("--router-id", help="Our BGP identifier, an IPv4 address (overrides the file).")
@click.option("--port", type=click.IntRange(0, 65535), help="TCP port to listen on (default 179).")
@click.option(
    "--api-address",
    default="localhost:5000",
    show_default=True,
    help="Where the gRPC APIs (ours, sart.speaker.v1, and the original's sart.v1) listen: "
    "HOST:PORT or unix:PATH.",
)
@click.option(
    "--metrics-address",
    default="0.0.0.0:9469",
    show_default=True,
    help="Where Prometheus metrics are served; empty to turn them off.",
)
@log_options
def bgp(
    config_file: Path | None,
    asn: int | None,
    router_id: str | None,
    port: int | None,
    api_address: str,
    metrics_address: str,
    log_format: str,
    level: str,
) -> None:
    """Run the BGP speaker."""
    overrides: dict[str, Any] = {}
    if asn is not None:
        overrides["asn"] = asn
    if router_id is not None:
        overrides["router_id"] = router_id
    if port is not None:
        overrides["port"] = port
    text = ""
    where = "config"
    if config_file is not None:
        where = str(config_file)
        try:
            text = config_file.read_text()
        except OSError as error:
            _config_error(f"cannot read {config_file}: {error.strerror}")
    try:
        config = load_config(text, where=where, overrides=overrides)
    except ConfigError as error:
        _config_error(str(error))
    try:
        if unix_socket_path(api_address) is None:
            parse_endpoint(api_address)
        metrics = parse_endpoint(metrics_address) if metrics_address else None
    except ValueError as error:
        _config_error(str(error))
    configure_logging(log_format, level)
    run_daemon(_serve(Speaker(config), api_address, metrics), "sartd bgp")


async def _serve(speaker: Speaker, api: str, metrics: tuple[str, int] | None) -> None:
    # A full table is millions of long-lived objects: the cyclic collector would keep walking
    # them for nothing (a third of decode time in benchmarks/codec.py).
    gc.set_threshold(200_000, 50, 1000)
    stop = stop_on_signals()
    server = Server([SpeakerService(speaker), OriginalBgpService(speaker)])
    try:
        await speaker.start()
        path = unix_socket_path(api)
        if path is not None:
            await server.start(path=path)
        else:
            await server.start(*parse_endpoint(api))
        if metrics is not None:
            registry = CollectorRegistry()
            registry.register(SpeakerCollector(speaker))
            start_http_server(metrics[1], metrics[0], registry=registry)
    except OSError as error:
        log.error("cannot start: %s", error)
        sys.exit(1)
    where = f"{metrics[0]}:{metrics[1]}" if metrics else "off"
    log.info("API listening", extra={"api": api, "metrics": where})
    gc.freeze()
    await stop.wait()
    server.close()
    await speaker.stop("speaker shutting down")
    await server.wait_closed()


@main.command("controller")
@controller_options
def controller(**kwargs: str | bool | None) -> None:
    """Run the LoadBalancer controller (the same as sart-controller)."""
    run_controller(**kwargs)  # type: ignore[arg-type]


@main.command("agent")
@click.option("--kubeconfig", envvar="KUBECONFIG", help="Default: in-cluster config.")
@click.option(
    "--node", envvar="NODE_NAME", required=True, help="This node's name (also $NODE_NAME)."
)
@click.option(
    "--endpoint",
    default="localhost:5000",
    show_default=True,
    help="The local speaker's API (HOST:PORT or unix:PATH) where this node's NodeBGP says"
    " none (spec.speaker.path comes first) or names one that cannot be reached.",
)
@click.option(
    "--metrics-address",
    default="0.0.0.0:9471",
    show_default=True,
    help="Where the agent's Prometheus metrics (sart_agent_*) are served; empty to turn them off.",
)
@log_options
def agent(
    kubeconfig: str | None,
    node: str,
    endpoint: str,
    metrics_address: str,
    log_format: str,
    level: str,
) -> None:
    """Run the node agent: configure the local speaker as the node's NodeBGP, BGPPeers and
    BGPAdvertisements say, and report its state in their status."""
    try:
        metrics = parse_endpoint(metrics_address) if metrics_address else None
    except ValueError as error:
        _config_error(str(error))
    configure_logging(log_format, level)
    run_daemon(_agent(kubeconfig, node, endpoint, metrics), "sartd agent")


async def _agent(
    kubeconfig: str | None, node: str, endpoint: str, metrics_at: tuple[str, int] | None
) -> None:
    await load_kube_config(kubeconfig)
    metrics = AgentMetrics()
    if metrics_at is not None:
        start_http_server(metrics_at[1], metrics_at[0], registry=metrics.registry)
    async with ApiClient() as api:
        await run_until_stopped(NodeAgent(api, node, endpoint, metrics=metrics).run())
    log.info("agent stopped")


if __name__ == "__main__":
    main()
