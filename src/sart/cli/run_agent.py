"""`sartd agent`: the node agent and its CNI side, with metrics and probes (imported only when
the command runs: this is where the Kubernetes client comes in)."""

from __future__ import annotations

import asyncio
import logging

from kubernetes_asyncio.client import ApiClient

from sart.api.client import parse_endpoint
from sart.cli.daemon import config_error, load_kube_config, run_daemon, run_until_stopped
from sart.cli.logs import configure_logging
from sart.cli.serving import Health, HttpEndpoint, daemon_registry
from sart.k8s.runtime.agent import NodeAgent
from sart.k8s.runtime.binding import AddressBinding
from sart.k8s.runtime.cni import CniService
from sart.k8s.runtime.metrics import AgentMetrics

log = logging.getLogger("sart.sartd")


def run(
    kubeconfig: str | None,
    node: str,
    endpoint: str,
    metrics_address: str,
    cni_socket: str,
    cni_gc_interval: float,
    log_format: str,
    level: str,
    bind_interface: str | None = None,
) -> None:
    try:
        metrics = parse_endpoint(metrics_address) if metrics_address else None
    except ValueError as error:
        config_error(str(error))
    if cni_socket and not cni_socket.startswith("/"):
        config_error(f"--cni-socket {cni_socket!r}: an absolute path is needed")
    configure_logging(log_format, level)
    if bind_interface is not None and not 0 < len(bind_interface) <= 15:
        config_error(f"--bind-addresses={bind_interface!r}: not an interface name")
    cni = (cni_socket, cni_gc_interval) if cni_socket else None
    agent = _agent(kubeconfig, node, endpoint, metrics, cni, bind_interface)
    run_daemon(agent, "sartd agent")


async def _agent(
    kubeconfig: str | None,
    node: str,
    endpoint: str,
    metrics_at: tuple[str, int] | None,
    cni: tuple[str, float] | None,
    bind_interface: str | None,
) -> None:
    health = Health()
    health.ready("watches", lambda: "no kubeconfig loaded yet")
    health.start_heartbeat(asyncio.get_running_loop())
    metrics = AgentMetrics(daemon_registry())
    served = None
    if metrics_at is not None:
        served = HttpEndpoint.start(metrics_at, health, metrics.registry)
    try:
        await load_kube_config(kubeconfig)
        async with ApiClient() as api:
            parts = _agent_parts(api, node, endpoint, metrics, cni, health, bind_interface)
            await run_until_stopped(parts)
    finally:
        health.stop_heartbeat()
        if served is not None:
            served.close()
    log.info("agent stopped")


async def _agent_parts(
    api: ApiClient,
    node: str,
    endpoint: str,
    metrics: AgentMetrics,
    cni: tuple[str, float] | None,
    health: Health,
    bind_interface: str | None = None,
) -> None:
    binding = AddressBinding(bind_interface) if bind_interface is not None else None
    agent = NodeAgent(api, node, endpoint, metrics=metrics, binding=binding)

    def listed() -> str | None:
        waiting = agent.unlisted
        return f"not listed yet: {', '.join(waiting)}" if waiting else None

    health.ready("watches", listed)
    health.fact("speaker", lambda: agent.reached or None)
    async with asyncio.TaskGroup() as parts:
        parts.create_task(agent.run())
        if cni is not None:
            socket_path, gc_interval = cni
            service = CniService(
                api, node, socket_path=socket_path, gc_interval=gc_interval, metrics=metrics
            )
            waiting = "pod pools and blocks not listed, or pod interfaces not read back yet"
            health.ready("cni", lambda: None if service.ready.is_set() else waiting)
            parts.create_task(service.run())
