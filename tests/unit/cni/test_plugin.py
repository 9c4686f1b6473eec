"""The real `sart-cni` executable, run as a runtime runs it, against a stub agent.

`StubAgent` is a few lines of unix-socket server in this file, not sart's agent: it reads the
invocation (`sart.cni.wire`), records the variables and stdin it carries, and answers as the
agent does (`spec.parse_request`, then `spec.plugin_output` of a canned result or error), or
with raw bytes the test sets, or nothing, or late. What is proven here is the plugin's side of
the contract: what it forwards, that it prints the answer as is, its exit status, and how it
fails when the agent is missing, slow or talks nonsense.

The plugin has two paths: a netconf naming its own ``"socket"`` or ``"timeout"`` is parsed by
the plugin (most tests: the stub listens on a socket of the test's), one without goes straight
to `DEFAULT_SOCKET` without importing json. The fast-path tests bind the stub there, and skip
when a real agent already serves it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sart.cni.spec import CniError, ErrorCode, parse_request, plugin_output
from sart.cni.wire import (
    DEFAULT_SOCKET,
    MAGIC,
    decode_invocation,
    encode_answer,
    invocation_size,
)

PLUGIN = Path(sys.executable).with_name("sart-cni")
RESULT: dict[str, Any] = {
    "cniVersion": "1.1.0",
    "interfaces": [{"name": "eth0", "mac": "0a:58:0a:00:00:02", "sandbox": "/run/netns/p"}],
    "ips": [{"address": "10.0.0.5/32", "gateway": "169.254.1.1", "interface": 0}],
    "routes": [{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}],
    "dns": {},
}


class StubAgent:
    """A unix-socket server answering each invocation after ``delay`` seconds: as the agent
    would with ``result`` (or ``error``), or with ``raw`` bytes when set (``b""``: close without
    answering). ``invocations`` holds the (variables, stdin) received."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.result: dict[str, Any] = RESULT
        self.error: CniError | None = None
        self.raw: bytes | None = None
        self.delay = 0.0
        self.invocations: list[tuple[dict[str, str], bytes]] = []
        self.malformed: list[tuple[bytes, str]] = []
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
                answer = self._answer(_receive(conn))
                time.sleep(self.delay)
                with contextlib.suppress(OSError):  # the plugin may have given up first
                    conn.sendall(answer)

    def _answer(self, data: bytes) -> bytes:
        try:
            environ, stdin = decode_invocation(data)
        except ValueError as error:
            self.malformed.append((data, str(error)))
            return b""
        self.invocations.append((environ, stdin))
        if self.raw is not None:
            return self.raw
        try:
            request = parse_request(environ, stdin)
        except CniError as error:
            return encode_answer(*plugin_output(None, error=error))
        if self.error is not None:
            return encode_answer(*plugin_output(request, error=self.error))
        return encode_answer(*plugin_output(request, result=self.result))

    def close(self) -> None:
        self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()
        self._thread.join(timeout=5)
        assert not self.malformed, self.malformed


def _receive(conn: socket.socket) -> bytes:
    """One invocation: to the end its size line announces (or to EOF, if it has none)."""
    data = b""
    while True:
        end = data.find(b"\n", len(MAGIC))
        if len(data) >= len(MAGIC) and end >= 0:
            with contextlib.suppress(ValueError):
                env_size, stdin_size = invocation_size(data[len(MAGIC) : end + 1])
                if len(data) >= end + 1 + env_size + stdin_size:
                    return data
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk


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


@pytest.fixture
def default_socket() -> Iterator[Path]:
    """`DEFAULT_SOCKET`, free for the test (and removed after); skips when it is served."""
    path = Path(DEFAULT_SOCKET)
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.stat().st_mode):
            pytest.skip(f"{path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except ConnectionRefusedError:
            path.unlink()  # stale: left by an agent that died
        else:
            pytest.skip(f"an agent already serves {path}: the fast path cannot be tested here")
        finally:
            probe.close()
    made = not path.parent.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except PermissionError:
        pytest.skip(f"cannot create {path.parent} (the fast path's socket) as this user")
    yield path
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    if made:
        with contextlib.suppress(OSError):
            path.parent.rmdir()


@pytest.fixture
def default_agent(default_socket: Path) -> Iterator[StubAgent]:
    agent = StubAgent(default_socket)
    yield agent
    agent.close()


def netconf(sock: Path | None, version: str = "1.1.0", **extra: Any) -> dict[str, Any]:
    """A netconf naming ``sock`` (the slow path), or none (the fast path, `DEFAULT_SOCKET`)."""
    config = {"cniVersion": version, "name": "sart", "type": "sart-cni", **extra}
    return {**config, "socket": str(sock)} if sock is not None else config


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


def cni_only(environ: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in environ.items() if k.startswith("CNI_")}


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


def run_plugin(
    command: str,
    stdin: bytes | dict[str, Any],
    environ: dict[str, str] | None = None,
    argv: list[str] | None = None,
) -> Outcome:
    data = stdin if isinstance(stdin, bytes) else json.dumps(stdin).encode()
    began = time.monotonic()
    done = subprocess.run(
        argv or [str(PLUGIN)],
        input=data,
        env=cni_env(command) if environ is None else environ,
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


def test_add_with_stub_agent_forwards_the_call_and_prints_the_result(
    stub_agent: StubAgent,
) -> None:
    config = json.dumps(netconf(stub_agent.path, ipam={"pool": "default"}), indent=1).encode()
    out = run_plugin("ADD", config)
    assert (out.status, out.stderr) == (0, b"")
    assert out.document == RESULT
    # The agent got the runtime's CNI_* variables (and only those) and stdin byte for byte.
    assert stub_agent.invocations == [(cni_only(cni_env("ADD")), config)]


def test_the_answer_is_printed_verbatim(stub_agent: StubAgent) -> None:
    stub_agent.raw = encode_answer(0, b'{"anything": "the agent says"}  \n')
    out = run_plugin("ADD", netconf(stub_agent.path))
    assert (out.status, out.stdout) == (0, b'{"anything": "the agent says"}  \n')
    stub_agent.raw = encode_answer(1, b"")
    out = run_plugin("DEL", netconf(stub_agent.path))
    assert (out.status, out.stdout, out.stderr) == (1, b"", b"")


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


@pytest.mark.parametrize("command", ["DEL", "CHECK", "GC", "STATUS"])
def test_other_commands_with_stub_agent_print_nothing_on_success(
    stub_agent: StubAgent, command: str
) -> None:
    stub_agent.result = {}
    config = netconf(stub_agent.path, prevResult=RESULT, **{"cni.dev/valid-attachments": []})
    out = run_plugin(command, config)
    assert (out.status, out.stdout, out.stderr) == (0, b"", b"")
    assert stub_agent.invocations[0][0]["CNI_COMMAND"] == command


def test_agent_error_with_stub_agent_is_printed_and_exits_1(stub_agent: StubAgent) -> None:
    stub_agent.error = CniError(ErrorCode.POOL_EXHAUSTED, "no address left", "pool default")
    out = run_plugin("ADD", netconf(stub_agent.path, "0.4.0"))
    assert out.status == 1
    assert out.document == {
        "cniVersion": "0.4.0",
        "code": 100,
        "msg": "no address left",
        "details": "pool default",
    }


def test_del_with_stub_agent_saying_unknown_container_succeeds(stub_agent: StubAgent) -> None:
    stub_agent.error = CniError(ErrorCode.UNKNOWN_CONTAINER, "no such pod")
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
    out = run_plugin("ADD", netconf(stub_agent.path, "0.4.0", timeout=0.5))
    assert (out.status, out.code) == (1, ErrorCode.TRY_AGAIN_LATER)
    assert out.document is not None and out.document["cniVersion"] == "0.4.0"
    assert "within 0.5 s" in out.document["msg"]
    assert out.seconds < 2.5


def test_add_with_stub_agent_closing_without_answer_is_try_again_later(
    stub_agent: StubAgent,
) -> None:
    stub_agent.raw = b""
    out = run_plugin("ADD", netconf(stub_agent.path))
    assert (out.status, out.code) == (1, ErrorCode.TRY_AGAIN_LATER)
    assert "without answering" in out.document["msg"]  # type: ignore[index]


@pytest.mark.parametrize(
    "answer", [b"garbage", b"0", b"-1\n", b"256\n{}", b'{"result": {}}\n', b"\n" + b"x" * 99]
)
def test_add_with_stub_agent_talking_nonsense_is_bad_agent_reply(
    stub_agent: StubAgent, answer: bytes
) -> None:
    stub_agent.raw = answer
    out = run_plugin("ADD", netconf(stub_agent.path, "1.0.0"))
    assert (out.status, out.code) == (1, ErrorCode.BAD_AGENT_REPLY)
    assert out.document is not None and out.document["cniVersion"] == "1.0.0"


def test_an_answer_too_long_is_bad_agent_reply(stub_agent: StubAgent) -> None:
    stub_agent.raw = encode_answer(0, b" " * (1 << 20))
    out = run_plugin("ADD", netconf(stub_agent.path))
    assert (out.status, out.code) == (1, ErrorCode.BAD_AGENT_REPLY)


@pytest.mark.parametrize("junk", [b'{"socket": ', b'["socket"]', b'{"timeout": 1}'])
def test_a_netconf_the_plugin_must_read_and_cannot_is_refused_here(
    stub_agent: StubAgent, junk: bytes
) -> None:
    out = run_plugin("ADD", junk)
    assert (out.status, out.code) in {(1, ErrorCode.DECODE_FAILURE), (1, 7)}
    assert stub_agent.invocations == []  # nothing was forwarded


@pytest.mark.parametrize("fast", [False, True], ids=["own-socket", "default-socket"])
def test_missing_variable_is_named(
    request: pytest.FixtureRequest, stub_agent: StubAgent, fast: bool
) -> None:
    agent = request.getfixturevalue("default_agent") if fast else stub_agent
    environ = cni_env("ADD")
    del environ["CNI_IFNAME"]
    out = run_plugin("ADD", netconf(None if fast else agent.path), environ)
    assert out.status == 1
    assert out.document is not None
    assert (out.document["code"], out.document["msg"]) == (4, "CNI_IFNAME is not set")
    # Checked where the netconf is parsed: by the plugin on its slow path, the agent on the fast.
    assert len(agent.invocations) == int(fast)


# --- the fast path: a netconf without "socket" or "timeout" --------------------------------------


def test_the_fast_path_forwards_to_the_default_socket(default_agent: StubAgent) -> None:
    config = json.dumps(netconf(None, "0.3.1", ipam={"pool": "default"})).encode()
    out = run_plugin("ADD", config)
    assert (out.status, out.stderr) == (0, b"")
    assert out.document is not None and out.document["cniVersion"] == "0.3.1"
    assert default_agent.invocations == [(cni_only(cni_env("ADD")), config)]
    out = run_plugin("DEL", netconf(None))
    assert (out.status, out.stdout, out.stderr) == (0, b"", b"")


@pytest.mark.parametrize("junk", [b"", b"not json", b"\xff", b"[]"])
def test_junk_stdin_is_decode_failure_from_the_agent(default_agent: StubAgent, junk: bytes) -> None:
    out = run_plugin("ADD", junk)
    assert (out.status, out.code) == (1, ErrorCode.DECODE_FAILURE)
    assert default_agent.invocations == [(cni_only(cni_env("ADD")), junk)]


@pytest.mark.usefixtures("default_socket")
@pytest.mark.parametrize(
    ("command", "code"),
    [("ADD", ErrorCode.TRY_AGAIN_LATER), ("STATUS", ErrorCode.PLUGIN_NOT_AVAILABLE)],
)
def test_the_fast_path_with_agent_down(command: str, code: int) -> None:
    out = run_plugin(command, netconf(None, "0.4.0" if command == "ADD" else "1.1.0"))
    assert (out.status, out.code) == (1, code)
    assert DEFAULT_SOCKET in out.document["msg"]  # type: ignore[index]


@pytest.mark.usefixtures("default_socket")
def test_the_fast_path_with_agent_down_still_reports_a_malformed_call_as_such() -> None:
    out = run_plugin("ADD", b"not json")
    assert (out.status, out.code) == (1, ErrorCode.DECODE_FAILURE)


# --- what the plugin imports --------------------------------------------------------------------

HEAVY = {"attrs", "netaddr", "typing", "asyncio", "socket", "selectors", "pyroute2", "cattrs"}
# What the fast path must not load either: json pulls in re (and its regex compiles), enum.
SLOW = {"json", "re", "enum", "sart.cni.spec", "__future__"}
# Runs the plugin's main() and reports on stderr every module loaded by the time it exits.
PROBE = """
import sys
from sart.cni.plugin import main
try:
    main()
finally:
    sys.stderr.write("MODULES " + " ".join(sorted(sys.modules)))
"""


def _modules_of(out: Outcome) -> set[str]:
    return set(out.stderr.decode().rpartition("MODULES ")[2].split())


def test_the_plugin_imports_only_cheap_modules() -> None:
    """Start-up is paid on every pod: no attrs, netaddr, typing, asyncio or the socket module,
    and importing the plugin loads neither json nor re."""
    probe = "import sys, sart.cni.plugin; print(' '.join(sorted(sys.modules)))"
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    assert not loaded & (HEAVY | SLOW)


@pytest.mark.parametrize("command", ["ADD", "DEL"])
def test_the_fast_path_imports_neither_json_nor_re(default_agent: StubAgent, command: str) -> None:
    out = run_plugin(command, netconf(None), argv=[sys.executable, "-c", PROBE])
    assert out.status == 0, out.stderr
    loaded = _modules_of(out)
    assert "sart.cni.plugin" in loaded
    assert not loaded & (HEAVY | SLOW)
    assert len(default_agent.invocations) == 1


def test_the_slow_path_is_the_one_paying_for_json(stub_agent: StubAgent) -> None:
    out = run_plugin("ADD", netconf(stub_agent.path), argv=[sys.executable, "-c", PROBE])
    assert out.status == 0, out.stderr
    loaded = _modules_of(out)
    assert {"json", "sart.cni.spec"} <= loaded
    assert not loaded & HEAVY
