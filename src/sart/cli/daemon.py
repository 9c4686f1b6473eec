"""What the daemons share around their work: stopping on SIGTERM/SIGINT, and the kubeconfig."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine
from typing import Any


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT (a clean stop, not a traceback)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return stop


async def run_until_stopped(work: Coroutine[Any, Any, None]) -> None:
    """Run `work` until it ends or a signal asks to stop; then cancel it and wait for it."""
    stop = stop_on_signals()
    task = asyncio.create_task(work)
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    for pending in (task, stopped):
        pending.cancel()
    await asyncio.gather(task, stopped, return_exceptions=True)


async def load_kube_config(kubeconfig: str | None) -> None:
    """The kubeconfig file if given, else the in-cluster service account."""
    from kubernetes_asyncio import config  # noqa: PLC0415  (only the daemons that talk to k8s)

    if kubeconfig:
        await config.load_kube_config(config_file=kubeconfig)
    else:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
