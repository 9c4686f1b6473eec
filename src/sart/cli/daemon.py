"""What the daemons share around their work: stopping on SIGTERM/SIGINT, failing loudly, and
the kubeconfig.

A daemon's work never ends by itself: if it does, with an exception or not, that is a failure,
logged with its traceback, and the process exits 1 so that its Pod restarts and the restart
shows. Only SIGTERM/SIGINT stop it cleanly (exit 0)."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Coroutine
from typing import Any, NoReturn

log = logging.getLogger("sart.daemon")


class WorkEnded(Exception):
    """The daemon's work returned or raised although nobody asked it to stop."""


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT (a clean stop, not a traceback)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return stop


async def run_until_stopped(work: Coroutine[Any, Any, None]) -> None:
    """Run `work` until a signal asks to stop; then cancel it and wait for it. If the work ends
    first, raise WorkEnded (from its exception, if it had one)."""
    stop = stop_on_signals()
    task = asyncio.create_task(work)
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    ended = task.done() and not stopped.done()
    for pending in (task, stopped):
        pending.cancel()
    await asyncio.gather(task, stopped, return_exceptions=True)
    if ended:
        error = None if task.cancelled() else task.exception()
        raise WorkEnded(f"the work ended by itself: {error!r}") from error


def config_error(message: str, program: str = "sartd") -> NoReturn:
    """A flag or file the daemon cannot start with: said on standard error, exit 2."""
    print(f"{program}: {message}", file=sys.stderr)
    sys.exit(2)


def run_daemon(main: Coroutine[Any, Any, None], name: str) -> None:
    """asyncio.run(main) for a daemon: a failure is logged with its traceback and exits 1."""
    try:
        asyncio.run(main)
    except Exception as error:
        cause = error.__cause__ if isinstance(error, WorkEnded) and error.__cause__ else error
        log.critical(f"{name} failed", exc_info=cause)
        sys.exit(1)


async def load_kube_config(kubeconfig: str | None) -> None:
    """The kubeconfig file if given, else the in-cluster service account."""
    from kubernetes_asyncio import config  # noqa: PLC0415  (only the daemons that talk to k8s)

    if kubeconfig:
        await config.load_kube_config(config_file=kubeconfig)
    else:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
