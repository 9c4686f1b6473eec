"""The `sart-cni` executable: a runtime starts it for every pod network operation.

It forwards the call as the runtime made it (its ``CNI_*`` variables and stdin, byte for byte:
`sart.cni.wire`) to the node agent (``sartd agent``) over its unix socket, and prints the
agent's answer verbatim with its exit status. The agent checks the call and composes that
answer (`sart.cni.spec.parse_request`, `sart.cni.spec.plugin_output`): the ADD result in the
requested version's shape, nothing for DEL, CHECK, GC and STATUS, or the spec's error object
with exit status 1. Nothing else is ever written to stdout.

The normal path (the agent at `sart.cni.wire.DEFAULT_SOCKET`, the default timeout) parses
nothing and so imports neither json nor re: start-up is paid on every pod, and those two are
about a third of it. `sart.cni.spec` (and json) is imported only on the rare paths:

- VERSION, answered here without the agent;
- a netconf that names ``"socket"`` or ``"timeout"`` (seen as those bytes in stdin): it is
  parsed here to read them, and a netconf that does not parse is refused here;
- errors of the plugin's own: the agent cannot be reached (no socket, connection refused, no
  answer in time, the connection closed without one) is code 11 (try again later: the kubelet
  retries), 50 for STATUS (plugin not available); an answer breaking the contract is 103; a bug
  here is 105. When the call itself is malformed, its parse error is reported instead, as the
  agent would have.
"""

import os
import sys
import time

# The C module under `socket`: that one's Python half builds enums of every address family and
# pulls in selectors, about 3 ms of start-up, for nothing used here.
from _socket import AF_UNIX, SOCK_STREAM
from _socket import socket as unix_socket

from sart.cni.wire import (
    DEFAULT_SOCKET,
    DEFAULT_TIMEOUT,
    MAX_ANSWER,
    decode_answer,
    encode_invocation,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["forward", "main", "run"]


class _Failure(Exception):
    """An error of the plugin's own; ``code`` names its `sart.cni.spec.ErrorCode`."""

    code = "PLUGIN_FAILED"

    def __init__(self, msg: str, details: str = "") -> None:
        super().__init__(msg, details)
        self.msg, self.details = msg, details


class _Unavailable(_Failure):
    """The agent cannot be reached or did not answer (50 instead for STATUS)."""

    code = "TRY_AGAIN_LATER"


class _BadAnswer(_Failure):
    """The agent's answer breaks the contract."""

    code = "BAD_AGENT_REPLY"


def main() -> None:
    """Console script: read stdin, run, write what the agent said to print, exit with its status."""
    try:
        stdin = sys.stdin.buffer.read() if sys.stdin is not None else b""  # None: fd 0 closed
    except OSError as e:
        from sart.cni import spec  # noqa: PLC0415 (json: only on this path)

        msg = "cannot read the network configuration on stdin"
        status, output = spec.plugin_output(
            None, error=spec.CniError(spec.ErrorCode.IO_FAILURE, msg, str(e))
        )
    else:
        status, output = run(os.environb, stdin)
    if output:
        sys.stdout.buffer.write(output)
        sys.stdout.buffer.flush()
    sys.exit(status)


def run(environ: "Mapping[bytes, bytes]", stdin: bytes) -> tuple[int, bytes]:
    """One plugin call: the exit status and what to print on stdout."""
    try:
        command = environ.get(b"CNI_COMMAND", b"")
        if command == b"VERSION" or b'"socket"' in stdin or b'"timeout"' in stdin:
            return _run_parsed(environ, stdin)
        return forward(environ, stdin, DEFAULT_SOCKET, DEFAULT_TIMEOUT)
    except _Failure as failure:
        return _own_error(environ, stdin, failure)
    except Exception as e:  # a bug here must still reach the runtime as a CNI error
        return _own_error(environ, stdin, _Failure("sart-cni failed", f"{type(e).__name__}: {e}"))


def _run_parsed(environ: "Mapping[bytes, bytes]", stdin: bytes) -> tuple[int, bytes]:
    """The slow path: parse the call here, for VERSION or for the agent's socket and timeout."""
    from sart.cni import spec  # noqa: PLC0415 (json: only on this path)

    try:
        request = spec.parse_request(_decoded(environ), stdin)
    except spec.CniError as error:
        return spec.plugin_output(None, error=error)
    if request.command == "VERSION":
        return spec.plugin_output(request)
    return forward(environ, stdin, request.agent_socket, request.agent_timeout)


def forward(
    environ: "Mapping[bytes, bytes]", stdin: bytes, path: str, timeout: float
) -> tuple[int, bytes]:
    """Send the call to the agent at ``path`` and return its answer (exit status, stdout).
    Raises `_Unavailable` or `_BadAnswer` when it cannot."""
    command = environ.get(b"CNI_COMMAND", b"").decode("utf-8", "replace") or "the call"
    deadline = time.monotonic() + timeout
    sock = unix_socket(AF_UNIX, SOCK_STREAM)
    try:
        try:
            sock.settimeout(timeout)
            sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError) as e:
            raise _Unavailable(
                f"the sart agent is not running: cannot connect to {path}",
                f"{e.strerror}; is sartd agent running on this node?",
            ) from None
        except TimeoutError:
            raise _Unavailable(
                f"the sart agent did not accept a connection on {path} in {timeout:g} s"
            ) from None
        except OSError as e:
            raise _Unavailable(f"cannot connect to the sart agent at {path}", str(e)) from None
        try:
            sock.sendall(encode_invocation(environ, stdin))
            answer = _read_answer(sock, deadline)
        except TimeoutError:
            raise _Unavailable(
                f"the sart agent did not answer {command} within {timeout:g} s on {path}",
                'the netconf\'s "timeout" sets how long to wait',
            ) from None
        except OSError as e:
            raise _Unavailable(
                f"the connection to the sart agent at {path} failed", str(e)
            ) from None
    finally:
        sock.close()
    if not answer:
        raise _Unavailable(f"the sart agent at {path} closed the connection without answering")
    try:
        return decode_answer(answer)
    except ValueError as e:
        raise _BadAnswer("the sart agent's answer is malformed", str(e)) from None


def _read_answer(sock: unix_socket, deadline: float) -> bytes:
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
        if size > MAX_ANSWER:
            raise _BadAnswer(f"the sart agent's answer is longer than {MAX_ANSWER} bytes")


def _decoded(environ: "Mapping[bytes, bytes]") -> dict[str, str]:
    """The CNI_* variables as `os.environ` has them."""
    return {
        key.decode("utf-8", "surrogateescape"): value.decode("utf-8", "surrogateescape")
        for key, value in environ.items()
        if key.startswith(b"CNI_")
    }


def _own_error(
    environ: "Mapping[bytes, bytes]", stdin: bytes, failure: _Failure
) -> tuple[int, bytes]:
    """The output for an error of the plugin's own, in the call's version. A call that does not
    parse gets its parse error instead, as the agent would have answered it."""
    from sart.cni import spec  # noqa: PLC0415 (json: only on this path)

    request: spec.Request | None
    try:
        request = spec.parse_request(_decoded(environ), stdin)
    except spec.CniError as error:
        return spec.plugin_output(None, error=error)
    except Exception:  # parsing itself failed (a bug): `failure` is that bug, reported as is
        request = None
    code = failure.code
    if isinstance(failure, _Unavailable) and environ.get(b"CNI_COMMAND") == b"STATUS":
        code = "PLUGIN_NOT_AVAILABLE"
    failed = spec.CniError(spec.ErrorCode[code], failure.msg, failure.details)
    return spec.plugin_output(request, error=failed)
