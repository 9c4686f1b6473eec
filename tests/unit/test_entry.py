"""The console scripts name the extra that installs a missing stack, and keep the traceback of
any other missing module. A stack is made missing in a fresh interpreter by putting None in
sys.modules for it, which makes importing it raise ModuleNotFoundError as an absent package
does (tests/test_packaging.py does it for real, with a wheel and the core alone)."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Block `missing`, then run the console script `script` with the arguments that follow.
RUN_WITHOUT = """
import sys
missing, script, *args = sys.argv[1:]
sys.modules[missing] = None
sys.argv = [script, *args]
from sart.cli import entry
getattr(entry, script.replace("-", "_"))()
"""


def run_without(missing: str, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", RUN_WITHOUT, missing, script, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize(
    ("missing", "command", "said"),
    [
        ("click", ("sart", "--help"), "sart: needs click, which is not installed. Install it with:"
         " pip install 'sart[all]'"),
        ("grpclib", ("sart", "bgp", "global", "get"), "sart bgp: needs grpclib, which is not"
         " installed. Install it with: pip install 'sart[api]' (or 'sart[all]' for every"
         " command)"),
        ("kubernetes_asyncio", ("sartd", "agent", "--node", "n1"), "sartd agent: needs"
         " kubernetes-asyncio, which is not installed. Install it with: pip install 'sart[k8s]'"),
        ("pyroute2", ("sartd", "fib"), "sartd fib: needs pyroute2, which is not installed."
         " Install it with: pip install 'sart[netlink]'"),
        ("google.protobuf", ("sartd", "fib"), "sartd fib: needs protobuf"),
        ("prometheus_client", ("sart-controller",), "sart-controller: needs prometheus-client"),
    ],
)  # fmt: skip
def test_a_missing_stack_is_named_with_its_extra(
    missing: str, command: tuple[str, ...], said: str
) -> None:
    result = run_without(missing, *command)
    assert result.returncode == 1
    assert result.stderr.startswith(said), result.stderr
    assert "Traceback" not in result.stderr


def test_any_other_missing_module_keeps_its_traceback() -> None:
    result = run_without("sart.bgp.wire", "sart", "bgp", "decode", "-")
    assert result.returncode == 1
    assert "Traceback" in result.stderr
    assert "ModuleNotFoundError" in result.stderr
