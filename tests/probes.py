"""Reading a daemon's /healthz and /readyz (sart.cli.serving) from tests."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def probe(port: int, path: str) -> tuple[int, Any]:
    """(status, JSON body); (0, None) while nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
    except OSError:
        return 0, None


def wait_probe(
    port: int,
    path: str,
    status: int,
    timeout: float = 30.0,
    where: Callable[[Any], bool] = lambda body: True,
) -> Any:
    """The body of the first answer of `path` with `status` (and a body `where` accepts);
    AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        answer, body = probe(port, path)
        if answer == status and where(body):
            return body
        assert time.monotonic() < deadline, f"{path}: {answer} {body}, not {status}"
        time.sleep(0.05)
