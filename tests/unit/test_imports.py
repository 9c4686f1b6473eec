"""The executables load only what their command needs: `sartd bgp` and `sart bgp` never the
Kubernetes client nor the runtime, `sart-controller` never the BGP speaker (start-up time and
memory: benchmarks/startup.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Run a command's main() (or import a module) in a fresh interpreter; print what it loaded.
PROBE = """
import importlib, sys
module, args = sys.argv[1], sys.argv[2:]
sys.argv = [module, *args]
try:
    loaded = importlib.import_module(module)
    if args:
        loaded.main()
except SystemExit:
    pass
print(" ".join(sorted(sys.modules)))
"""


def loaded(module: str, *args: str) -> set[str]:
    command = [sys.executable, "-c", PROBE, module, *args]
    result = subprocess.run(command, capture_output=True, text=True, check=True, timeout=60)
    return set(result.stdout.split())


def heavy(modules: set[str], *prefixes: str) -> set[str]:
    return {m for m in modules if any(m == p or m.startswith(f"{p}.") for p in prefixes)}


@pytest.mark.parametrize(
    ("module", "args"),
    [
        ("sart.cli.sartd", ("bgp", "--help")),
        ("sart.cli.sartd", ("--help",)),
        ("sart.cli.sart", ("bgp", "--help")),
        ("sart.cli.sart", ("bgp", "global", "get", "--help")),
        ("sart.cli.run_bgp", ()),  # what `sartd bgp` runs
    ],
)
def test_the_bgp_side_never_loads_kubernetes(module: str, args: tuple[str, ...]) -> None:
    modules = loaded(module, *args)
    stacks = ("kubernetes_asyncio", "aiohttp", "yarl", "cryptography", "pyroute2")
    assert heavy(modules, "sart.k8s.runtime", *stacks) == set()


def test_sart_controller_never_loads_the_speaker() -> None:
    assert heavy(loaded("sart.cli.controller", "--help"), "kubernetes_asyncio", "sart.bgp") == set()
    assert heavy(loaded("sart.cli.run_controller"), "sart.bgp.speaker", "sart.bgp.session") == set()


def test_the_agents_gc_default_is_the_runtimes() -> None:
    from sart.cli.sartd import CNI_GC_INTERVAL  # noqa: PLC0415
    from sart.k8s.runtime.cni import GC_INTERVAL  # noqa: PLC0415

    assert CNI_GC_INTERVAL == GC_INTERVAL
