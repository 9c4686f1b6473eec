"""1,000 Services of type LoadBalancer created at once: how fast sart-controller serves them.

Starts the real control plane (scripts/k8s-control-plane binaries), applies the CRDs, creates
an autoAssign AddressPool, runs the controller's runtime in this process, then creates the
Services as fast as the apiserver takes them (64 creates in flight) while a watch notes when
each one's status first shows an address. Prints the time until all have addresses and the
p50 / p99 / max latency per Service (create answered -> address seen).

    python benchmarks/controller.py [--services 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from kubernetes_asyncio.client import CoreV1Api, CustomObjectsApi
from kubernetes_asyncio.watch import Watch

from sart.k8s.models import GROUP, VERSION
from sart.k8s.runtime.controller import LoadBalancerController
from sart.testing.controlplane import ControlPlane, create_namespace, find_binaries
from sart.testing.crds import apply_crds


async def measure(plane: ControlPlane, count: int) -> dict[str, float]:
    async with await plane.api_client() as api:
        await apply_crds(api)
        core, custom = CoreV1Api(api), CustomObjectsApi(api)
        pool = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "AddressPool",
            "metadata": {"name": "bench-pool"},
            "spec": {"cidr": "10.200.0.0/16", "type": "service", "autoAssign": True},
        }
        await custom.create_cluster_custom_object(GROUP, VERSION, "addresspools", pool)
        await create_namespace(api, "bench")
        controller = asyncio.create_task(LoadBalancerController(api).run())
        created: dict[str, float] = {}
        served: dict[str, float] = {}
        done = asyncio.Event()

        async def observe() -> None:
            async with Watch() as watch:
                async for event in watch.stream(core.list_namespaced_service, "bench"):
                    service: Any = event["object"]
                    balancer = service.status.load_balancer
                    name = service.metadata.name
                    if balancer and balancer.ingress and name not in served:
                        served[name] = time.perf_counter()
                        if len(served) == count:
                            done.set()
                            return

        watcher = asyncio.create_task(observe())
        await asyncio.sleep(0.5)  # the watch is open
        gate = asyncio.Semaphore(64)

        async def create(index: int) -> None:
            name = f"svc-{index}"
            body = {
                "metadata": {"name": name},
                "spec": {"type": "LoadBalancer", "ports": [{"port": 80}], "selector": {"a": name}},
            }
            async with gate:
                await core.create_namespaced_service("bench", body)
            created[name] = time.perf_counter()

        started = time.perf_counter()
        await asyncio.gather(*(create(i) for i in range(count)))
        all_created = time.perf_counter() - started
        await asyncio.wait_for(done.wait(), 600)
        total = time.perf_counter() - started
        latencies = sorted(max(served[n] - created[n], 0.0) for n in created)
        controller.cancel()
        watcher.cancel()
        await asyncio.gather(controller, watcher, return_exceptions=True)
        return {
            "created": all_created,
            "total": total,
            "p50": statistics.median(latencies),
            "p99": latencies[int(len(latencies) * 0.99) - 1],
            "max": latencies[-1],
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=1000)
    args = parser.parse_args()
    with ControlPlane(find_binaries()) as plane:
        result = asyncio.run(measure(plane, args.services))
    print(
        f"{args.services:,} Services: all created in {result['created']:.2f} s, all with "
        f"addresses {result['total']:.2f} s after the first create"
    )
    print(
        f"latency per Service (created -> address in status): p50 {result['p50'] * 1000:.0f} ms, "
        f"p99 {result['p99'] * 1000:.0f} ms, max {result['max'] * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
