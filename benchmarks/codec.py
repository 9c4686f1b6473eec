"""Codec throughput: sart against ExaBGP's own parser on the same bytes, in the same run.

A deterministic synthetic feed (100,000 IPv4 UPDATEs with realistic attributes and 1-10
prefixes each, then 20,000 IPv6 MP_REACH_NLRI UPDATEs) on a 4-octet AS session is decoded in
full by both, and encoded back by sart. sart's decode starts from the raw stream (splitting
included); ExaBGP gets each message already cut out. Prints messages/s, prefixes/s and the
ratios; the targets are decode >= 10x ExaBGP (issue 18) and encode >= decode. Decoded
UPDATEs hand their prefixes out as the wire holds them (`sart.bgp.prefixes.Prefixes`); the
"+networks" line also makes every prefix an IPNetwork, as a caller walking them would.

    python benchmarks/codec.py [--rounds 3] [--scale 1.0]

ExaBGP comes from the `bench` dependency group: pip install --group bench (scripts/setup does).
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from netaddr import IPAddress, IPNetwork

from sart.bgp.context import SessionContext
from sart.bgp.messages import (
    AsPath,
    Communities,
    LargeCommunities,
    LargeCommunity,
    LocalPref,
    Message,
    MpReachNlri,
    MultiExitDisc,
    NextHop,
    Origin,
    PathAttribute,
    Update,
)
from sart.bgp.wire import MessageSplitter, decode_message, encode_message
from sart.bgp.wire.attributes import clear_intern_tables

sys.path.insert(0, str(Path(__file__).parent))
from _exabgp import decode_all, make_negotiated

CONTEXT = SessionContext(four_octet_as=True)
SEED = 4271


def _asn(rng: random.Random) -> int:
    # About a tenth of today's ASNs need four octets.
    return rng.randint(1, 64511) if rng.random() < 0.9 else rng.randint(131072, 4199999999)


def _ipv4_update(rng: random.Random, paths: Sequence[AsPath], hops: Sequence[NextHop]) -> Update:
    attributes: list[PathAttribute] = [
        Origin(0 if rng.random() < 0.85 else 2),
        rng.choice(paths),
        rng.choice(hops),
        LocalPref(rng.choice((100, 100, 100, 200, 50))),
    ]
    if rng.random() < 0.5:
        attributes.append(MultiExitDisc(rng.randint(0, 1000)))
    if rng.random() < 0.6:
        count = rng.randint(1, 6)
        attributes.append(Communities(tuple(rng.randint(1, 2**32 - 1) for _ in range(count))))
    if rng.random() < 0.1:
        large = LargeCommunity(_asn(rng), rng.randint(0, 999), rng.randint(0, 999))
        attributes.append(LargeCommunities((large,)))
    nlri = tuple(
        IPNetwork((rng.randint(1, 223) << 24 | rng.getrandbits(16) << 8, length), 4).cidr
        for length in (rng.randint(16, 24) for _ in range(rng.randint(1, 10)))
    )
    return Update(attributes=tuple(attributes), nlri=nlri)


def _ipv6_update(rng: random.Random, paths: Sequence[AsPath]) -> Update:
    hops = (IPAddress(0x20010DB8 << 96 | rng.getrandbits(32), 6), IPAddress(0xFE80 << 112 | 1, 6))
    prefixes = tuple(
        IPNetwork((0x2000 << 112 | rng.getrandbits(48) << 64, rng.randint(32, 64)), 6).cidr
        for _ in range(rng.randint(1, 10))
    )
    attributes = (
        MpReachNlri(2, 1, hops, prefixes),
        Origin(0),
        rng.choice(paths),
        MultiExitDisc(rng.randint(0, 100)),
    )
    return Update(attributes=attributes)


def make_feed(scale: float = 1.0) -> tuple[bytes, list[bytes], int]:
    """(stream, messages, prefix count) of the synthetic feed; the same for every run."""
    rng = random.Random(SEED)
    # A full table has far fewer distinct AS paths than routes: draw from a pool.
    paths = [AsPath.from_asns(*(_asn(rng) for _ in range(rng.randint(1, 7)))) for _ in range(5000)]
    hops = [NextHop(IPAddress(f"192.0.2.{i}")) for i in range(1, 9)]
    updates: list[Update] = [_ipv4_update(rng, paths, hops) for _ in range(int(100_000 * scale))]
    updates += [_ipv6_update(rng, paths) for _ in range(int(20_000 * scale))]
    messages = [encode_message(update, CONTEXT) for update in updates]
    prefixes = sum(_prefix_count(update) for update in updates)
    return b"".join(messages), messages, prefixes


def _prefix_count(update: Update) -> int:
    mp = sum(len(a.nlri) for a in update.attributes if isinstance(a, MpReachNlri))
    return len(update.nlri) + len(update.withdrawn) + mp


def sart_decode(stream: bytes) -> list[Message]:
    splitter = MessageSplitter(CONTEXT.max_message_length)
    splitter.feed(stream)
    return [decode_message(raw, CONTEXT) for raw in splitter]


def sart_decode_count(stream: bytes) -> int:
    """What decode_all does for ExaBGP: decode every message, count its prefixes, let it go.
    Starts with empty attribute intern tables, as ExaBGP starts with a fresh session."""
    return _decode_counting(stream, _prefix_count)


def sart_decode_networks(stream: bytes) -> int:
    """`sart_decode_count`, then every prefix made an IPNetwork: what a caller that walks the
    full message objects pays on top (the codec hands prefixes out as they sit on the wire)."""
    return _decode_counting(stream, _networks_count)


def _networks_count(update: Update) -> int:
    mp = sum(len(list(a.nlri)) for a in update.attributes if type(a) is MpReachNlri)
    return len(list(update.nlri)) + len(list(update.withdrawn)) + mp


def _decode_counting(stream: bytes, count: Callable[[Update], int]) -> int:
    clear_intern_tables()
    splitter = MessageSplitter(CONTEXT.max_message_length)
    splitter.feed(stream)
    prefixes = 0
    for raw in splitter:
        message = decode_message(raw, CONTEXT)
        if type(message) is Update:
            prefixes += count(message)
    return prefixes


def sart_encode(messages: list[Message]) -> list[bytes]:
    return [encode_message(message, CONTEXT) for message in messages]


def _best_of(rounds: int, run: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(rounds):
        gc.collect()
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="best of this many runs")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the feed")
    args = parser.parse_args()

    stream, messages, prefixes = make_feed(args.scale)
    decoded = sart_decode(stream)
    assert sum(_prefix_count(m) for m in decoded if isinstance(m, Update)) == prefixes
    assert b"".join(sart_encode(decoded)) == stream, "sart's round trip changed the bytes"
    exabgp_prefixes = decode_all(messages, make_negotiated(four_octet_as=True))
    assert exabgp_prefixes == prefixes, f"ExaBGP found {exabgp_prefixes} prefixes, not {prefixes}"

    # Interleave the contenders, so that a noisy moment hurts both alike.
    timings: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, run in (
            ("sart decode", lambda: sart_decode_count(stream)),
            ("sart +networks", lambda: sart_decode_networks(stream)),
            ("sart encode", lambda: sart_encode(decoded)),
            # A fresh session each run, so ExaBGP's one-entry attribute cache starts cold.
            ("ExaBGP decode", lambda: decode_all(messages, make_negotiated(four_octet_as=True))),
        ):
            timings[name] = min(timings.get(name, float("inf")), _best_of(1, run))

    count = len(messages)
    print(f"feed: {count} UPDATEs, {prefixes} prefixes, {len(stream)} octets (seed {SEED})")
    for name, seconds in timings.items():
        print(
            f"{name:14} {seconds:7.3f} s  {count / seconds:10,.0f} messages/s"
            f"  {prefixes / seconds:11,.0f} prefixes/s"
        )
    decode_ratio = timings["ExaBGP decode"] / timings["sart decode"]
    networks_ratio = timings["ExaBGP decode"] / timings["sart +networks"]
    encode_ratio = timings["sart decode"] / timings["sart encode"]
    print(f"ratio decode sart/ExaBGP: {decode_ratio:.2f}x (target >= 10)")
    print(f"ratio decode with every prefix an IPNetwork, sart/ExaBGP: {networks_ratio:.2f}x")
    print(f"ratio encode/decode sart: {encode_ratio:.2f}x (target >= 1)")
    return 0 if decode_ratio >= 10 and encode_ratio >= 1 else 1


if __name__ == "__main__":
    sys.exit(main())
