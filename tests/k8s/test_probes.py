"""/readyz of real `sartd agent` and `sart-controller` processes against the real apiserver:
503 while the apiserver cannot be reached (a proxy refusing their connections), 200 once their
watches have listed; a standby controller is ready too, and says `leader: false`."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from probes import free_port, probe, wait_probe
from sart.testing.controlplane import ControlPlane, unique_name
from sart.testing.crds import apply_crds
from sart.testing.proxy import TcpProxy, proxied_kubeconfig

pytestmark = [pytest.mark.k8s, pytest.mark.asyncio]


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        process.terminate()
    assert [process.wait(15) for process in started] == [0] * len(started)


def start(processes: list[subprocess.Popen[bytes]], module: str, *args: str) -> int:
    """Start a daemon; the port of its /metrics, /healthz and /readyz."""
    port = free_port()
    command = [sys.executable, "-m", module, *args, "--metrics-address", f"127.0.0.1:{port}"]
    processes.append(subprocess.Popen([*command, "--level", "warning"], stderr=subprocess.DEVNULL))
    return port


async def wait(port: int, status: int, reason: str = "") -> Any:
    """/readyz's body once it answers `status` (and a check's reason starts with `reason`)."""

    def says(body: Any) -> bool:
        return any(check.startswith(reason) for check in body["checks"].values())

    return await asyncio.to_thread(wait_probe, port, "/readyz", status, 60.0, says)


async def test_agent_ready_once_its_watches_listed(
    k8s: Any, control_plane: ControlPlane, proxy: TcpProxy, tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],
) -> None:  # fmt: skip
    await apply_crds(k8s)
    proxy.refuse()
    kubeconfig = proxied_kubeconfig(control_plane.kubeconfig, proxy, tmp_path / "kubeconfig")
    node = unique_name("probe")
    port = start(processes, "sart.cli.sartd", "agent", "--kubeconfig", str(kubeconfig),
                 "--node", node, "--endpoint", f"unix:{tmp_path}/none.sock")  # fmt: skip
    body = await wait(port, 503, "not listed yet: nodebgps, bgppeers")
    assert body["speaker"] is None
    assert probe(port, "/healthz")[0] == 200  # alive, only not ready
    proxy.accept()
    assert (await wait(port, 200))["checks"] == {"event_loop": "ok", "watches": "ok"}


async def test_controller_ready_as_leader_and_as_standby(
    k8s: Any, control_plane: ControlPlane, proxy: TcpProxy, namespace: str, tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],
) -> None:  # fmt: skip
    await apply_crds(k8s)
    proxy.refuse()
    lease = unique_name("probe")
    options = ["--lease-namespace", namespace, "--lease-name", lease, "--retry-period", "0.5",
               "--renew-deadline", "2", "--lease-duration", "3"]  # fmt: skip
    proxied = proxied_kubeconfig(control_plane.kubeconfig, proxy, tmp_path / "kubeconfig")
    leader = start(processes, "sart.cli.controller", "--kubeconfig", str(proxied), *options)
    body = await wait(leader, 503, f"the Lease {lease} not read yet")
    assert body["leader"] is False
    proxy.accept()
    assert (await wait(leader, 200))["leader"] is True
    kubeconfig = str(control_plane.kubeconfig)
    standby = start(processes, "sart.cli.controller", "--kubeconfig", kubeconfig, *options)
    assert await wait(standby, 200) == {
        "status": "ready",
        "checks": {"event_loop": "ok", "controller": "ok"},
        "leader": False,
    }
