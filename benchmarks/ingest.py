"""Full-table ingest: sart's speaker against GoBGP and BIRD, the same feed, in the same run.

A feeder in its own network namespace opens a BGP session to the daemon under test (in
another namespace, over a veth pair), then sends a pre-encoded table as fast as TCP takes it:
1,000,000 IPv4 /24s whose attributes are shared the way a real table shares them (20,000
attribute sets of 1-5 AS hops, MEDs and communities, about 50 prefixes per UPDATE), then an
End-of-RIB. Measured per daemon: wall time from the session being up until every prefix is in
its Loc-RIB (sart logs its End-of-RIB after applying everything before it; GoBGP and BIRD are
polled for their route count), and the daemon's peak RSS (VmHWM). Then sart re-advertises the
table to a second peer: time from that session being up until the peer has the End-of-RIB.

Targets: sart ingest time within 2x GoBGP's, sart peak RSS below GoBGP's.

    python benchmarks/ingest.py [--prefixes 1000000] [--targets sart,gobgp,bird]

Needs root (namespaces) and the daemons (scripts/setup installs them).
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from netaddr import IPAddress, IPNetwork

from sart.bgp.context import SessionContext
from sart.bgp.export import pack_updates
from sart.bgp.fsm import Config, State
from sart.bgp.messages import (
    IPV4_UNICAST,
    AsPath,
    Communities,
    FourOctetAsCapability,
    MultiExitDisc,
    MultiprotocolCapability,
    Open,
    Origin,
    PathAttribute,
    Update,
)
from sart.bgp.session import Session
from sart.bgp.wire import encode_message
from sart.bgp.wire.framing import MessageSplitter
from sart.testing.netns import Namespace
from sart.testing.peers import BgpConfig, Bird, GoBgp, Lab, neighbor, read_status_kib

CONTEXT = SessionContext(four_octet_as=True)
FEEDER_AS, TARGET_AS, SINK_AS = 65001, 65000, 65003
SEED = 4724
FEEDER_ADDRESS = "10.255.1.1"  # the first link of a Lab: the feeder's end


def make_feed(prefixes: int, attribute_sets: int = 20_000) -> bytes:
    """The table as UPDATE bytes, then the IPv4 End-of-RIB."""
    rng = random.Random(SEED)
    sets: list[tuple[PathAttribute, ...]] = []
    for _ in range(attribute_sets):
        hops = [rng.randint(1, 64511) for _ in range(rng.randint(1, 5))]
        attributes: list[PathAttribute] = [Origin(0), AsPath.from_asns(FEEDER_AS, *hops)]
        if rng.random() < 0.5:
            attributes.append(MultiExitDisc(rng.randint(0, 1000)))
        if rng.random() < 0.6:
            values = sorted({rng.randint(1, 2**32 - 1) for _ in range(rng.randint(1, 4))})
            attributes.append(Communities(tuple(values)))
        sets.append(tuple(attributes))
    next_hop = IPAddress(FEEDER_ADDRESS)
    routes = [
        (IPNetwork(((1 << 24) + (i << 8), 24), 4), rng.choice(sets), next_hop)
        for i in range(prefixes)
    ]
    updates = pack_updates(routes, CONTEXT)
    updates.append(Update.end_of_rib(IPV4_UNICAST))
    return b"".join(encode_message(u, CONTEXT) for u in updates)


def _open_session(
    target: str, source: str, asn: int, router_id: str
) -> tuple[socket.socket, Session]:
    local = Open(
        my_as=asn,
        hold_time=240,
        bgp_id=IPAddress(router_id),
        capabilities=(MultiprotocolCapability(1, 1), FourOctetAsCapability(asn)),
    )
    session = Session(Config(local=local))
    sock = socket.create_connection((target, 179), timeout=30, source_address=(source, 0))
    session.start(time.monotonic())
    session.connection_made(time.monotonic())
    sock.sendall(session.data_to_send())
    while session.state is not State.ESTABLISHED:
        data = sock.recv(65536)
        if not data:
            raise SystemExit(f"{target} closed the connection during the handshake")
        session.receive_data(data, time.monotonic())
        sock.sendall(session.data_to_send())
    return sock, session


def _keep_alive(sock: socket.socket, session: Session) -> None:
    """Answer the peer until it closes or this process is killed."""
    sock.settimeout(1.0)
    while True:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            data = None
        if data == b"":
            return
        now = time.monotonic()
        if data:
            session.receive_data(data, now)
        session.handle_timer(now)
        sock.sendall(session.data_to_send())


def run_feeder(target: str, source: str, feed_file: str) -> None:
    feed = Path(feed_file).read_bytes()
    sock, session = _open_session(target, source, FEEDER_AS, source)
    print(json.dumps({"established": time.monotonic()}), flush=True)
    sock.sendall(feed)
    print(json.dumps({"sent": time.monotonic()}), flush=True)
    _keep_alive(sock, session)


def run_sink(target: str, source: str) -> None:
    """Count what the target re-advertises until its IPv4 End-of-RIB."""
    sock, _ = _open_session(target, source, SINK_AS, source)
    start = time.monotonic()
    splitter = MessageSplitter()
    prefixes = 0
    end_of_rib = encode_message(Update.end_of_rib(IPV4_UNICAST), CONTEXT)
    while True:
        data = sock.recv(1 << 20)
        if not data:
            raise SystemExit("the target closed the session")
        splitter.feed(data)
        for raw in splitter:
            if raw == end_of_rib:
                print(json.dumps({"seconds": time.monotonic() - start, "prefixes": prefixes}))
                return
            if raw[18] == 2:  # UPDATE: count its NLRI field's prefixes without decoding all
                withdrawn = int.from_bytes(raw[19:21], "big")
                at = 21 + withdrawn
                at += 2 + int.from_bytes(raw[at : at + 2], "big")
                while at < len(raw):
                    at += 1 + (raw[at] + 7) // 8
                    prefixes += 1


# --- the driver ---------------------------------------------------------------------------


def _wait(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(interval)


def _spawn_feeder(
    namespace: Namespace, feed_file: str, target: str, source: str
) -> subprocess.Popen[str]:
    cmd = [sys.executable, __file__, "feed", "--target", target, "--source", source, feed_file]
    return subprocess.Popen(namespace.command(cmd), stdout=subprocess.PIPE, text=True)


def _established_at(feeder: subprocess.Popen[str]) -> float:
    assert feeder.stdout is not None
    line = feeder.stdout.readline()
    if not line:
        raise SystemExit("the feeder failed to establish its session")
    return float(json.loads(line)["established"])


def measure_sart(lab: Lab, feed_file: str, prefixes: int) -> dict[str, float]:
    feeder_ns, target_ns = lab.namespace("feeder"), lab.namespace("sart")
    pair = lab.link(feeder_ns, target_ns)
    feeder_ns.add_address(pair.a.ifname, "10.255.1.3/24")
    target, source = pair.b.ipv4, pair.a.ipv4
    config = Path(tempfile.mkdtemp(prefix="sart-ingest-")) / "bgp.yaml"
    config.write_text(
        json.dumps(
            {
                "asn": TARGET_AS,
                "router_id": target,
                "neighbors": [
                    {"address": source, "asn": FEEDER_AS, "passive": True, "hold_time": 240},
                    {"address": "10.255.1.3", "asn": SINK_AS, "passive": True, "hold_time": 240},
                ],
            }
        )
    )
    sartd = [sys.executable, "-m", "sart.cli.sartd", "bgp", "-f", str(config), "--format", "json"]
    daemon = subprocess.Popen(target_ns.command(sartd), stderr=subprocess.PIPE, text=True)
    assert daemon.stderr is not None
    try:
        _wait_for_log(daemon, "speaker started")
        feeder = _spawn_feeder(feeder_ns, feed_file, target, source)
        up = _established_at(feeder)
        entry = _wait_for_log(daemon, "end of RIB received")
        done = time.monotonic()
        if entry.get("prefixes") != prefixes:
            raise SystemExit(f"sart received {entry.get('prefixes')} prefixes, not {prefixes}")
        rss = read_status_kib(daemon.pid, "VmHWM") * 1024
        sink = subprocess.run(
            feeder_ns.command(
                [sys.executable, __file__, "sink", "--target", target, "--source", "10.255.1.3"]
            ),
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        )
        readvertised = json.loads(sink.stdout)
        feeder.kill()
        return {
            "seconds": done - up,
            "rss": rss,
            "readvertise_seconds": readvertised["seconds"],
            "readvertised": readvertised["prefixes"],
        }
    finally:
        daemon.terminate()
        daemon.wait(10)


def _wait_for_log(daemon: subprocess.Popen[str], message: str) -> dict[str, object]:
    assert daemon.stderr is not None
    for line in daemon.stderr:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if entry.get("message") == message:
            return dict(entry)
    raise SystemExit(f"sartd exited before logging {message!r} (exit {daemon.wait()})")


def measure_peer(lab: Lab, kind: str, feed_file: str, prefixes: int) -> dict[str, float]:
    feeder_ns, target_ns = lab.namespace("feeder"), lab.namespace(kind)
    pair = lab.link(feeder_ns, target_ns)
    target, source = pair.b.ipv4, pair.a.ipv4
    config = BgpConfig(
        router_id=target,
        local_as=TARGET_AS,
        neighbors=(neighbor(source, FEEDER_AS, passive=True, hold_time=240),),
    )
    daemon = lab.start(GoBgp(target_ns, config) if kind == "gobgp" else Bird(target_ns, config))
    feeder = _spawn_feeder(feeder_ns, feed_file, target, source)
    up = _established_at(feeder)
    _wait(lambda: daemon.route_count() >= prefixes, 900, f"{kind} to hold every prefix")
    done = time.monotonic()
    rss = daemon.peak_rss()
    feeder.kill()
    return {"seconds": done - up, "rss": rss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode")
    feed = sub.add_parser("feed")
    feed.add_argument("--target", required=True)
    feed.add_argument("--source", required=True)
    feed.add_argument("file")
    sink = sub.add_parser("sink")
    sink.add_argument("--target", required=True)
    sink.add_argument("--source", required=True)
    parser.add_argument("--prefixes", type=int, default=1_000_000)
    parser.add_argument("--targets", default="sart,gobgp,bird")
    args = parser.parse_args()
    if args.mode == "feed":
        run_feeder(args.target, args.source, args.file)
        return
    if args.mode == "sink":
        run_sink(args.target, args.source)
        return

    started = time.perf_counter()
    feed_bytes = make_feed(args.prefixes)
    with tempfile.NamedTemporaryFile(prefix="sart-feed-", suffix=".bgp") as feed_file:
        feed_file.write(feed_bytes)
        feed_file.flush()
        print(
            f"feed: {args.prefixes:,} prefixes, {len(feed_bytes) / 2**20:.1f} MiB of UPDATEs "
            f"(built in {time.perf_counter() - started:.1f} s)"
        )
        results: dict[str, dict[str, float]] = {}
        for kind in args.targets.split(","):
            with Lab(f"ingest-{kind}") as lab:
                if kind == "sart":
                    results[kind] = measure_sart(lab, feed_file.name, args.prefixes)
                else:
                    results[kind] = measure_peer(lab, kind, feed_file.name, args.prefixes)
            r = results[kind]
            print(
                f"{kind:>6}: {r['seconds']:7.2f} s  {args.prefixes / r['seconds']:>10,.0f} "
                f"prefixes/s  peak RSS {r['rss'] / 2**20:7.1f} MiB"
            )
    sart = results.get("sart")
    if sart is not None:
        print(
            f"sart re-advertised {sart['readvertised']:,.0f} prefixes to a second peer in "
            f"{sart['readvertise_seconds']:.2f} s"
        )
        for other in ("gobgp", "bird"):
            if other in results:
                theirs = results[other]
                print(
                    f"sart vs {other}: time {sart['seconds'] / theirs['seconds']:.2f}x, "
                    f"peak RSS {sart['rss'] / theirs['rss']:.2f}x"
                )
        if "gobgp" in results:
            gobgp = results["gobgp"]
            ok = sart["seconds"] <= 2 * gobgp["seconds"] and sart["rss"] < gobgp["rss"]
            print(f"targets (time within 2x GoBGP, RSS below GoBGP): {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
