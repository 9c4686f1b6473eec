"""What starting sart's executables costs: wall time and peak RSS of `sartd bgp --help` and
`sart bgp --help`, the modules each loads (and whether the Kubernetes client is among them),
and `sartd bgp` from exec to its API answering.

    python benchmarks/startup.py [--runs 7]

Each figure is the median over the runs (peak RSS: the largest). RSS is the child's own
(os.wait4), so no /usr/bin/time is needed."""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

HELP_COMMANDS = {
    "sartd bgp --help": ("sart.cli.sartd", ["bgp", "--help"]),
    "sart bgp --help": ("sart.cli.sart", ["bgp", "--help"]),
    "sartd --help": ("sart.cli.sartd", ["--help"]),
    "sart-controller --help": ("sart.cli.controller", ["--help"]),
}

# Run a command's main() in this interpreter and say what it loaded (tests/unit/test_imports.py
# runs the same).
PROBE = """
import sys, importlib
module, args = sys.argv[1], sys.argv[2:]
sys.argv = [module, *args]
try:
    importlib.import_module(module).main()
except SystemExit:
    pass
heavy = ("kubernetes_asyncio", "sart.k8s.runtime", "sart.bgp.speaker", "aiohttp")
print(len(sys.modules), *[name for name in heavy if name in sys.modules], file=sys.stderr)
"""


def run_measured(command: list[str]) -> tuple[float, int, str]:
    """Wall seconds, peak RSS in KiB and standard error of one run."""
    began = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert process.stderr is not None
    err = process.stderr.read().decode()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - began
    process.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_maxrss, err


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _readyz(port: int) -> int:
    """The status /readyz answers, 0 while nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as reply:
            if reply.headers.get_content_type() != "application/json":
                return 404  # an older sartd: prometheus_client's metrics on every path
            return int(reply.status)
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


def speaker_startup(config: Path) -> tuple[float, int, float]:
    """Seconds from exec to the API port accepting, peak RSS (KiB) then, and seconds to
    /readyz answering 200 (-1 when the daemon has no /readyz)."""
    api, metrics = free_port(), free_port()
    command = [
        sys.executable, "-m", "sart.cli.sartd", "bgp", "-f", str(config), "--port", "0",
        "--api-address", f"127.0.0.1:{api}", "--metrics-address", f"127.0.0.1:{metrics}",
        "--level", "warning",
    ]  # fmt: skip
    began = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                socket.create_connection(("127.0.0.1", api), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.perf_counter() - began > 30:
                    raise RuntimeError("sartd bgp did not start") from None
                time.sleep(0.002)
        listening = time.perf_counter() - began
        ready = -1.0
        while time.perf_counter() - began < 30:
            answer = _readyz(metrics)
            if answer == 200:
                ready = time.perf_counter() - began
            if answer in (200, 404):  # 404: an older sartd, without /readyz
                break
            time.sleep(0.002)
        status = Path(f"/proc/{process.pid}/status").read_text()
        rss = int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1])
        return listening, rss, ready
    finally:
        process.terminate()
        process.wait(15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    runs = parser.parse_args().runs
    print(f"{'command':<28} {'wall p50':>9} {'max RSS':>9} {'modules':>8}  heavy modules loaded")
    for name, (module, args) in HELP_COMMANDS.items():
        walls, rss = [], 0
        for _ in range(runs):
            wall, peak, _ = run_measured([sys.executable, "-m", module, *args])
            walls.append(wall)
            rss = max(rss, peak)
        _, _, loaded = run_measured([sys.executable, "-c", PROBE, module, *args])
        count, *heavy = loaded.split()
        print(
            f"{name:<28} {statistics.median(walls) * 1000:7.0f} ms {rss / 1024:6.1f} MiB"
            f" {count:>8}  {', '.join(heavy) or '-'}"
        )
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp, "bgp.yaml")
        config.write_text("asn: 65010\nrouter_id: 10.0.0.10\n")
        results = [speaker_startup(config) for _ in range(runs)]
    listening = statistics.median(r[0] for r in results)
    rss = max(r[1] for r in results)
    ready = statistics.median(r[2] for r in results)
    readyz = f", /readyz 200 after {ready * 1000:.0f} ms" if ready >= 0 else ", no /readyz"
    print(
        f"{'sartd bgp to API listening':<28} {listening * 1000:7.0f} ms {rss / 1024:6.1f} MiB"
        f"{readyz}"
    )


if __name__ == "__main__":
    main()
