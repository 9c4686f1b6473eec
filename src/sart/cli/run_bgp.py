"""`sartd bgp`: the speaker, its gRPC APIs, and its metrics and probes (imported only when the
command runs)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sys
from pathlib import Path
from typing import Any

from grpclib.server import Server

from sart.api.client import parse_endpoint, unix_socket_path
from sart.api.original_service import OriginalBgpService
from sart.api.speaker_service import SpeakerService
from sart.bgp.bmp_export import BmpExporter
from sart.bgp.config import load_config
from sart.bgp.metrics import SpeakerCollector
from sart.bgp.speaker import Speaker
from sart.cli.daemon import config_error, run_daemon, stop_on_signals
from sart.cli.logs import configure_logging
from sart.cli.mrt_log import UpdateLog
from sart.cli.serving import Health, HttpEndpoint, daemon_registry
from sart.errors import ConfigError

log = logging.getLogger("sart.sartd")


def run(
    config_file: Path | None,
    asn: int | None,
    router_id: str | None,
    port: int | None,
    restarting_side: bool | None,
    defer_end_of_rib: bool | None,
    selection_deferral_time: int | None,
    bmp: tuple[str, ...],
    mrt_updates_file: str | None,
    api_address: str,
    metrics_address: str,
    log_format: str,
    level: str,
) -> None:
    overrides: dict[str, Any] = {}
    if asn is not None:
        overrides["asn"] = asn
    if router_id is not None:
        overrides["router_id"] = router_id
    if port is not None:
        overrides["port"] = port
    for key, value in (
        ("restarting_side", restarting_side),
        ("defer_end_of_rib", defer_end_of_rib),
        ("selection_deferral_time", selection_deferral_time),
        ("mrt_updates_file", mrt_updates_file),
    ):
        if value is not None:
            overrides[key] = value
    if bmp:
        overrides["bmp"] = [_bmp_collector(endpoint) for endpoint in bmp]
    text = ""
    where = "config"
    if config_file is not None:
        where = str(config_file)
        try:
            text = config_file.read_text()
        except OSError as error:
            config_error(f"cannot read {config_file}: {error.strerror}")
    try:
        config = load_config(text, where=where, overrides=overrides)
    except ConfigError as error:
        config_error(str(error))
    try:
        if unix_socket_path(api_address) is None:
            parse_endpoint(api_address)
        metrics = parse_endpoint(metrics_address) if metrics_address else None
    except ValueError as error:
        config_error(str(error))
    configure_logging(log_format, level)
    speaker = Speaker(config)
    with contextlib.ExitStack() as files:
        if config.mrt_updates_file is not None:
            try:
                updates = files.enter_context(open(config.mrt_updates_file, "ab"))
            except OSError as error:
                config_error(f"cannot open {config.mrt_updates_file}: {error.strerror}")
            speaker.monitors.append(UpdateLog(speaker, updates))
        run_daemon(_serve(speaker, api_address, metrics), "sartd bgp")


def _bmp_collector(endpoint: str) -> dict[str, str]:
    """`--bmp ADDRESS:PORT` (`[v6]:PORT`) as an entry of the file's `bmp` list, which the
    configuration then checks."""
    address, _, port = endpoint.rpartition(":")
    if not address or not port:
        config_error(f"--bmp {endpoint!r}: want ADDRESS:PORT")
    return {"address": address.strip("[]"), "port": port}


async def _serve(speaker: Speaker, api: str, metrics: tuple[str, int] | None) -> None:
    # A full table is millions of long-lived objects: the cyclic collector would keep walking
    # them for nothing (a third of decode time in benchmarks/codec.py).
    gc.set_threshold(200_000, 50, 1000)
    stop = stop_on_signals()
    server = Server([SpeakerService(speaker), OriginalBgpService(speaker)])
    health = Health()
    health.ready("bgp", lambda: None if speaker.listening else "not listening for BGP")
    health.ready("api", lambda: f"the API is not listening on {api} yet")
    health.start_heartbeat(asyncio.get_running_loop())
    endpoint = None
    exporter = BmpExporter(speaker, speaker.config.bmp)
    try:
        if metrics is not None:
            registry = daemon_registry()
            registry.register(SpeakerCollector(speaker))
            endpoint = HttpEndpoint.start(metrics, health, registry)
        await speaker.start()
        exporter.start()
        path = unix_socket_path(api)
        if path is not None:
            await server.start(path=path)
        else:
            await server.start(*parse_endpoint(api))
        health.ready("api", lambda: None)
    except OSError as error:
        log.error("cannot start: %s", error)
        sys.exit(1)
    where = f"{metrics[0]}:{metrics[1]}" if metrics else "off"
    log.info("API listening", extra={"api": api, "metrics": where})
    gc.freeze()
    await stop.wait()
    health.ready("api", lambda: "stopping")
    server.close()
    await speaker.stop("speaker shutting down")
    await exporter.stop()  # after the speaker's: the collectors get every Peer Down first
    await server.wait_closed()
    health.stop_heartbeat()
    if endpoint is not None:
        endpoint.close()
