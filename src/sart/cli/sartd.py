"""`sartd`: the daemons. `sartd bgp` runs the BGP speaker (the agent and the controller join
it as subcommands)."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from pathlib import Path
from typing import Any

import click
from grpclib.server import Server
from kubernetes_asyncio.client import ApiClient
from netaddr import AddrFormatError, IPNetwork
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
from sart.cni.spec import DEFAULT_SOCKET as CNI_SOCKET
from sart.errors import ConfigError
from sart.fib.follow import Follower
from sart.fib.kernel import KernelRoutes
from sart.fib.metrics import FibMetrics
from sart.fib.plan import FibConfig, RouteFilter
from sart.k8s.runtime.agent import NodeAgent
from sart.k8s.runtime.cni import GC_INTERVAL, CniService
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
@click.option(
    "--cni-socket",
    default="",
    help='Serve sart-cni on this unix socket (its netconf\'s "socket", by default'
    f" {CNI_SOCKET}): pods get their addresses from this node's AddressBlocks. Empty (the"
    " default): no CNI side.",
)
@click.option(
    "--cni-gc-interval",
    type=click.FloatRange(min=1),
    default=GC_INTERVAL,
    show_default=True,
    help="Seconds between sweeps removing the pod interfaces of pods that no longer exist.",
)
@log_options
def agent(
    kubeconfig: str | None,
    node: str,
    endpoint: str,
    metrics_address: str,
    cni_socket: str,
    cni_gc_interval: float,
    log_format: str,
    level: str,
) -> None:
    """Run the node agent: configure the local speaker as the node's NodeBGP, BGPPeers and
    BGPAdvertisements say, and report its state in their status; with --cni-socket, also
    give pods their addresses and interfaces (sart-cni)."""
    try:
        metrics = parse_endpoint(metrics_address) if metrics_address else None
    except ValueError as error:
        _config_error(str(error))
    if cni_socket and not cni_socket.startswith("/"):
        _config_error(f"--cni-socket {cni_socket!r}: an absolute path is needed")
    configure_logging(log_format, level)
    cni = (cni_socket, cni_gc_interval) if cni_socket else None
    run_daemon(_agent(kubeconfig, node, endpoint, metrics, cni), "sartd agent")


async def _agent(
    kubeconfig: str | None,
    node: str,
    endpoint: str,
    metrics_at: tuple[str, int] | None,
    cni: tuple[str, float] | None,
) -> None:
    await load_kube_config(kubeconfig)
    metrics = AgentMetrics()
    if metrics_at is not None:
        start_http_server(metrics_at[1], metrics_at[0], registry=metrics.registry)
    async with ApiClient() as api:
        await run_until_stopped(_agent_parts(api, node, endpoint, metrics, cni))
    log.info("agent stopped")


async def _agent_parts(
    api: ApiClient,
    node: str,
    endpoint: str,
    metrics: AgentMetrics,
    cni: tuple[str, float] | None,
) -> None:
    async with asyncio.TaskGroup() as parts:
        parts.create_task(NodeAgent(api, node, endpoint, metrics=metrics).run())
        if cni is not None:
            socket_path, gc_interval = cni
            service = CniService(
                api, node, socket_path=socket_path, gc_interval=gc_interval, metrics=metrics
            )
            parts.create_task(service.run())


@main.command("fib")
@click.option(
    "--endpoint",
    default="localhost:5000",
    show_default=True,
    help="The speaker's API (HOST:PORT or unix:PATH), as `sartd agent` reaches it.",
)
@click.option(
    "--table",
    type=click.IntRange(1, 2**32 - 1),
    default=254,
    show_default=True,
    help="Routing table of our routes (254: main).",
)
@click.option(
    "--protocol",
    type=click.IntRange(1, 255),
    default=186,
    show_default=True,
    help="Protocol number our routes carry, and by which we find them again (186: bgp).",
)
@click.option(
    "--metric",
    type=click.IntRange(1, 2**32 - 1),
    default=20,
    show_default=True,
    help="Metric (priority) of our routes.",
)
@click.option(
    "--prefix",
    "prefixes",
    multiple=True,
    help="Install only prefixes inside this one (repeatable). Default: all but the default "
    "routes, which are installed only when named (--prefix 0.0.0.0/0).",
)
@click.option(
    "--family",
    "families",
    type=click.Choice(["ipv4", "ipv6"]),
    multiple=True,
    help="Install only this family (repeatable). Default: both.",
)
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=90.0,
    show_default=True,
    help="Seconds our routes stay when the speaker is gone; and routes a restarted speaker "
    "has not relearned stay until it has been up this long.",
)
@click.option(
    "--resync-interval",
    type=click.FloatRange(min=0),
    default=300.0,
    show_default=True,
    help="Seconds between whole-table reconciles with the speaker and the kernel; 0: never.",
)
@click.option(
    "--flush-on-exit",
    is_flag=True,
    help="Remove our routes when stopped (by default they stay, for a restart to take over).",
)
@click.option(
    "--metrics-address",
    default="0.0.0.0:9472",
    show_default=True,
    help="Where Prometheus metrics (sart_fib_*) are served; empty to turn them off.",
)
@log_options
def fib(
    endpoint: str,
    table: int,
    protocol: int,
    metric: int,
    prefixes: tuple[str, ...],
    families: tuple[str, ...],
    grace: float,
    resync_interval: float,
    flush_on_exit: bool,
    metrics_address: str,
    log_format: str,
    level: str,
) -> None:
    """Install the routes the speaker selected into the kernel (the original's `sartd fib`)."""
    allowed = []
    for text in prefixes:
        try:
            network = IPNetwork(text)
        except (AddrFormatError, ValueError):
            _config_error(f"--prefix {text!r} is not a prefix")
        if network.ip != network.network:
            _config_error(f"--prefix {text!r} has host bits set (did you mean {network.cidr}?)")
        allowed.append(network)
    versions = frozenset(4 if f == "ipv4" else 6 for f in families) or frozenset({4, 6})
    config = FibConfig(
        table=table,
        protocol=protocol,
        metric=metric,
        filter=RouteFilter(prefixes=tuple(allowed), families=versions),
        grace=grace,
    )
    try:
        if unix_socket_path(endpoint) is None:
            parse_endpoint(endpoint)
        metrics = parse_endpoint(metrics_address) if metrics_address else None
    except ValueError as error:
        _config_error(str(error))
    configure_logging(log_format, level)
    run_daemon(_fib(endpoint, config, resync_interval, flush_on_exit, metrics), "sartd fib")


async def _fib(
    endpoint: str,
    config: FibConfig,
    resync_interval: float,
    flush_on_exit: bool,
    metrics_at: tuple[str, int] | None,
) -> None:
    metrics = FibMetrics()
    if metrics_at is not None:
        start_http_server(metrics_at[1], metrics_at[0], registry=metrics.registry)
    async with KernelRoutes(config.table, config.protocol) as kernel:
        follower = Follower(
            endpoint, config, kernel, resync_interval=resync_interval, metrics=metrics
        )
        log.info(
            "fib started",
            extra={"endpoint": endpoint, "table": config.table, "protocol": config.protocol},
        )
        await run_until_stopped(follower.run())
        if flush_on_exit:
            await follower.flush()
    log.info("fib stopped", extra={"routes_left": follower.statistics().routes})


if __name__ == "__main__":
    main()
