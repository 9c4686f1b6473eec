"""sart-controller SIGKILLed at random moments while Services churn: the full fault proof.

Starts its own control plane (scripts/k8s-control-plane binaries), applies the CRDs, then runs
`sart.testing.chaos.run_chaos`: 200 LoadBalancer Services created, changed and deleted while
sart-controller (leader election on, short lease timings) is SIGKILLed 100 times and restarted
each time; then it lets the last one settle and checks, by reading the apiserver, that no
address is held by two Services, every LoadBalancer Service has its address and every deleted
Service is gone. Prints the figures and PASS or FAIL; exits 1 on any violation.

    python benchmarks/controller_faults.py [--kills 100] [--services 200] [--seed N]

The seed is printed first; pass it again to replay the same operations and kill schedule.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path

from sart.testing.chaos import ChaosReport, ChaosSettings, LeaseTimings, run_chaos
from sart.testing.controlplane import ControlPlane, create_namespace, find_binaries
from sart.testing.crds import apply_crds


async def prove(plane: ControlPlane, settings: ChaosSettings, workdir: Path) -> ChaosReport:
    async with await plane.api_client() as api:
        await apply_crds(api)
        await create_namespace(api, "chaos")
        return await run_chaos(
            api, plane.kubeconfig, "chaos", settings, workdir, lambda line: print(line, flush=True)
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--seed", type=int, default=None, help="default: a random one")
    parser.add_argument("--keep-logs", type=Path, help="copy the controllers' logs here")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**9)
    print(f"seed {seed}", flush=True)
    settings = ChaosSettings(
        seed=seed,
        kills=args.kills,
        services=args.services,
        lease=LeaseTimings(duration=3.0, renew_deadline=2.0, retry_period=0.5),
    )
    began = time.monotonic()
    with ControlPlane(find_binaries()) as plane, tempfile.TemporaryDirectory() as workdir:
        report = asyncio.run(prove(plane, settings, Path(workdir)))
        if args.keep_logs is not None:
            args.keep_logs.mkdir(parents=True, exist_ok=True)
            for log in Path(workdir).glob("*.log"):
                (args.keep_logs / log.name).write_bytes(log.read_bytes())
    for line in report.lines():
        print(line)
    print(f"whole run {time.monotonic() - began:.0f} s (control plane included)")
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
