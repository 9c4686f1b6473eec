"""The real `sart-cni` executable, run as a runtime runs it, against a stub agent.

`stub_agent` is a few lines of unix-socket server in this file, not sart's agent: it records
the request line and answers what the test tells it to (or nothing, or late). What is proven
here is the plugin's side of the contract: what it forwards, what it prints, its exit status,
and how it fails when the agent is missing, slow or talks nonsense.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sart.cni.spec import CniError, ErrorCode, encode_reply, encode_request, parse_request

PLUGIN = Path(sys.executable).with_name("sart-cni")
RESULT: dict[str, Any] = {
    "cniVersion": "1.1.0",
    "interfaces": [{"name": "eth0", "mac": "0a:58:0a:00:00:02", "sandbox": "/run/netns/p"}],
    "ips": [{"address": "10.0.0.5/32", "gateway": "169.254.1.1", "interface": 0}],
    "routes": [{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}],
    "dns": {},
}


class StubAgent:
    """A unix-socket server answering each connection with ``reply`` after ``delay`` seconds
    (``reply=None``: close without answering). ``requests`` holds the lines received."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.reply: bytes | None = encode_reply(RESULT)
        self.delay = 0.0
        self.requests: list[bytes] = []
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(path))
        self._server.listen(8)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return  # closed
            with conn:
                data = b""
                while not data.endswith(b"\n"):
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                self.requests.append(data)
                time.sleep(self.delay)
                if self.reply is not None:
                    with contextlib.suppress(OSError):  # the plugin may have given up first
                        conn.sendall(self.reply)

    def close(self) -> None:
        self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()
        self._thread.join(timeout=5)


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    # Short: a unix socket path is at most 107 bytes, and tmp_path can be longer.
    path = Path(tempfile.mkdtemp(prefix="sart-cni-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def stub_agent(socket_dir: Path) -> Iterator[StubAgent]:
    agent = StubAgent(socket_dir / "cni.sock")
    yield agent
    agent.close()


def netconf(sock: Path, version: str = "1.1.0", **extra: Any) -> dict[str, Any]:
    return {"cniVersion": version, "name": "sart", "type": "sart-cni", "socket": str(sock), **extra}


def cni_env(command: str) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
    environ.update(
        CNI_COMMAND=command,
        CNI_CONTAINERID="c0ffee",
        CNI_NETNS="/run/netns/p",
        CNI_IFNAME="eth0",
        CNI_ARGS="K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0",
        CNI_PATH="/opt/cni/bin",
    )
    return environ


class Outcome:
    def __init__(self, done: subprocess.CompletedProcess[bytes], seconds: float) -> None:
        self.status = done.returncode
        self.stdout = done.stdout
        self.stderr = done.stderr
        self.seconds = seconds
        # Exactly one JSON document, or nothing at all.
        self.document: dict[str, Any] | None = json.loads(done.stdout) if done.stdout else None

    @property
    def code(self) -> int:
        assert self.document is not None, self.stderr
        return int(self.document["code"])


def run_plugin(command: str, stdin: bytes | dict[str, Any]) -> Outcome:
    data = stdin if isinstance(stdin, bytes) else json.dumps(stdin).encode()
    began = time.monotonic()
    done = subprocess.run(
        [str(PLUGIN)],
        input=data,
        env=cni_env(command),
        capture_output=True,
        timeout=60,
        check=False,
    )
    return Outcome(done, time.monotonic() - began)


def test_the_executable_is_installed() -> None:
    assert PLUGIN.is_file(), f"{PLUGIN} missing: run `pip install -e .` (scripts/setup does)"


def test_version_is_answered_without_an_agent() -> None:
    out = run_plugin("VERSION", b'{"cniVersion": "0.3.1"}')
    assert out.status == 0
    assert out.document == {
        "cniVersion": "0.3.1",
        "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"],
    }


def test_add_with_stub_agent_forwards_the_request_and_prints_the_result(
    stub_agent: StubAgent,
) -> None:
    config = netconf(stub_agent.path, ipam={"pool": "default"})
    out = run_plugin("ADD", config)
    assert (out.status, out.stderr) == (0, b"")
    assert out.document == RESULT
    # The one line the agent got is exactly what the contract's encoder makes of the call.
    expected = encode_request(parse_request(cni_env("ADD"), json.dumps(config).encode()))
    assert stub_agent.requests == [expected]
    sent = json.loads(stub_agent.requests[0])
    assert sent["args"] == {"K8S_POD_NAMESPACE": "default", "K8S_POD_NAME": "web-0"}
    assert sent["config"] == config


@pytest.mark.parametrize("version", ["0.3.0", "0.3.1", "0.4.0", "1.0.0"])
def test_add_with_stub_agent_answers_in_the_requested_version(
    stub_agent: StubAgent, version: str
) -> None:
    out = run_plugin("ADD", netconf(stub_agent.path, version))
    assert out.status == 0
    assert out.document is not None
    assert out.document["cniVersion"] == version
    ip = out.document["ips"][0]
    assert ("version" in ip) == (version != "1.0.0")
    assert json.loads(stub_agent.requests[0])["cniVersion"] == version


@pytest.mark.parametrize("command", ["DEL", "CHECK", "GC", "STATUS"])
def test_other_commands_with_stub_agent_print_nothing_on_success(
    stub_agent: StubAgent, command: str
) -> None:
    # The agent answers {"result": {}}, also for a DEL of a container it does not know.
    stub_agent.reply = encode_reply()
    config = netconf(stub_agent.path, prevResult=RESULT, **{"cni.dev/valid-attachments": []})
    out = run_plugin(command, config)
    assert (out.status, out.stdout, out.stderr) == (0, b"", b"")
    assert json.loads(stub_agent.requests[0])["command"] == command


def test_agent_error_with_stub_agent_is_printed_and_exits_1(stub_agent: StubAgent) -> None:
    stub_agent.reply = encode_reply(
        error=CniError(ErrorCode.POOL_EXHAUSTED, "no address left", "pool default")
    )
    out = run_plugin("ADD", netconf(stub_agent.path, "0.4.0"))
    assert out.status == 1
    assert out.document == {
        "cniVersion": "0.4.0",
        "code": 100,
        "msg": "no address left",
        "details": "pool default",
    }


def test_del_with_stub_agent_saying_unknown_container_succeeds(stub_agent: StubAgent) -> None:
    stub_agent.reply = encode_reply(error=CniError(ErrorCode.UNKNOWN_CONTAINER, "no such pod"))
    out = run_plugin("DEL", netconf(stub_agent.path))
    assert (out.status, out.stdout) == (0, b"")
    # Only DEL: for CHECK "container unknown" is an answer the runtime must see.
    out = run_plugin("CHECK", netconf(stub_agent.path, prevResult=RESULT))
    assert (out.status, out.code) == (1, ErrorCode.UNKNOWN_CONTAINER)


@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK", "GC"])
def test_agent_down_is_try_again_later_naming_the_socket(socket_dir: Path, command: str) -> None:
    path = socket_dir / "absent.sock"
    out = run_plugin(command, netconf(path, prevResult={}, **{"cni.dev/valid-attachments": []}))
    assert (out.status, out.code) == (1, ErrorCode.TRY_AGAIN_LATER)
    assert str(path) in out.document["msg"]  # type: ignore[index]


def test_agent_refusing_connections_is_try_again_later(socket_dir: Path) -> None:
    path = socket_dir / "stale.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))  # the file stays, nobody listens: ECONNREFUSED
    stale.close()
    out = run_plugin("ADD", netconf(path))
    assert (out.status, out.code) == (1, ErrorCode.TRY_AGAIN_LATER)
    assert str(path) in out.document["msg"]  # type: ignore[index]


def test_status_with_agent_down_is_plugin_not_available(socket_dir: Path) -> None:
    out = run_plugin("STATUS", netconf(socket_dir / "absent.sock"))
    assert (out.status, out.code) == (1, ErrorCode.PLUGIN_NOT_AVAILABLE)


def test_add_with_stub_agent_too_slow_times_out(stub_agent: StubAgent) -> None:
    stub_agent.delay = 3.0
    out = run_plugin("ADD", netconf(stub_agent.path, timeout=0.5))
    assert (out.status, out.code) == (1, ErrorCode.TRY_AGAIN_LATER)
    assert "within 0.5 s" in out.document["msg"]  # type: ignore[index]
    assert out.seconds < 2.5


def test_add_with_stub_agent_closing_without_reply_is_try_again_later(
    stub_agent: StubAgent,
) -> None:
    stub_agent.reply = None
    out = run_plugin("ADD", netconf(stub_agent.path))
    assert (out.status, out.code) == (1, ErrorCode.TRY_AGAIN_LATER)


@pytest.mark.parametrize("reply", [b"garbage", b'{"result": [1]}\n', b'{"result": {"ips": 3}}\n'])
def test_add_with_stub_agent_talking_nonsense_is_bad_agent_reply(
    stub_agent: StubAgent, reply: bytes
) -> None:
    stub_agent.reply = reply
    out = run_plugin("ADD", netconf(stub_agent.path))
    assert (out.status, out.code) == (1, ErrorCode.BAD_AGENT_REPLY)


@pytest.mark.parametrize("junk", [b"", b"not json", b"\xff", b"[]"])
def test_junk_stdin_is_decode_failure(stub_agent: StubAgent, junk: bytes) -> None:
    out = run_plugin("ADD", junk)
    assert (out.status, out.code) == (1, ErrorCode.DECODE_FAILURE)
    assert stub_agent.requests == []  # nothing was forwarded


def test_missing_variable_is_named(stub_agent: StubAgent) -> None:
    environ = cni_env("ADD")
    del environ["CNI_IFNAME"]
    done = subprocess.run(
        [str(PLUGIN)],
        input=json.dumps(netconf(stub_agent.path)).encode(),
        env=environ,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    error = json.loads(done.stdout)
    assert (error["code"], error["msg"]) == (4, "CNI_IFNAME is not set")


def test_the_plugin_imports_only_cheap_modules() -> None:
    """Start-up is paid on every pod: no attrs, netaddr, typing, asyncio or the socket module."""
    probe = "import sys, sart.cni.plugin; print(' '.join(sorted(sys.modules)))"
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    heavy = {"attrs", "netaddr", "typing", "asyncio", "socket", "selectors", "pyroute2", "cattrs"}
    assert not loaded & heavy
