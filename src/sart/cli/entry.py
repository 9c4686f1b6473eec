"""The console scripts' entry points. Each runs its command and, when the command needs a stack
that is not installed, says which extra installs it instead of ending in a traceback.

This module imports only the standard library, so it runs in an install of the core alone
(`pip install sart`), where click itself is missing."""

from __future__ import annotations

import importlib
import sys

# The top-level modules the optional stacks provide: the distribution each comes from, and the
# extra of pyproject.toml that installs it (docs/install.md).
PROVIDER_OF_MODULE = {
    "grpclib": ("grpclib", "api"),
    "google": ("protobuf", "api"),
    "kubernetes_asyncio": ("kubernetes-asyncio", "k8s"),
    "aiohttp": ("aiohttp", "k8s"),
    "yarl": ("yarl", "k8s"),
    "cryptography": ("cryptography", "k8s"),
    "pyroute2": ("pyroute2", "netlink"),
    "click": ("click", "all"),
    "prometheus_client": ("prometheus-client", "all"),
}


def missing_stack(error: ModuleNotFoundError) -> str | None:
    """What to tell the user when `error` is a module of an optional stack that is not
    installed; None when it is not one of theirs (a bug or a broken install: its traceback is
    the useful answer then)."""
    provider = PROVIDER_OF_MODULE.get((error.name or "").partition(".")[0])
    if provider is None:
        return None
    distribution, extra = provider
    advice = f"needs {distribution}, which is not installed. Install it with: pip install "
    if extra == "all":
        return f"{advice}'sart[all]'"
    return f"{advice}'sart[{extra}]' (or 'sart[all]' for every command)"


def run(script: str, module: str) -> None:
    """Run `module`'s main() as the console script `script`."""
    try:
        importlib.import_module(module).main()
    except ModuleNotFoundError as error:
        advice = missing_stack(error)
        if advice is None:
            raise
        command = " ".join([script, *(word for word in sys.argv[1:2] if word[:1] != "-")])
        sys.exit(f"{command}: {advice}")


def sart() -> None:
    run("sart", "sart.cli.sart")


def sartd() -> None:
    run("sartd", "sart.cli.sartd")


def sart_controller() -> None:
    run("sart-controller", "sart.cli.controller")
