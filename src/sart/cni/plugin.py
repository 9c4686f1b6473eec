"""The `sart-cni` executable: a runtime starts it for every pod network operation.

VERSION is answered here; every other command goes to the node agent (``sartd agent``) over its
unix socket (`sart.cni.spec.DEFAULT_SOCKET`, or the netconf's ``"socket"``), which does the
work and answers in the 1.1.0 shape. On success the plugin prints the ADD result in the
requested version's shape (DEL, CHECK, GC and STATUS print nothing, as the spec says) and exits
0; on failure it prints the spec's error object on stdout and exits 1. Nothing else is ever
written to stdout. A DEL the agent answers with "container unknown" (code 3) succeeds: DEL of
what is already gone must (SPEC.md), and the runtime would otherwise retry it forever.

When the agent cannot be reached (no socket, connection refused, no answer in time) ADD, DEL,
CHECK and GC fail with code 11 (try again later: the kubelet retries) and STATUS with 50
(plugin not available). Only the standard library's cheap modules are imported: start-up time
is paid on every pod.
"""

from __future__ import annotations

import json
import os
import sys
import time

# The C module under `socket`: that one's Python half builds enums of every address family and
# pulls in selectors, about 3 ms of the plugin's ~25 ms start-up, for nothing used here.
from _socket import AF_UNIX, SOCK_STREAM
from _socket import socket as unix_socket

from sart.cni.spec import (
    CURRENT_VERSION,
    CniError,
    ErrorCode,
    Request,
    decode_reply,
    encode_request,
    parse_request,
    result_for_version,
    version_result,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

__all__ = ["call_agent", "main", "run"]

MAX_REPLY = 1 << 20
"""The largest reply read from the agent (a result is a few hundred bytes)."""


def main() -> None:
    """Console script: read stdin, run, print the one JSON document, exit 0 or 1."""
    try:
        stdin = sys.stdin.buffer.read() if sys.stdin is not None else b""  # None: fd 0 closed
    except OSError as e:
        status, output = (
            1,
            _error_output(
                CniError(
                    ErrorCode.IO_FAILURE, "cannot read the network configuration on stdin", str(e)
                )
            ),
        )
    else:
        status, output = run(os.environ, stdin)
    if output:
        sys.stdout.buffer.write(output)
        sys.stdout.buffer.flush()
    sys.exit(status)


def run(environ: Mapping[str, str], stdin: bytes) -> tuple[int, bytes]:
    """One plugin call: the exit status and what to print on stdout."""
    request: Request | None = None
    try:
        request = parse_request(environ, stdin)
        if request.command == "VERSION":
            return 0, _document(version_result(request.version))
        try:
            result = call_agent(request)
        except CniError as error:
            # DEL of what is already gone succeeds (SPEC.md, DEL): should the agent answer
            # "container unknown" rather than an empty result, that is still a success.
            if request.command == "DEL" and error.code == ErrorCode.UNKNOWN_CONTAINER:
                return 0, b""
            raise
        if request.command != "ADD":
            return 0, b""
        return 0, _document(result_for_version(result, request.version))
    except CniError as error:
        return 1, _error_output(error, request)
    except Exception as e:  # a bug here must still reach the runtime as a CNI error
        failed = CniError(ErrorCode.PLUGIN_FAILED, "sart-cni failed", f"{type(e).__name__}: {e}")
        return 1, _error_output(failed, request)


def call_agent(request: Request) -> dict[str, Any]:
    """Send the request to the agent and return its result; every failure is a `CniError`."""
    path = request.agent_socket
    timeout = request.agent_timeout
    unavailable = (
        ErrorCode.PLUGIN_NOT_AVAILABLE if request.command == "STATUS" else ErrorCode.TRY_AGAIN_LATER
    )
    deadline = time.monotonic() + timeout
    sock = unix_socket(AF_UNIX, SOCK_STREAM)
    try:
        try:
            sock.settimeout(timeout)
            sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError) as e:
            raise CniError(
                unavailable,
                f"the sart agent is not running: cannot connect to {path}",
                f"{e.strerror}; is sartd agent running on this node?",
            ) from None
        except TimeoutError:
            raise CniError(
                unavailable,
                f"the sart agent did not accept a connection on {path} in {timeout:g} s",
            ) from None
        except OSError as e:
            raise CniError(
                unavailable, f"cannot connect to the sart agent at {path}", str(e)
            ) from None
        try:
            sock.sendall(encode_request(request))
            reply = _read_reply(sock, deadline)
        except TimeoutError:
            raise CniError(
                unavailable,
                f"the sart agent did not answer {request.command} within {timeout:g} s"
                f" (the netconf's timeout) on {path}",
            ) from None
        except OSError as e:
            raise CniError(
                unavailable, f"the connection to the sart agent at {path} failed", str(e)
            ) from None
    finally:
        sock.close()
    return decode_reply(reply)


def _read_reply(sock: unix_socket, deadline: float) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        sock.settimeout(left)
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_REPLY:
            raise CniError(
                ErrorCode.BAD_AGENT_REPLY, f"the agent's reply is longer than {MAX_REPLY} bytes"
            )


def _document(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, indent=2).encode() + b"\n"


def _error_output(error: CniError, request: Request | None = None) -> bytes:
    version = request.version if request is not None else CURRENT_VERSION
    return _document(error.to_json(version))
