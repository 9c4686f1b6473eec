"""`sartd fib`: the speaker's selected routes into the kernel, with metrics and probes
(imported only when the command runs)."""

from __future__ import annotations

import asyncio
import logging

from netaddr import AddrFormatError, IPNetwork

from sart.api.client import parse_endpoint, unix_socket_path
from sart.cli.daemon import config_error, run_daemon, run_until_stopped
from sart.cli.logs import configure_logging
from sart.cli.serving import Health, HttpEndpoint, daemon_registry
from sart.fib.follow import Follower
from sart.fib.kernel import KernelRoutes
from sart.fib.metrics import FibMetrics
from sart.fib.plan import FibConfig, RouteFilter

log = logging.getLogger("sart.sartd")


def run(
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
    allowed = []
    for text in prefixes:
        try:
            network = IPNetwork(text)
        except (AddrFormatError, ValueError):
            config_error(f"--prefix {text!r} is not a prefix")
        if network.ip != network.network:
            config_error(f"--prefix {text!r} has host bits set (did you mean {network.cidr}?)")
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
        config_error(str(error))
    configure_logging(log_format, level)
    run_daemon(_fib(endpoint, config, resync_interval, flush_on_exit, metrics), "sartd fib")


async def _fib(
    endpoint: str,
    config: FibConfig,
    resync_interval: float,
    flush_on_exit: bool,
    metrics_at: tuple[str, int] | None,
) -> None:
    metrics = FibMetrics(daemon_registry())
    health = Health()
    health.ready("speaker", lambda: "starting")
    health.start_heartbeat(asyncio.get_running_loop())
    served = HttpEndpoint.start(metrics_at, health, metrics.registry) if metrics_at else None
    try:
        async with KernelRoutes(config.table, config.protocol) as kernel:
            follower = Follower(
                endpoint, config, kernel, resync_interval=resync_interval, metrics=metrics
            )
            away = f"not connected to the speaker at {endpoint} and synchronised"
            health.ready("speaker", lambda: None if follower.connected else away)
            log.info(
                "fib started",
                extra={"endpoint": endpoint, "table": config.table, "protocol": config.protocol},
            )
            await run_until_stopped(follower.run())
            if flush_on_exit:
                await follower.flush()
    finally:
        health.stop_heartbeat()
        if served is not None:
            served.close()
    log.info("fib stopped", extra={"routes_left": follower.statistics().routes})
