"""Full-table ingest: sart's speaker against FRR, BIRD and GoBGP, the same feeds, in one run.

A feeder in its own network namespace opens a BGP session to the daemon under test (in
another namespace, over a veth pair) and sends a table as fast as TCP takes it, then an
End-of-RIB. Two feeds of 1,000,000 IPv4 /24s:

- shared: 200 attribute sets (ORIGIN, an AS_PATH of 1-5 hops, NEXT_HOP, half with a MED and
  communities), 500 prefixes per UPDATE;
- distinct: every prefix its own AS_PATH, one prefix per UPDATE.

Measured per daemon: wall time from the session being up until the daemon holds every
prefix (sart logs its End-of-RIB after applying everything before it; the others are
polled for their count), the CPU time the daemon used meanwhile (all its threads: a measure
this noisy machine disturbs less than the wall time), and its peak RSS (VmHWM). Then sart
and FRR re-advertise the table to a second peer: time from that session being up until the
peer has it all.

Targets (issue 18): sart faster than FRR on both feeds; sart's peak RSS at most 500 MiB
(shared) and under 1 GiB (distinct).

    sudo .venv/bin/python benchmarks/ingest.py [--prefixes 1000000] [--feeds shared,distinct]
        [--targets sart,frr,bird,gobgp] [--rounds 1]

With --rounds N each daemon runs N times, in turn with the others, and the medians are
compared (peak RSS: the largest run).

Needs root (namespaces) and the daemons (scripts/setup installs them).
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from netaddr import IPAddress, IPNetwork

from sart.bgp.codes import MARKER
from sart.bgp.context import SessionContext
from sart.bgp.fsm import Config, State
from sart.bgp.messages import (
    IPV4_UNICAST,
    AsPath,
    Communities,
    FourOctetAsCapability,
    MultiExitDisc,
    MultiprotocolCapability,
    NextHop,
    Open,
    Origin,
    PathAttribute,
    Update,
)
from sart.bgp.session import Session
from sart.bgp.wire import encode_message
from sart.bgp.wire.attributes import encode_attribute
from sart.bgp.wire.framing import MessageSplitter
from sart.testing.netns import Namespace
from sart.testing.peers import (
    BgpConfig,
    Bird,
    Frr,
    GoBgp,
    Lab,
    Peer,
    cpu_seconds,
    neighbor,
    read_status_kib,
)

CONTEXT = SessionContext(four_octet_as=True)
FEEDER_AS, TARGET_AS, SINK_AS = 65001, 65000, 65003
SEED = 4724
FEEDER_ADDRESS = "10.255.1.1"  # the first link of a Lab: the feeder's end
SINK_ADDRESS = "10.255.1.3"  # the second peer, beside the feeder


def _attribute_set(rng: random.Random, *, extras: bool) -> tuple[PathAttribute, ...]:
    hops = [rng.randint(1, 64511) for _ in range(rng.randint(1, 5))]
    attributes: list[PathAttribute] = [Origin(0), AsPath.from_asns(FEEDER_AS, *hops)]
    if extras and rng.random() < 0.5:
        attributes.append(MultiExitDisc(rng.randint(0, 1000)))
    if extras and rng.random() < 0.6:
        values = sorted({rng.randint(1, 2**32 - 1) for _ in range(rng.randint(1, 4))})
        attributes.append(Communities(tuple(values)))
    attributes.append(NextHop(IPAddress(FEEDER_ADDRESS)))
    return tuple(attributes)


def make_feed(kind: str, prefixes: int) -> bytes:
    """The feed's UPDATEs as bytes, then the IPv4 End-of-RIB."""
    rng = random.Random(SEED)
    networks = [IPNetwork(((1 << 24) + (i << 8), 24), 4) for i in range(prefixes)]
    messages: list[bytes] = []
    if kind == "shared":
        sets = [_attribute_set(rng, extras=True) for _ in range(200)]
        for n, start in enumerate(range(0, prefixes, 500)):
            update = Update(
                attributes=sets[n % len(sets)], nlri=tuple(networks[start : start + 500])
            )
            messages.append(encode_message(update, CONTEXT))
    else:
        # The attribute bytes differ only in the AS path: build them from one template.
        origin = encode_attribute(Origin(0), CONTEXT)
        next_hop = encode_attribute(NextHop(IPAddress(FEEDER_ADDRESS)), CONTEXT)
        for index, prefix in enumerate(networks):
            # The last AS makes every path distinct (4-octet: never 0, never ours).
            last = 100_000 + index
            hops = (FEEDER_AS, *(rng.randint(1, 64511) for _ in range(rng.randint(1, 4))), last)
            attributes = origin + encode_attribute(AsPath.from_asns(*hops), CONTEXT) + next_hop
            nlri = bytes((24,)) + (prefix.value >> 8).to_bytes(3, "big")
            body = struct.pack(">HH", 0, len(attributes)) + attributes + nlri
            messages.append(MARKER + struct.pack(">HB", 19 + len(body), 2) + body)
    messages.append(encode_message(Update.end_of_rib(IPV4_UNICAST), CONTEXT))
    return b"".join(messages)


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
    sock.settimeout(
        None
    )  # a slow daemon takes minutes to read it all (a timeout bounds the whole sendall)
    sock.sendall(feed)
    print(json.dumps({"sent": time.monotonic()}), flush=True)
    _keep_alive(sock, session)


def run_sink(target: str, source: str, expected: int) -> None:
    """Count what the target re-advertises until it has sent `expected` prefixes (or its
    IPv4 End-of-RIB: FRR sends one only to graceful-restart peers)."""
    sock, _ = _open_session(target, source, SINK_AS, source)
    start = time.monotonic()
    splitter = MessageSplitter()
    prefixes = 0
    end_of_rib = encode_message(Update.end_of_rib(IPV4_UNICAST), CONTEXT)
    while prefixes < expected:
        data = sock.recv(1 << 20)
        if not data:
            raise SystemExit("the target closed the session")
        splitter.feed(data)
        for raw in splitter:
            if raw == end_of_rib:
                expected = prefixes
                break
            if raw[18] == 2:  # UPDATE: count its NLRI field's prefixes without decoding all
                withdrawn = int.from_bytes(raw[19:21], "big")
                at = 21 + withdrawn
                at += 2 + int.from_bytes(raw[at : at + 2], "big")
                while at < len(raw):
                    at += 1 + (raw[at] + 7) // 8
                    prefixes += 1
    print(json.dumps({"seconds": time.monotonic() - start, "prefixes": prefixes}))


def _readvertise(feeder_ns: Namespace, target: str, prefixes: int) -> dict[str, float]:
    sink = subprocess.run(
        feeder_ns.command(
            [sys.executable, __file__, "sink", "--target", target, "--source", SINK_ADDRESS,
             "--expected", str(prefixes)]
        ),
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
    )  # fmt: skip
    result = json.loads(sink.stdout)
    return {"readvertise_seconds": result["seconds"], "readvertised": result["prefixes"]}


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
    feeder_ns.add_address(pair.a.ifname, f"{SINK_ADDRESS}/24")
    target, source = pair.b.ipv4, pair.a.ipv4
    config = Path(tempfile.mkdtemp(prefix="sart-ingest-")) / "bgp.yaml"
    config.write_text(
        json.dumps(
            {
                "asn": TARGET_AS,
                "router_id": target,
                "neighbors": [
                    {"address": source, "asn": FEEDER_AS, "passive": True, "hold_time": 240},
                    {"address": SINK_ADDRESS, "asn": SINK_AS, "passive": True, "hold_time": 240},
                ],
            }
        )
    )
    sartd = [sys.executable, "-m", "sart.cli.sartd", "bgp", "-f", str(config), "--format", "json"]
    daemon = subprocess.Popen(target_ns.command(sartd), stderr=subprocess.PIPE, text=True)
    assert daemon.stderr is not None
    try:
        _wait_for_log(daemon, "speaker started")
        cpu = cpu_seconds(daemon.pid)
        feeder = _spawn_feeder(feeder_ns, feed_file, target, source)
        up = _established_at(feeder)
        entry = _wait_for_log(daemon, "end of RIB received")
        done = time.monotonic()
        cpu = cpu_seconds(daemon.pid) - cpu
        if entry.get("prefixes") != prefixes:
            raise SystemExit(f"sart received {entry.get('prefixes')} prefixes, not {prefixes}")
        rss = read_status_kib(daemon.pid, "VmHWM") * 1024
        readvertised = _readvertise(feeder_ns, target, prefixes)
        feeder.kill()
        return {"seconds": done - up, "cpu": cpu, "rss": rss, **readvertised}
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


def _frr_received(frr: Frr, address: str) -> int:
    """Prefixes bgpd has accepted from the feeder (its summary: cheap at a million routes,
    where `show bgp statistics` walks the table)."""
    peers = frr.vtysh_json("show bgp ipv4 unicast summary json").get("peers", {})
    return int(peers.get(address, {}).get("pfxRcd", 0))


def measure_peer(lab: Lab, kind: str, feed_file: str, prefixes: int) -> dict[str, float]:
    feeder_ns, target_ns = lab.namespace("feeder"), lab.namespace(kind)
    pair = lab.link(feeder_ns, target_ns)
    target, source = pair.b.ipv4, pair.a.ipv4
    neighbors = [neighbor(source, FEEDER_AS, passive=True, hold_time=240)]
    if kind == "frr":
        feeder_ns.add_address(pair.a.ifname, f"{SINK_ADDRESS}/24")
        neighbors.append(neighbor(SINK_ADDRESS, SINK_AS, passive=True, hold_time=240))
    config = BgpConfig(router_id=target, local_as=TARGET_AS, neighbors=tuple(neighbors))
    if kind == "frr":
        # Routes stay out of the kernel, as with `sartd bgp` (its FIB is `sartd fib`).
        daemon: Peer = lab.start(Frr(target_ns, config, kernel=False))
    else:
        daemon = lab.start({"gobgp": GoBgp, "bird": Bird}[kind](target_ns, config))
    count: Callable[[], int] = daemon.route_count
    if isinstance(daemon, Frr):
        count = partial(_frr_received, daemon, source)
    cpu = daemon.cpu_seconds()
    feeder = _spawn_feeder(feeder_ns, feed_file, target, source)
    up = _established_at(feeder)
    _wait(lambda: count() >= prefixes, 900, f"{kind} to hold every prefix")
    done = time.monotonic()
    cpu = daemon.cpu_seconds() - cpu
    rss = daemon.peak_rss()
    result = {"seconds": done - up, "cpu": cpu, "rss": rss}
    if kind == "frr":
        result |= _readvertise(feeder_ns, target, prefixes)
    feeder.kill()
    return result


def run_feed(
    kind: str, prefixes: int, targets: list[str], rounds: int
) -> dict[str, dict[str, float]]:
    """Each target in turn, `rounds` times over (sart, frr, ..., sart, frr, ...): a daemon's
    result is the median of its runs (peak RSS: the largest), so a ratio compares runs made
    beside each other in time on this noisy machine."""
    started = time.perf_counter()
    feed_bytes = make_feed(kind, prefixes)
    runs: dict[str, list[dict[str, float]]] = {target: [] for target in targets}
    with tempfile.NamedTemporaryFile(prefix="sart-feed-", suffix=".bgp") as feed_file:
        feed_file.write(feed_bytes)
        feed_file.flush()
        print(
            f"feed {kind}: {prefixes:,} prefixes, {len(feed_bytes) / 2**20:.1f} MiB of UPDATEs "
            f"(built in {time.perf_counter() - started:.1f} s)",
            flush=True,
        )
        for number in range(1, rounds + 1):
            if rounds > 1:
                print(f" round {number} of {rounds}:", flush=True)
            for target in targets:
                with Lab(f"ingest-{target}") as lab:
                    if target == "sart":
                        r = measure_sart(lab, feed_file.name, prefixes)
                    else:
                        r = measure_peer(lab, target, feed_file.name, prefixes)
                runs[target].append(r)
                _print_run(target, r, prefixes)
    results = {target: _median_run(found) for target, found in runs.items()}
    if rounds > 1:
        print(f" median of {rounds} rounds:")
        for target, r in results.items():
            _print_run(target, r, prefixes)
    return results


def _print_run(target: str, r: dict[str, float], prefixes: int) -> None:
    again = ""
    if "readvertise_seconds" in r:
        again = f"  re-advertised {r['readvertised']:,.0f} in {r['readvertise_seconds']:.2f} s"
    print(
        f"  {target:>6}: {r['seconds']:7.2f} s  {prefixes / r['seconds']:>10,.0f} "
        f"prefixes/s  CPU {r['cpu']:6.2f} s  peak RSS {r['rss'] / 2**20:7.1f} MiB{again}",
        flush=True,
    )


def _median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    """Times: the median of the runs; peak RSS: the largest (a limit holds in every run)."""
    merged = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    merged["rss"] = max(r["rss"] for r in runs)
    return merged


RSS_LIMITS = {"shared": 500 * 2**20, "distinct": 2**30}  # issue 18: at most / under


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode")
    feed = sub.add_parser("feed")
    feed.add_argument("--target", required=True)
    feed.add_argument("--source", required=True)
    feed.add_argument("file")
    sink = sub.add_parser("sink")
    sink.add_argument("--target", required=True)
    sink.add_argument("--source", required=True)
    sink.add_argument("--expected", type=int, required=True)
    parser.add_argument("--prefixes", type=int, default=1_000_000)
    parser.add_argument("--feeds", default="shared,distinct")
    parser.add_argument("--targets", default="sart,frr,bird,gobgp")
    parser.add_argument(
        "--rounds", type=int, default=1, help="runs of each target, in turn; medians compared"
    )
    args = parser.parse_args()
    if args.mode == "feed":
        run_feeder(args.target, args.source, args.file)
        return 0
    if args.mode == "sink":
        run_sink(args.target, args.source, args.expected)
        return 0

    targets = args.targets.split(",")
    met = True
    for kind in args.feeds.split(","):
        results = run_feed(kind, args.prefixes, targets, args.rounds)
        sart = results.get("sart")
        if sart is None:
            continue
        for other in targets[1:]:
            theirs = results[other]
            print(
                f"  sart vs {other}: time {sart['seconds'] / theirs['seconds']:.2f}x, "
                f"CPU {sart['cpu'] / theirs['cpu']:.2f}x, "
                f"peak RSS {sart['rss'] / theirs['rss']:.2f}x"
            )
        frr = results.get("frr")
        if frr is not None:
            print(
                f"  re-advertising, sart vs frr: "
                f"{sart['readvertise_seconds'] / frr['readvertise_seconds']:.2f}x"
            )
            ok = sart["seconds"] < frr["seconds"] and sart["rss"] <= RSS_LIMITS[kind]
            met = met and ok
            limit = RSS_LIMITS[kind] // 2**20
            print(
                f"  targets (faster than FRR, RSS within {limit} MiB): {'met' if ok else 'NOT met'}"
            )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
