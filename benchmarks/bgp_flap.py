"""Session flaps: a BGP session flapped 1,000 times always comes back, and sartd's RSS stays
within 5%.

A real `sartd bgp` process peers over loopback TCP with a speaker in this process, which
announces 1,000 prefixes (sartd announces 100). Each flap is a fault, cycled through the
methods below (all but `admin` are faults sartd only sees on the wire), then a bounded poll
until a new session is up on both sides with every route back both ways (sartd's side read
through its API). sartd's RSS and open descriptors are read after the warm-up flaps and at
the end. Exits 1 if a flap did not come back or RSS grew by more than the limit.

    python benchmarks/bgp_flap.py [--flaps 1000] [--warmup 50] [--methods reset,eof,...]

No root needed: 127.0.0.0/8 is all loopback on Linux (sart.testing.flap).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time

from sart.testing.flap import DEFAULT_METHODS, METHODS, FlapReport, FlapRig


async def measure(args: argparse.Namespace) -> tuple[FlapReport, float, str]:
    rig = FlapRig(
        routes_in=args.routes_in,
        routes_out=args.routes_out,
        connect_retry_time=args.connect_retry_time,
    )
    async with rig:
        started = time.perf_counter()

        def progress(number: int, _: float) -> None:
            if number % 100 == 0:
                print(f"  {number:>5,} flaps, {time.perf_counter() - started:6.1f} s", flush=True)

        report = await rig.run(
            args.flaps,
            methods=args.methods,
            warmup=args.warmup,
            timeout=args.timeout,
            progress=progress,
        )
        log = rig.log_tail() if report.failure else ""  # sartd's last lines, before clean-up
        return report, time.perf_counter() - started, log


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flaps", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=50, help="flaps before the first RSS read")
    parser.add_argument("--routes-in", type=int, default=1000, help="prefixes the peer announces")
    parser.add_argument("--routes-out", type=int, default=100, help="prefixes sartd announces")
    parser.add_argument("--connect-retry-time", type=float, default=0.1)
    parser.add_argument(
        "--methods",
        type=lambda text: tuple(text.split(",")),
        default=DEFAULT_METHODS,
        help=f"flap methods to cycle through, of {','.join(METHODS)}",
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="per flap, seconds")
    parser.add_argument("--limit", type=float, default=5.0, help="RSS growth allowed, percent")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the in-process peer's own log lines

    print(
        f"sartd bgp against an in-process peer over loopback TCP: {args.routes_in:,} prefixes "
        f"in, {args.routes_out:,} out, connect_retry_time {args.connect_retry_time:g} s"
    )
    print("flap methods, cycled:")
    for method in args.methods:
        print(f"  {method:<8} {METHODS.get(method, '?')}")
    report, seconds, log = asyncio.run(measure(args))
    done = ", ".join(f"{method} {count:,}" for method, count in report.methods.items())
    print(f"flaps done: {report.flaps:,} of {args.flaps:,} ({done}) in {seconds:.1f} s")
    print(f"all came back: {'yes' if report.all_came_back else 'NO'}")
    if report.failure:
        print(f"  {report.failure}\n{log}")
    print(
        f"time per flap, fault to session and routes back: p50 {report.percentile(50):.3f} s, "
        f"p99 {report.percentile(99):.3f} s, max {max(report.seconds, default=0):.3f} s"
    )
    extra = report.sessions - report.flaps
    print(
        f"sessions sartd brought up: {report.sessions:,} ({extra:+,} beyond one per flap: both "
        "sides dial, and a new OPEN from a graceful-restart peer replaces an Established session)"
    )
    start, end = report.start, report.end
    after = f"after {min(args.warmup, report.flaps):,} flaps"
    print(
        f"sartd RSS {after}: {start.rss_kib / 1024:.1f} MiB, at the end: "
        f"{end.rss_kib / 1024:.1f} MiB, growth {report.rss_growth:+.2f}% (limit {args.limit:g}%)"
    )
    print(f"sartd open descriptors {after}: {start.fds}, at the end: {end.fds}")
    print(f"tasks of the peer's event loop {after}: {start.tasks}, at the end: {end.tasks}")
    ok = report.all_came_back and report.sessions >= report.flaps
    ok = ok and report.rss_growth <= args.limit
    print(f"result: {'pass' if ok else 'FAIL'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
