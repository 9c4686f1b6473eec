"""MRT dump of a full table: a real `sartd bgp` holding 1,000,000 prefixes, dumped with
`sart bgp rib dump --mrt FILE`, and the file read back by bgpdump (the Debian package).

A peer on loopback feeds the daemon 900,000 IPv4 /24s and 100,000 IPv6 /48s (200 attribute
sets: ORIGIN, an AS_PATH of 1-5 hops, the next hop, half with a MED and communities; 500
prefixes per UPDATE), then the End-of-RIBs. Once the Loc-RIB holds them all, the CLI dumps it.
Printed: the dump's wall time (the `sart` process from start to exit, and the time the CLI
itself reports from its first request to the file renamed), the file's size, bgpdump's read
time, and whether the prefixes bgpdump reads are exactly the ones fed (counts, and the set).

The peer measured beside it is BIRD, whose `birdc mrt dump table master4 to FILE` dumps a
table on request (FRR and GoBGP dump on their own intervals only): BIRD, in a network namespace
of the lab, is fed the same IPv4 UPDATEs (the next hop its link address) by ingest.py's feeder,
and dumps its IPv4 table; sart dumps the same IPv4 table (`-a ipv4`) in the same run. Printed:
both times, the ratio, and bgpdump's reading of BIRD's file (exact or not). Needs root.

With `--updates-log`, the same again with the daemon logging every UPDATE it receives
(`sartd bgp --mrt-updates`): ingest time with the log against without (same run), and the
log read back by bgpdump, exactly the prefixes fed.

    sudo .venv/bin/python benchmarks/mrt.py [--ipv4 900000] [--ipv6 100000] [--updates-log]
        [--no-bird]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from netaddr import IPAddress, IPNetwork

from sart.bgp.codes import Afi, Safi
from sart.bgp.context import SessionContext
from sart.bgp.messages import (
    IPV4_UNICAST,
    IPV6_UNICAST,
    AsPath,
    Communities,
    MpReachNlri,
    MultiExitDisc,
    NextHop,
    Origin,
    PathAttribute,
    Update,
)
from sart.bgp.wire import encode_message
from sart.testing import bgpdump
from sart.testing.loopback_bgp import Feeder, SartdBgp
from sart.testing.peers import BgpConfig, Bird, Lab, neighbor, wait_for

CONTEXT = SessionContext(four_octet_as=True)
DAEMON, PEER = "127.0.0.81", "127.0.0.82"
PEER_AS, DAEMON_AS = 65001, 65000
V6_HOP = IPAddress("2001:db8::82")
PER_UPDATE = 500
SEED = 6396


def _attribute_sets(rng: random.Random) -> list[tuple[PathAttribute, ...]]:
    sets = []
    for _ in range(200):
        hops = [rng.randint(1, 64511) for _ in range(rng.randint(0, 4))]
        attributes: list[PathAttribute] = [Origin(0), AsPath.from_asns(PEER_AS, *hops)]
        if rng.random() < 0.5:
            attributes.append(MultiExitDisc(rng.randint(0, 1000)))
            values = sorted({rng.randint(1, 2**32 - 1) for _ in range(rng.randint(1, 4))})
            attributes.append(Communities(tuple(values)))
        sets.append(tuple(attributes))
    return sets


def make_feed(ipv4: int, ipv6: int, next_hop: str = PEER) -> tuple[bytes, list[str]]:
    """The UPDATEs as bytes (IPv4 routes with `next_hop`), and the prefixes they announce."""
    rng = random.Random(SEED)
    sets = _attribute_sets(rng)
    v4 = [IPNetwork(((1 << 24) + (i << 8), 24), 4) for i in range(ipv4)]
    v6 = [IPNetwork(((0x2001_0DB8 << 96) + (i << 80), 48), 6) for i in range(ipv6)]
    messages = []
    for n, start in enumerate(range(0, ipv4, PER_UPDATE)):
        attributes = (*sets[n % len(sets)], NextHop(IPAddress(next_hop)))
        messages.append(
            encode_message(
                Update(attributes=attributes, nlri=v4[start : start + PER_UPDATE]), CONTEXT
            )
        )
    for n, start in enumerate(range(0, ipv6, PER_UPDATE)):
        reach = MpReachNlri(Afi.IPV6, Safi.UNICAST, (V6_HOP,), v6[start : start + PER_UPDATE])
        update = Update(attributes=(*sets[n % len(sets)], reach))
        messages.append(encode_message(update, CONTEXT))
    for family in (IPV4_UNICAST, IPV6_UNICAST):
        messages.append(encode_message(Update.end_of_rib(family), CONTEXT))
    return b"".join(messages), [str(p) for p in (*v4, *v6)]


def run(ipv4: int, ipv6: int, *, log_updates: bool = False) -> dict[str, float]:
    """Feed, dump, read back; prints each step and returns its figures (`exact`: 1.0 when
    bgpdump read exactly the prefixes fed). `log_updates`: the daemon also logs every UPDATE
    (`--mrt-updates`), and bgpdump reads that back too (`log_exact`)."""
    feed, fed = make_feed(ipv4, ipv6)
    print(f"feed: {len(fed):,} prefixes ({ipv4:,} IPv4, {ipv6:,} IPv6)")
    with tempfile.TemporaryDirectory(prefix="sart-mrt-") as name:
        return _measure(Path(name), feed, fed, ipv4, ipv6, log_updates=log_updates)


def _measure(
    directory: Path, feed: bytes, fed: list[str], ipv4: int, ipv6: int, *, log_updates: bool
) -> dict[str, float]:
    config = {
        "asn": DAEMON_AS,
        "router_id": "10.0.0.81",
        "neighbors": [{"address": PEER, "asn": PEER_AS, "passive": True, "hold_time": 240}],
    }
    file, log = directory / "loc.mrt", directory / "updates.mrt"
    flags = ("--mrt-updates", str(log)) if log_updates else ()
    with SartdBgp(directory, DAEMON, config, flags) as daemon:
        feeder = Feeder(DAEMON, daemon.port, source=PEER, asn=PEER_AS)
        try:
            started = time.monotonic()
            feeder.send_raw(feed)
            wait_for(
                lambda: daemon.prefixes() == (ipv4, ipv6),
                timeout=600,
                what="the table in the Loc-RIB",
                interval=0.5,
            )
            ingest = time.monotonic() - started
            logged = " with the updates log" if log_updates else ""
            print(f"ingest{logged}: {ingest:.2f} s (until the Loc-RIB held it all)")
            started = time.monotonic()
            said = daemon.sart("bgp", "rib", "dump", "--mrt", str(file), "--format", "json")
            wall = time.monotonic() - started
            reported = json.loads(said.stdout)
            print(
                f"dump: {wall:.2f} s wall for `sart bgp rib dump --mrt` "
                f"({reported['seconds']:.2f} s as the CLI reports it), "
                f"{reported['bytes']:,} octets"
            )
            ipv4_only = directory / "loc4.mrt"
            said = daemon.sart(
                "bgp", "rib", "dump", "--mrt", str(ipv4_only), "-a", "ipv4", "--format", "json"
            )
            dump_ipv4 = json.loads(said.stdout)["seconds"]
            print(f"dump of the IPv4 table alone (-a ipv4): {dump_ipv4:.2f} s")
        finally:
            feeder.close()
    started = time.monotonic()
    read = bgpdump.prefixes(file)
    reading = time.monotonic() - started
    print(f"bgpdump -m: {reading:.2f} s to read it back")
    exact = len(read) == len(fed) and set(read) == set(fed)
    print(f"bgpdump read {len(read):,} routes for {len(set(read)):,} prefixes; fed {len(fed):,}")
    print(f"exact prefix set: {'yes' if exact else 'NO'}")
    results = {
        "ingest": ingest,
        "dump_wall": wall,
        "dump": reported["seconds"],
        "dump_ipv4": dump_ipv4,
        "bytes": reported["bytes"],
        "bgpdump": reading,
        "exact": float(exact),
    }
    if log_updates:
        announced = bgpdump.prefixes(log)
        log_exact = len(announced) == len(fed) and set(announced) == set(fed)
        print(
            f"updates log: {log.stat().st_size:,} octets; bgpdump read {len(announced):,} "
            f"announcements, exact prefix set: {'yes' if log_exact else 'NO'}"
        )
        results["log_exact"] = float(log_exact)
    return results


def measure_bird(ipv4: int) -> dict[str, float]:
    """BIRD fed the same IPv4 table over BGP in the lab, then `mrt dump` of master4."""
    import ingest  # noqa: PLC0415 - the lab's feeder; needs root, only here

    with Lab("mrt") as lab, tempfile.TemporaryDirectory(prefix="sart-mrt-bird-") as name:
        feeder_ns, bird_ns = lab.namespace("feeder"), lab.namespace("bird")
        pair = lab.link(feeder_ns, bird_ns)
        target, source = pair.b.ipv4, pair.a.ipv4
        feed, fed = make_feed(ipv4, 0, next_hop=source)
        feed_file, file = Path(name) / "feed", Path(name) / "bird.mrt"
        feed_file.write_bytes(feed)
        peer = neighbor(source, PEER_AS, passive=True, hold_time=240)
        bird = lab.start(
            Bird(bird_ns, BgpConfig(router_id=target, local_as=DAEMON_AS, neighbors=(peer,)))
        )
        feeder = ingest._spawn_feeder(feeder_ns, str(feed_file), target, source)
        try:
            wait_for(
                lambda: bird.route_count() >= ipv4,
                timeout=600,
                what="BIRD to hold the table",
                interval=0.5,
            )
            started = time.monotonic()
            bird.birdc("mrt", "dump", "table", "master4", "to", f'"{file}"', timeout=600)
            seconds = time.monotonic() - started
        finally:
            feeder.kill()
            feeder.wait()
        size = file.stat().st_size
        print(f"BIRD: `birdc mrt dump table master4`: {seconds:.2f} s, {size:,} octets")
        read = bgpdump.prefixes(file)
        exact = len(read) == len(fed) and set(read) == set(fed)
        verdict = "yes" if exact else "NO"
        print(f"bgpdump read BIRD's {len(read):,} routes, exact prefix set: {verdict}")
        return {"dump": seconds, "bytes": size, "exact": float(exact)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ipv4", type=int, default=900_000)
    parser.add_argument("--ipv6", type=int, default=100_000)
    parser.add_argument(
        "--updates-log",
        action="store_true",
        help="Then again with --mrt-updates: its cost on ingest, and the log read back.",
    )
    parser.add_argument("--no-bird", action="store_true", help="No comparison with BIRD.")
    args = parser.parse_args()
    plain = run(args.ipv4, args.ipv6)
    good = bool(plain["exact"])
    if not args.no_bird:
        bird = measure_bird(args.ipv4)
        print(f"IPv4 table dump, sart / BIRD: {plain['dump_ipv4'] / bird['dump']:.2f}")
        good = good and bool(bird["exact"])
    if args.updates_log:
        logged = run(args.ipv4, args.ipv6, log_updates=True)
        print(f"ingest with the updates log / without: {logged['ingest'] / plain['ingest']:.2f}")
        good = good and bool(logged["exact"] and logged["log_exact"])
    return 0 if good else 1


if __name__ == "__main__":
    raise SystemExit(main())
