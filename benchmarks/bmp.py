"""What BMP export (RFC 7854) costs the speaker that receives a table.

Two speakers in this process peer over loopback; the feeder holds N prefixes, each its own
UPDATE (their MEDs differ: the most Route Monitoring messages a table can make). The receiver
takes the table twice in the same run: once alone, once reporting to a BMP collector, a
separate process that reads everything and counts the messages by type. Printed: the time
until the receiver's RIB holds every prefix, each way, their ratio, the time until the
collector has every Route Monitoring message, and how long a second collector connecting
then takes to get the whole table from the RIB (the resync: Peer Up, the dump, End-of-RIB).

    .venv/bin/python benchmarks/bmp.py [--prefixes N] [--rounds R]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from typing import Any

from netaddr import IPAddress, IPNetwork

from sart.bgp.bmp_export import BmpExporter
from sart.bgp.config import BmpCollectorConfig, NeighborConfig, PathAttributesConfig
from sart.bgp.fsm import State
from sart.bgp.speaker import Speaker
from sart.testing.loopback import speaker_config

RECEIVER, FEEDER = IPAddress("127.0.0.41"), IPAddress("127.0.0.42")

# The collector: listens, prints its port, counts BMP messages by type until EOF, prints them.
COLLECTOR = """
import json, socket, struct, sys
listener = socket.create_server(("127.0.0.1", 0))
print(listener.getsockname()[1], flush=True)
connection, _ = listener.accept()
counts, data, told = {}, b"", False
while chunk := connection.recv(1 << 20):
    data += chunk
    offset = 0
    while len(data) - offset >= 6:
        _, length, kind = struct.unpack_from("!BIB", data, offset)
        if len(data) - offset < length:
            break
        counts[kind] = counts.get(kind, 0) + 1
        offset += length
    data = data[offset:]
    if counts.get(0, 0) >= int(sys.argv[1]) and not told:
        print(json.dumps(counts), flush=True)
        told = True
"""


async def _wait(check: Any, timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"not in {timeout} s")
        await asyncio.sleep(0.01)


class Collector:
    """A collector process and the exporter reporting to it; `done()` waits until it has read
    `expected` Route Monitoring messages and says how many it had."""

    def __init__(self, receiver: Speaker, expected: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", COLLECTOR, str(expected)], stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        port = int(self.process.stdout.readline())
        config = BmpCollectorConfig(
            address=IPAddress("127.0.0.1"), port=port, statistics_interval=0
        )
        self.exporter = BmpExporter(receiver, [config])
        self.exporter.start()

    async def connected(self) -> None:
        await _wait(lambda: self.exporter.collectors[0].link is not None)

    async def done(self) -> int:
        assert self.process.stdout is not None
        line = await asyncio.to_thread(self.process.stdout.readline)
        counts: dict[str, int] = json.loads(line)
        return counts["0"]

    async def close(self) -> None:
        await self.exporter.stop()
        self.process.terminate()
        self.process.wait()


async def take_table(prefixes: int, *, bmp: bool) -> dict[str, float]:
    """Seconds from peering until the receiver holds every prefix (and, with `bmp`, until
    the collector has read a Route Monitoring message per UPDATE and End-of-RIB, and until a
    second collector connecting then has the whole table from the RIB)."""
    receiver = Speaker(speaker_config(RECEIVER, 65001))
    feeder = Speaker(speaker_config(FEEDER, 65002))
    await receiver.start()
    await feeder.start()
    for index in range(prefixes):
        prefix = IPNetwork(f"10.{index >> 16 & 255}.{index >> 8 & 255}.{index & 255}/32")
        feeder.announce([prefix], PathAttributesConfig(med=index))
    collectors: list[Collector] = []
    result: dict[str, float] = {}
    try:
        if bmp:
            collectors.append(Collector(receiver, prefixes + 1))
            await collectors[0].connected()
        started = time.monotonic()
        receiver.add_neighbor(
            NeighborConfig(address=FEEDER, asn=65002, port=feeder.ports[0], local_address=RECEIVER)
        )
        feeder.add_neighbor(
            NeighborConfig(
                address=RECEIVER, asn=65001, port=receiver.ports[0], local_address=FEEDER
            )
        )
        await _wait(lambda: len(receiver.rib) == prefixes)
        result["rib"] = time.monotonic() - started
        assert receiver.neighbors[FEEDER].state is State.ESTABLISHED
        if bmp:
            result["route_monitoring"] = await collectors[0].done()
            result["collector"] = time.monotonic() - started
            resync_started = time.monotonic()
            collectors.append(Collector(receiver, prefixes + 1))  # the dump and an End-of-RIB
            result["resync_route_monitoring"] = await collectors[1].done()
            result["resync"] = time.monotonic() - resync_started
    finally:
        for collector in collectors:
            await collector.close()
        await receiver.stop()
        await feeder.stop()
    return result


async def run(prefixes: int, rounds: int = 1) -> dict[str, float]:
    """The best of `rounds` of each, taken in turn (other load on the machine only adds)."""
    alone, reporting = [], []
    for _ in range(rounds):
        alone.append(await take_table(prefixes, bmp=False))
        reporting.append(await take_table(prefixes, bmp=True))
    best = min(reporting, key=lambda r: r["rib"])
    return {
        "alone": min(r["rib"] for r in alone),
        "bmp": best["rib"],
        "collector": best["collector"],
        "route_monitoring": best["route_monitoring"],
        "resync": min(r["resync"] for r in reporting),
        "resync_route_monitoring": best["resync_route_monitoring"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prefixes", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    prefixes = arguments.prefixes
    results = asyncio.run(run(prefixes, arguments.rounds))
    print(f"{prefixes:,} prefixes, one UPDATE each, over loopback, best of {arguments.rounds}")
    print(f"receiver alone:              {results['alone']:.2f} s")
    print(f"receiver with a collector:   {results['bmp']:.2f} s "
          f"({results['bmp'] / results['alone']:.2f}x alone)")  # fmt: skip
    print(
        f"collector has every message: {results['collector']:.2f} s "
        f"({results['route_monitoring']:,.0f} Route Monitoring)"
    )
    print(f"a collector connecting then has the table from the RIB in {results['resync']:.2f} s "
          f"({results['resync_route_monitoring']:,.0f} Route Monitoring)")  # fmt: skip


if __name__ == "__main__":
    main()
