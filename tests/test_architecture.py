"""The layering rules of docs/architecture (STYLE.md), checked on the import statements.

Protocol, allocation and reconcile code is sans-IO: it never imports asyncio, sockets, clocks
or network clients. Only the adapter packages may. Dependencies point one way: bgp and ipam
know nothing of Kubernetes, ipam nothing of BGP. The project uses netaddr, never ipaddress.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "sart"
# Packages and modules where I/O lives (the ones STYLE.md marks as adapters).
ADAPTERS = (
    "cli", "api", "k8s/runtime", "bgp/speaker.py", "testing",
    "cni/plugin.py", "cni/podnet.py", "cni/install.py", "fib/kernel.py", "fib/follow.py",
    "bfd/udp.py", "sockets.py", "bgp/bmp_export.py",
)  # fmt: skip
IO_MODULES = {
    "asyncio", "socket", "time", "selectors", "grpclib", "kubernetes_asyncio", "pyroute2",
}  # fmt: skip
FORBIDDEN_BY_PACKAGE = {
    "bgp": {"sart.k8s", "sart.ipam", "sart.cli", "sart.api"},
    "ipam": {"sart.k8s", "sart.bgp", "sart.cli", "sart.api"},
    "cni": {"sart.k8s", "sart.bgp", "sart.cli", "sart.api", "sart.fib"},
    "fib": {"sart.k8s", "sart.cli", "sart.ipam", "sart.cni"},
    "bfd": {"sart.k8s", "sart.cli", "sart.api", "sart.ipam", "sart.bgp"},
}


def _modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def _relative(path: Path) -> str:
    return path.relative_to(SRC).as_posix()


@pytest.mark.parametrize("path", _modules(), ids=_relative)
def test_no_stdlib_ipaddress(path: Path) -> None:
    assert not {n for n in _imports(path) if n.split(".")[0] == "ipaddress"}


@pytest.mark.parametrize(
    "path", [p for p in _modules() if not _relative(p).startswith(ADAPTERS)], ids=_relative
)
def test_core_modules_do_no_io(path: Path) -> None:
    io = {name for name in _imports(path) if name.split(".")[0] in IO_MODULES}
    assert not io, f"{_relative(path)} imports {io}; I/O belongs in an adapter module"


@pytest.mark.parametrize("path", _modules(), ids=_relative)
def test_dependencies_point_one_way(path: Path) -> None:
    package = _relative(path).split("/")[0]
    banned = FORBIDDEN_BY_PACKAGE.get(package, set())
    wrong = {n for n in _imports(path) if any(n == b or n.startswith(b + ".") for b in banned)}
    assert not wrong, f"{_relative(path)} imports {wrong}"


def test_test_modules_have_unique_basenames() -> None:
    """pytest imports test modules by basename (no packages under tests/): two of one name in
    different folders stop the whole run at collection."""
    names = [p.name for p in (SRC.parent.parent / "tests").rglob("test_*.py")]
    assert not {n for n in names if names.count(n) > 1}
