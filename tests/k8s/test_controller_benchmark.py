"""benchmarks/controller.py still measures what it claims, on a few Services (nothing timed): the
floor writes one status per Service; sart-controller writes each Service's status, its
BGPAdvertisement and one Event (AddressPool status aside), gets no 409, makes no request but
Lease renewals while idle, and a restarted sart-controller adopts every Service without a
write."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import controller as bench

pytestmark = pytest.mark.k8s

SERVICES = 20


def test_writes_per_service_conflicts_idle_and_restart(tmp_path: Path) -> None:
    async def run() -> tuple[bench.Run, bench.Run, bench.Restart]:
        floor = await bench.contend("floor", SERVICES, 3.0, tmp_path, None)
        sart = await bench.contend("sart", SERVICES, 3.0, tmp_path, None)
        return floor, sart, await bench.restart(30, tmp_path)

    floor, sart, restarted = asyncio.run(run())
    assert floor.controller_writes() == Counter({("PATCH", "services/status"): SERVICES})
    writes = sart.controller_writes()
    assert writes.pop(("PATCH", "addresspools/status"), 0) <= 2
    assert writes == Counter(
        {
            ("PATCH", "services/status"): SERVICES,
            ("POST", "bgpadvertisements"): SERVICES,
            ("POST", "events"): SERVICES,
        }
    )
    ours = {"services", "services/status", "bgpadvertisements", "events", "addresspools/status"}
    assert not [key for key in sart.conflicts() if key[1] in ours]
    assert not [key for key in sart.idle if key[1] and key[1] != "leases"]
    assert sart.p99 > 0 and sart.cpu > 0
    assert restarted.writes == Counter() and restarted.ready > 0


def test_rounds_interleave_and_judge_on_medians(capsys: pytest.CaptureFixture[str]) -> None:
    # MetalLB left out: its build is the benchmark's to make (minutes), not this test's
    bench.main(
        ["--services", "5", "--rounds", "2", "--restart-services", "0", "--idle", "0",
         "--contenders", "floor,sart"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert out.index("round 1 of 2") < out.index("round 2 of 2")
    assert out.count("floor: 5 Services") == 2 and out.count(" sart: 5 Services") == 2
    assert out.count("ADDED -> BGPAdvertisement p99") == 2  # sart's lines only
    for label in ("all addresses", "ADDED -> address p99", "CPU"):
        assert f"median over 2 rounds: sart's {label} " in out


def test_rounds_below_one_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        bench.main(["--rounds", "0"])
    assert "--rounds must be at least 1, not 0" in capsys.readouterr().err
