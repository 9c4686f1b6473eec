"""Pod network set-up on one node: sart-cni against the reference plugins, in the same run.

The node is a network namespace running the real `sartd agent --cni-socket` (real control
plane, sart-controller serving its BlockRequests, an autoAssign AddressPool of /26 blocks:
`sart.testing.cni_lab`). The reference is `ptp` with `host-local` IPAM (containernetworking
plugins, `scripts/cni-tools`), on the same node. Both are driven the same way a runtime drives
them: a driver process already inside the node's namespace (so no `ip netns exec` is counted)
forks and execs the plugin binary with the CNI_* variables and the netconf on stdin, and times
each call from fork to exit, the plugin's start-up included. CNI_ARGS name a real Pod, as
containerd's do (sart's agent reads it and its namespace for the pool annotation;
`--no-pod-args` leaves them out, to see that part), and a DEL carries the ADD's result as
prevResult, as libcni sends it.

sart's side is deployed as in production: its netconf names no ``"socket"`` (nor
``"timeout"``), so the plugin connects to the default `/run/sart/cni.sock` (a symlink to the
lab agent's socket for the run) on its fast path, which forwards the call without parsing it
and never imports json. A netconf naming its socket makes the plugin parse it first (json, re:
about 10 ms more per call), which is not what a node runs. The benchmark refuses to start when
another agent already serves `/run/sart/cni.sock`, rather than measure (or disturb) that one.

- sequential: N pods (default 200) added one after another, then deleted one after another:
  ADD and DEL latency p50 / p99;
- concurrent: N pods added with C calls in flight (default 20), then deleted the same way:
  pods per second;
- start-up: N VERSION calls, which both plugins answer without any work (sart-cni without its
  agent), fork to exit. sart-cni answers VERSION on its slow path (it parses stdin: json), so
  this is an upper bound of the start-up of its ADD and DEL, which skip json.

A few untimed ADD/DEL pairs first warm both up (page cache, the agent's first block). Prints
the figures, sart / reference ratios and whether the issue's targets hold: sart's ADD p99 under
100 ms with start-up, and sart within 3x of the reference. Nothing is asserted: the figures are
the report.

    python benchmarks/cni.py [--pods 200] [--concurrency 20]

Needs root, the control-plane binaries and the reference tools (both built when missing).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sart.cni.wire import DEFAULT_SOCKET

ADD_P99_TARGET = 0.100
RATIO_TARGET = 3.0
REFERENCE_SUBNET = "10.252.0.0/16"
SART_POOL = "10.244.0.0/16"
PRODUCTION_SOCKET = Path(DEFAULT_SOCKET)


# --- the driver: runs inside the node's namespace, imports nothing heavy ----------------------


def _call(plugin: str, env: dict[str, str], stdin: bytes) -> tuple[float, int, bytes]:
    began = time.perf_counter()
    done = subprocess.run([plugin], input=stdin, env=env, capture_output=True, check=False)
    return time.perf_counter() - began, done.returncode, done.stdout + done.stderr


def drive(spec: dict[str, Any]) -> dict[str, Any]:
    """ADD every pod, then DEL every pod, `concurrency` calls in flight; the timings."""
    netconf = spec["netconf"]
    base = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), **spec["env"]}
    results: dict[str, dict[str, Any]] = {}

    def one(command: str, pod: dict[str, str]) -> tuple[float, int, bytes]:
        env = {
            **base,
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": pod["container"],
            "CNI_NETNS": pod["netns"],
            "CNI_IFNAME": "eth0",
            "CNI_ARGS": pod["args"],
        }
        config = dict(netconf)
        if command == "DEL" and pod["container"] in results:
            config["prevResult"] = results[pod["container"]]
        took, code, out = _call(spec["plugin"], env, json.dumps(config).encode())
        if command == "ADD" and code == 0:
            results[pod["container"]] = json.loads(out)
        return took, code, out

    report: dict[str, Any] = {"VERSION": []}
    version = {"CNI_COMMAND": "VERSION", **base}
    for _ in range(spec.get("versions", 0)):  # the start-up alone: VERSION needs no agent
        took, code, out = _call(spec["plugin"], version, b'{"cniVersion": "1.1.0"}')
        if code != 0:
            raise SystemExit(f"VERSION failed: {out.decode(errors='replace')}")
        report["VERSION"].append(took)
    with ThreadPoolExecutor(spec["concurrency"]) as pool:
        for command in ("ADD", "DEL"):
            began = time.perf_counter()
            calls = list(pool.map(lambda pod, c=command: one(c, pod), spec["pods"]))
            wall = time.perf_counter() - began
            failed = [out.decode(errors="replace") for _, code, out in calls if code != 0]
            report[command] = {"latencies": [took for took, _, _ in calls], "wall": wall,
                               "failed": failed[:3], "failures": len(failed)}  # fmt: skip
    return report


# --- the measurement ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One plugin's ADDs then DELs of N pods."""

    add: list[float]
    delete: list[float]
    add_wall: float
    delete_wall: float
    version: list[float]  # VERSION calls: the plugin's start-up and exit, nothing else

    @property
    def pods(self) -> int:
        return len(self.add)

    def add_rate(self) -> float:
        return self.pods / self.add_wall

    def delete_rate(self) -> float:
        return self.pods / self.delete_wall


@dataclass(frozen=True)
class Report:
    sequential: dict[str, Run]  # "sart" / "reference"
    concurrent: dict[str, Run]
    concurrency: int
    block_requests: dict[str, int]  # BlockRequests sart's agent made during each phase


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (p99 of 200 is the second slowest)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


class Driver:
    """Runs the driver (this file, `--drive`) inside the node's namespace for one plugin."""

    def __init__(self, node: Any, workdir: Path) -> None:
        self.node, self.workdir = node, workdir
        self.runs = 0

    def run(
        self,
        plugin: Path,
        netconf: dict[str, Any],
        env: dict[str, str],
        pods: list[dict[str, str]],
        concurrency: int,
        versions: int = 0,
    ) -> Run:
        self.runs += 1
        spec_file = self.workdir / f"spec-{self.runs}.json"
        spec = {"plugin": str(plugin), "netconf": netconf, "env": env, "pods": pods,
                "concurrency": concurrency, "versions": versions}  # fmt: skip
        spec_file.write_text(json.dumps(spec))
        command = [sys.executable, str(Path(__file__).resolve()), "--drive", str(spec_file)]
        done = self.node.run(command, timeout=1800)
        report = json.loads(done.stdout)
        for phase in ("ADD", "DEL"):
            if report[phase]["failures"]:
                raise SystemExit(
                    f"{plugin.name} {phase}: {report[phase]['failures']} of {len(pods)} failed;"
                    f" first: {report[phase]['failed'][0]}"
                )
        return Run(
            add=report["ADD"]["latencies"],
            delete=report["DEL"]["latencies"],
            add_wall=report["ADD"]["wall"],
            delete_wall=report["DEL"]["wall"],
            version=report["VERSION"],
        )


def refuse_a_served_default_socket() -> None:
    """SystemExit when another agent serves `PRODUCTION_SOCKET`; a stale one is removed."""
    if not (PRODUCTION_SOCKET.exists() or PRODUCTION_SOCKET.is_symlink()):
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(PRODUCTION_SOCKET))
    except OSError:
        PRODUCTION_SOCKET.unlink()  # stale: nobody serves it
    else:
        raise SystemExit(
            f"{PRODUCTION_SOCKET} is served by another agent: stop it (or run on a node without"
            " one); the benchmark runs sart-cni as deployed, on that path"
        )
    finally:
        probe.close()


@contextlib.contextmanager
def default_socket_to(target: Path) -> Iterator[None]:
    """`PRODUCTION_SOCKET` leads to ``target`` (a symlink) for the run."""
    refuse_a_served_default_socket()
    PRODUCTION_SOCKET.parent.mkdir(parents=True, exist_ok=True)
    PRODUCTION_SOCKET.symlink_to(target)
    try:
        yield
    finally:
        if PRODUCTION_SOCKET.is_symlink() and PRODUCTION_SOCKET.readlink() == target:
            PRODUCTION_SOCKET.unlink()


async def measure(pods: int, concurrency: int, warmup: int = 3, *, pod_args: bool = True) -> Report:
    from sart.testing.cni_lab import cni_lab  # noqa: PLC0415 (not in the driver)
    from sart.testing.cnitools import find_cni_tools  # noqa: PLC0415

    refuse_a_served_default_socket()  # before minutes of set-up, and again once it is done
    tools = find_cni_tools(build=True)
    async with contextlib.AsyncExitStack() as stack:
        lab = await stack.enter_async_context(
            cni_lab(pool_cidr=SART_POOL, block_size=26, agent_level="info")
        )
        stack.enter_context(default_socket_to(lab.socket))
        workdir = Path(tempfile.mkdtemp(prefix="bench-", dir=lab.workdir))
        names = [f"bench-{n}" for n in range(pods)]
        await lab.create_pods(names)
        sandboxes = await asyncio.to_thread(lab.sandboxes_for, pods)
        driver = Driver(lab.node, workdir)
        reference_conf = {
            "cniVersion": "1.1.0", "name": "reference", "type": "ptp", "ipMasq": False,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": REFERENCE_SUBNET}]],
                     "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(workdir / "ipam")},
        }  # fmt: skip
        # The netconf a node has: no "socket" (the default), no "timeout".
        sart_conf = {k: v for k, v in lab.netconf().items() if k != "socket"}
        plugins = {
            "reference": (tools / "ptp", reference_conf, {"CNI_PATH": str(tools)}),
            "sart": (lab.plugin_dir() / "sart-cni", sart_conf, {"CNI_PATH": "/opt/cni/bin"}),
        }
        rounds = iter(range(1_000_000))

        def batch(count: int) -> list[dict[str, str]]:
            tag = next(rounds)
            return [
                {"container": f"{tag:08x}{n:08x}{os.urandom(24).hex()}",
                 "netns": lab.netns_path(sandboxes[n]),
                 "args": lab.cni_args(names[n]) if pod_args else "IgnoreUnknown=1"}
                for n in range(count)
            ]  # fmt: skip

        def run(side: str, count: int, in_flight: int) -> Run:
            plugin, conf, env = plugins[side]
            versions = count if in_flight == 1 else 0
            return driver.run(plugin, conf, env, batch(count), in_flight, versions)

        def block_requests() -> int:
            return lab.agent_log.read_text(errors="replace").count("block requested")

        for side in plugins:
            await asyncio.to_thread(run, side, min(warmup, pods), 1)
        sequential, concurrent, asked = {}, {}, {}
        for side in plugins:
            before = block_requests()
            sequential[side] = await asyncio.to_thread(run, side, pods, 1)
            asked["sequential"] = block_requests() - before
        for side in plugins:
            before = block_requests()
            concurrent[side] = await asyncio.to_thread(run, side, pods, concurrency)
            asked["concurrent"] = block_requests() - before
        return Report(sequential, concurrent, concurrency, asked)


def print_report(report: Report) -> bool:
    """Print the figures, the ratios and the targets; True when every target holds."""
    sart, ref = report.sequential["sart"], report.sequential["reference"]
    pods = sart.pods
    print(f"== sequential: {pods} pods, one call at a time (ms, plugin start-up included)")
    print(f"{'':18}{'sart':>10}{'reference':>12}{'sart/ref':>10}")
    ratios: dict[str, float] = {}
    for label, mine, theirs in (
        ("ADD p50", percentile(sart.add, 50), percentile(ref.add, 50)),
        ("ADD p99", percentile(sart.add, 99), percentile(ref.add, 99)),
        ("DEL p50", percentile(sart.delete, 50), percentile(ref.delete, 50)),
        ("DEL p99", percentile(sart.delete, 99), percentile(ref.delete, 99)),
        ("ADD max", max(sart.add), max(ref.add)),
        ("start-up p50", percentile(sart.version, 50), percentile(ref.version, 50)),
        ("ADD mean", statistics.fmean(sart.add), statistics.fmean(ref.add)),
    ):
        ratios[label] = mine / theirs
        print(f"{label:18}{mine * 1000:10.1f}{theirs * 1000:12.1f}{mine / theirs:9.2f}x")
    csart, cref = report.concurrent["sart"], report.concurrent["reference"]
    print(f"== concurrent: {pods} pods, {report.concurrency} calls in flight (pods/s)")
    print(f"{'':18}{'sart':>10}{'reference':>12}{'ref/sart':>10}")
    for label, mine, theirs in (
        ("ADD pods/s", csart.add_rate(), cref.add_rate()),
        ("DEL pods/s", csart.delete_rate(), cref.delete_rate()),
    ):
        ratios[label] = theirs / mine
        print(f"{label:18}{mine:10.1f}{theirs:12.1f}{theirs / mine:9.2f}x")
    print(
        f"{'ADD p50 / p99':18}{percentile(csart.add, 50) * 1000:5.0f}/"
        f"{percentile(csart.add, 99) * 1000:<4.0f}{percentile(cref.add, 50) * 1000:7.0f}/"
        f"{percentile(cref.add, 99) * 1000:<4.0f} ms under load"
    )
    print(
        f"sart's agent asked for {report.block_requests['sequential']} new /26 block(s) in the"
        f" sequential run, {report.block_requests['concurrent']} in the concurrent one (each"
        " ADD that waits for one pays a BlockRequest round trip through sart-controller)"
    )
    add_p99 = percentile(sart.add, 99)
    targets = {
        f"sart ADD p99 {add_p99 * 1000:.1f} ms < {ADD_P99_TARGET * 1000:.0f} ms": (
            add_p99 < ADD_P99_TARGET
        ),
        **{
            f"{label} within {RATIO_TARGET:g}x of the reference ({ratio:.2f}x)": (
                ratio <= RATIO_TARGET
            )
            for label, ratio in ratios.items()
            if label in ("ADD p50", "ADD p99", "DEL p50", "DEL p99", "ADD pods/s")
        },
    }
    print("== targets")
    for text, held in targets.items():
        print(f"{'holds ' if held else 'MISSED'}  {text}")
    return all(targets.values())


def run(pods: int, concurrency: int, *, pod_args: bool = True) -> Report:
    return asyncio.run(measure(pods, concurrency, pod_args=pod_args))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument(
        "--no-pod-args",
        action="store_true",
        help="CNI_ARGS without K8S_POD_*: sart's agent then reads nothing from the apiserver",
    )
    parser.add_argument("--drive", type=Path, help=argparse.SUPPRESS)  # the driver's own call
    args = parser.parse_args()
    if args.drive is not None:
        print(json.dumps(drive(json.loads(args.drive.read_text()))))
        return
    report = run(args.pods, args.concurrency, pod_args=not args.no_pod_args)
    print_report(report)


if __name__ == "__main__":
    main()
