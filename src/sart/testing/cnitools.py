"""The reference CNI tools: ``cnitool`` and the plugins ``host-local``, ``ptp`` and ``loopback``,
built from Go modules by ``scripts/cni-tools build`` into a cache outside the work tree (one
directory for all four, to use as ``CNI_PATH``). They are what sart-cni is checked and measured
against; see tests/unit/cni/test_reference_tools.py.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Final

__all__ = ["BINARIES", "BIN_DIR_ENV", "CniToolsError", "find_cni_tools"]

BIN_DIR_ENV: Final = "SART_CNI_BIN_DIR"
"""Directory holding the four binaries; skips the build script."""
BINARIES: Final = ("cnitool", "host-local", "ptp", "loopback")
BUILD_SCRIPT: Final = Path(__file__).resolve().parents[3] / "scripts" / "cni-tools"


class CniToolsError(RuntimeError):
    """The reference CNI tools could not be found or built."""


def _has_binaries(directory: Path) -> bool:
    return all(os.access(directory / name, os.X_OK) for name in BINARIES)


def _bin_dir() -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BUILD_SCRIPT), "bin-dir"], capture_output=True, text=True, check=False
    )


def find_cni_tools(build: bool = True) -> Path:
    """The directory with the four binaries: ``$SART_CNI_BIN_DIR`` if set, else the build
    script's cache, built first when ``build`` is true and the cache has none (about a
    minute the first time; a no-op afterwards)."""
    explicit = os.environ.get(BIN_DIR_ENV)
    if explicit:
        if not _has_binaries(Path(explicit)):
            raise CniToolsError(f"${BIN_DIR_ENV}={explicit} lacks one of {', '.join(BINARIES)}")
        return Path(explicit)
    if not BUILD_SCRIPT.is_file():
        raise CniToolsError(
            f"{BUILD_SCRIPT} not found (sart is not installed from a checkout):"
            f" set ${BIN_DIR_ENV} to a directory with {', '.join(BINARIES)}"
        )
    found = _bin_dir()
    if found.returncode != 0 and build:
        # Progress goes straight to our stderr.
        if subprocess.run([str(BUILD_SCRIPT), "build"], check=False).returncode != 0:
            raise CniToolsError(f"{BUILD_SCRIPT} build failed (its output is above)")
        found = _bin_dir()
    if found.returncode != 0:
        raise CniToolsError(f"no CNI tools: {found.stderr.strip()} (run {BUILD_SCRIPT} build)")
    return Path(found.stdout.strip())
