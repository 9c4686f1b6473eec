"""Bulk path API: 100,000 paths added to a running `sartd bgp` through the gRPC API.

Starts sartd on free ports, then adds the paths with SpeakerClient.add_paths in batches
(one call of everything, and batches of 10,000 and 1,000), each into an empty speaker, and
deletes them again. Prints wall time and paths/s per batch size.

    python benchmarks/api_paths.py [--paths 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import time

from sart.api.client import SpeakerClient


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def prefixes(count: int) -> list[str]:
    return [f"{10 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}.0/24" for i in range(count)]


async def measure(endpoint: str, paths: list[str], batch: int) -> tuple[float, float]:
    async with SpeakerClient(endpoint, timeout=600) as client:
        started = time.perf_counter()
        for at in range(0, len(paths), batch):
            await client.add_paths(paths[at : at + batch], communities=["65000:1"])
        added = time.perf_counter() - started
        info = await client.info()
        assert info.local_paths == len(paths), info
        started = time.perf_counter()
        for at in range(0, len(paths), batch):
            await client.delete_paths(paths[at : at + batch])
        return added, time.perf_counter() - started


async def wait_ready(endpoint: str) -> None:
    for _ in range(200):
        try:
            async with SpeakerClient(endpoint, timeout=1) as client:
                await client.health()
                return
        except Exception:  # not up yet
            await asyncio.sleep(0.05)
    raise SystemExit("sartd did not start")


def run(count: int, batches: list[int]) -> list[tuple[int, float, float]]:
    endpoint = f"127.0.0.1:{_free_port()}"
    command = [sys.executable, "-m", "sart.cli.sartd", "bgp", "--as", "65000",
               "--router-id", "10.0.0.1", "--port", "0", "--api-address", endpoint,
               "--metrics-address", "", "--level", "warning"]  # fmt: skip
    daemon = subprocess.Popen(command)
    try:
        asyncio.run(wait_ready(endpoint))
        paths = prefixes(count)
        return [(batch, *asyncio.run(measure(endpoint, paths, batch))) for batch in batches]
    finally:
        daemon.terminate()
        daemon.wait(15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--paths", type=int, default=100_000)
    args = parser.parse_args()
    batches = [args.paths, 10_000, 1_000]
    for batch, added, deleted in run(args.paths, batches):
        print(
            f"batch {batch:>7,}: add {args.paths:,} paths in {added:6.2f} s "
            f"({args.paths / added:>9,.0f} paths/s), delete in {deleted:6.2f} s "
            f"({args.paths / deleted:>9,.0f} paths/s)"
        )


if __name__ == "__main__":
    main()
