"""/healthz and /readyz of real `sartd bgp` and `sartd fib` processes: the speaker is ready once
it listens and its API is up; the FIB once it has reached a speaker and synchronised."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from probes import free_port, probe, wait_probe


def sartd(*args: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "sart.cli.sartd", *args, "--level", "warning"]
    return subprocess.Popen(command, stderr=subprocess.DEVNULL)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        process.terminate()
        assert process.wait(15) == 0


def test_fib_is_ready_once_synchronised_with_a_speaker(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    api, fib_port, bgp_port = f"127.0.0.1:{free_port()}", free_port(), free_port()
    fib = sartd("fib", "--endpoint", api, "--table", "4242",
                "--metrics-address", f"127.0.0.1:{fib_port}")  # fmt: skip
    processes.append(fib)
    assert wait_probe(fib_port, "/healthz", 200) == {
        "status": "ok",
        "checks": {"event_loop": "ok"},
    }
    away = f"not connected to the speaker at {api} and synchronised"  # no speaker
    wait_probe(fib_port, "/readyz", 503, where=lambda body: body["checks"]["speaker"] == away)
    config = tmp_path / "bgp.yaml"
    config.write_text("asn: 65010\nrouter_id: 10.0.0.10\n")
    processes.append(sartd("bgp", "-f", str(config), "--port", "0", "--api-address", api,
                           "--metrics-address", f"127.0.0.1:{bgp_port}"))  # fmt: skip
    assert wait_probe(bgp_port, "/readyz", 200) == {
        "status": "ready",
        "checks": {"event_loop": "ok", "bgp": "ok", "api": "ok"},
    }
    assert probe(bgp_port, "/healthz")[0] == 200
    assert wait_probe(fib_port, "/readyz", 200)["checks"]["speaker"] == "ok"
