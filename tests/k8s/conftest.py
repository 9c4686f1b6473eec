"""Fixtures for tests against the real Kubernetes control plane (sart.testing.controlplane).

One control plane per pytest session (`control_plane`), started on first use and stopped at the
end; every test gets its own namespace (`namespace`) and a kubernetes-asyncio client built from
the generated kubeconfig (`k8s`). The binaries come from `scripts/k8s-control-plane build`; when
they are missing the fixture builds them (long the first time) rather than skipping the tests.
The start-up time is printed in the test summary.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from sart.testing.controlplane import (
    ControlPlane,
    ControlPlaneError,
    create_namespace,
    delete_namespace,
    find_binaries,
    unique_name,
)
from sart.testing.proxy import TcpProxy, proxied_kubeconfig

REPORT = pytest.StashKey[list[str]]()


def report(config: pytest.Config, line: str) -> None:
    """Add a line to the "k8s control plane" section of the test summary."""
    config.stash.setdefault(REPORT, []).append(line)


def _binaries(config: pytest.Config) -> Path:
    """The cached binaries; built first if missing, with the build's progress shown live."""
    try:
        return find_binaries(build=False)
    except ControlPlaneError:
        pass
    began = time.monotonic()
    capture = config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(
            "\nno control-plane binaries yet: running scripts/k8s-control-plane build", flush=True
        )
        found = find_binaries(build=True)
    report(config, f"binaries built in {time.monotonic() - began:.0f} s")
    return found


def built_tool(request: pytest.FixtureRequest, script: str) -> Path:
    """The binary of scripts/<script> (kubectl, helm), built first when missing, with the
    build's progress shown live (minutes when the Go caches are cold)."""
    path = Path(__file__).resolve().parents[2] / "scripts" / script
    found = subprocess.run([path, "path"], capture_output=True, text=True, check=False)
    if found.returncode != 0:
        capture = request.config.pluginmanager.getplugin("capturemanager")
        with capture.global_and_fixture_disabled():
            print(f"\nno {script} yet: running scripts/{script} build", flush=True)
            subprocess.run([path, "build"], check=True)
        found = subprocess.run([path, "path"], capture_output=True, text=True, check=True)
    return Path(found.stdout.strip())


@pytest.fixture(scope="session")
def kubectl(request: pytest.FixtureRequest) -> Path:
    """scripts/kubectl's binary (the control plane's Kubernetes version)."""
    return built_tool(request, "kubectl")


@pytest.fixture(scope="session")
def helm(request: pytest.FixtureRequest) -> Path:
    """scripts/helm's binary."""
    return built_tool(request, "helm")


@pytest.fixture(scope="session")
def control_plane(request: pytest.FixtureRequest) -> Iterator[ControlPlane]:
    plane = ControlPlane(_binaries(request.config))
    times = plane.start()
    report(request.config, f"ready in {times}")
    try:
        yield plane
    finally:
        began = time.monotonic()
        plane.stop()
        report(request.config, f"stopped in {time.monotonic() - began:.1f} s")


@pytest.fixture
def k8s_report(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Adds a line to the "k8s control plane" section of the test summary."""
    return lambda line: report(request.config, line)


@pytest_asyncio.fixture
async def k8s(control_plane: ControlPlane) -> AsyncIterator[Any]:
    """A kubernetes_asyncio ApiClient for the admin user (system:masters)."""
    async with await control_plane.api_client() as api:
        yield api


@pytest_asyncio.fixture
async def namespace(k8s: Any, request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A fresh namespace named after the test, deleted afterwards (pods force-deleted first)."""
    name = unique_name(request.node.name.removeprefix("test_"))
    await create_namespace(k8s, name)
    yield name
    await delete_namespace(k8s, name)


@pytest.fixture
def proxy(control_plane: ControlPlane) -> Iterator[TcpProxy]:
    """A TCP proxy to the apiserver, to cut or refuse one client's connections."""
    with TcpProxy.from_url(control_plane.server) as running:
        yield running


@pytest_asyncio.fixture
async def proxied(
    control_plane: ControlPlane, proxy: TcpProxy, tmp_path: Path
) -> AsyncIterator[Any]:
    """An ApiClient whose every connection goes through `proxy` (the daemon under test's)."""
    kubeconfig = proxied_kubeconfig(control_plane.kubeconfig, proxy, tmp_path / "kubeconfig")
    async with await control_plane.api_client(kubeconfig) as api:
        yield api


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    lines = config.stash.get(REPORT, [])
    if lines:
        terminalreporter.section("k8s control plane")
        for line in lines:
            terminalreporter.write_line(line)
