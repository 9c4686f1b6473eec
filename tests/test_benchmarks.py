"""The benchmarks still measure what they claim: a small slice of each feed goes through both
contenders and they agree. Nothing here is timed."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import api_paths
import bmp
import cni
import codec
import mrt
from _exabgp import decode_all, make_negotiated


def test_codec_feed_round_trips_and_exabgp_agrees() -> None:
    stream, messages, prefixes = codec.make_feed(scale=0.005)
    assert len(messages) == 600
    assert codec.sart_decode_count(stream) == prefixes
    assert b"".join(codec.sart_encode(codec.sart_decode(stream))) == stream
    assert decode_all(messages, make_negotiated(four_octet_as=True)) == prefixes


def test_bmp_benchmark_collector_reads_a_message_per_update() -> None:
    results = asyncio.run(bmp.run(300))
    assert results["route_monitoring"] >= 301  # every UPDATE, and an End-of-RIB
    assert results["alone"] > 0 and results["bmp"] > 0


def test_api_benchmark_runs_against_a_real_daemon() -> None:
    results = api_paths.run(300, [300, 100])
    assert [batch for batch, _, _ in results] == [300, 100]


def test_mrt_benchmark_reads_back_exactly_the_table_fed() -> None:
    results = mrt.run(3_000, 1_000, log_updates=True)
    assert results["exact"] == results["log_exact"] == 1.0 and results["bytes"] > 0


@pytest.mark.interop
def test_ingest_benchmark_feeds_sart_and_frr_both_tables() -> None:
    import ingest  # noqa: PLC0415 - needs root and FRR, only here

    for kind, prefixes in (("shared", 2_000), ("distinct", 500)):
        results = ingest.run_feed(kind, prefixes, ["sart", "frr"], rounds=1)
        for target in ("sart", "frr"):
            assert results[target]["readvertised"] == prefixes  # every prefix went on
            assert results[target]["cpu"] >= 0  # measured: a 500-prefix feed may take < 1 tick


@pytest.mark.interop
def test_bfd_benchmark_cuts_every_pair() -> None:
    import bfd  # noqa: PLC0415 - needs root, FRR and BIRD, only here

    report = bfd.run(cuts=2)
    assert report.failure == ""
    assert {name: len(cuts) for name, cuts in report.detected.items()} == dict.fromkeys(
        bfd.PAIRS, 2
    )
    assert bfd.print_report(report) in (True, False)


@pytest.mark.k8s
@pytest.mark.interop
def test_cni_benchmark_runs_both_plugins_on_a_real_agent() -> None:
    report = cni.run(pods=4, concurrency=2)
    for phase in (report.sequential, report.concurrent):
        assert set(phase) == {"sart", "reference"}
        assert all(len(run.add) == len(run.delete) == 4 for run in phase.values())
    assert cni.print_report(report) in (True, False)


@pytest.mark.k8s
@pytest.mark.e2e
def test_cluster_bgp_benchmark_runs_on_the_sample_lab() -> None:
    import cluster_bgp  # noqa: PLC0415 - imports the Kubernetes client, only here

    report = cluster_bgp.run(services=2, drains=1, idle=30.0)
    assert len(report.first_route) == len(report.all_routes) == 2
    assert len(report.drained) == 1
    assert set(report.agent_cpu) == {"sart-control-plane", "sart-worker", "sart-worker2"}
    assert any(resource == "leases" for _, _, resource in report.requests)  # the log is read
    assert cluster_bgp.print_report(report) in (True, False)
