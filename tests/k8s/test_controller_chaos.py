"""sart-controller as real processes under faults: SIGKILLed at random moments while Services
churn (the small version of benchmarks/controller_faults.py), and a leader frozen with SIGSTOP
past its Lease, which must stop before it writes anything once it runs again.

The churn test draws a new seed each run and prints it; SART_CHAOS_SEED=N replays a run."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import signal
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio.client import CoordinationV1Api, CoreV1Api, CustomObjectsApi
from kubernetes_asyncio.client.exceptions import ApiException

from sart.k8s.models import GROUP, VERSION
from sart.testing.chaos import (
    ChaosSettings,
    ControllerProcess,
    LeaseTimings,
    read_holder,
    run_chaos,
)
from sart.testing.controlplane import ControlPlane, unique_name
from sart.testing.crds import apply_crds
from waiting import until

pytestmark = [pytest.mark.k8s, pytest.mark.asyncio]
LEASE = LeaseTimings(duration=3.0, renew_deadline=2.0, retry_period=0.5)
FREEZE = LEASE.duration + 1.0  # at least, in seconds


async def nothing_foreign(k8s: Any, namespace: str) -> bool:
    """No LoadBalancer Service of another namespace (the controller serves them all) and no
    autoAssign pool left by another test (the runs here bring their own)."""
    services = await CoreV1Api(k8s).list_service_for_all_namespaces()
    if any(
        s.spec.type == "LoadBalancer" and s.metadata.namespace != namespace for s in services.items
    ):
        return False
    pools = await CustomObjectsApi(k8s).list_cluster_custom_object(GROUP, VERSION, "addresspools")
    return not any((p.get("spec") or {}).get("autoAssign") for p in pools["items"])


async def test_controller_sigkilled_during_churn_keeps_every_address_right(
    k8s: Any,
    namespace: str,
    control_plane: ControlPlane,
    tmp_path: Path,
    k8s_report: Callable[[str], None],
) -> None:
    await apply_crds(k8s)
    await until(lambda: nothing_foreign(k8s, namespace), 60, 0.2)
    seed = int(os.environ.get("SART_CHAOS_SEED", random.SystemRandom().randrange(10**9)))
    print(f"chaos seed {seed} (SART_CHAOS_SEED={seed} replays it)")
    settings = ChaosSettings(
        seed=seed,
        kills=10,
        services=60,
        named=3,
        shared=4,
        auto_cidr="10.141.0.0/24",
        named_cidr="10.141.1.0/26",
        lease=LeaseTimings(duration=2.0, renew_deadline=1.5, retry_period=0.3),
        start_delay=(0.0, 3.0),
        lead_delay=(0.0, 2.0),
        settle_timeout=40.0,
    )
    report = await run_chaos(k8s, control_plane.kubeconfig, namespace, settings, tmp_path)
    lines = report.lines()
    k8s_report(f"controller chaos: {lines[1]}; {lines[3]}")
    assert report.passed, "\n".join(lines)


# --- the frozen leader ---------------------------------------------------------------------


def _when(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _entries(obj: Any, kind: str) -> list[tuple[str, str, str, datetime]]:
    """(object, manager, operation/subresource, time) of each managedFields entry."""
    if isinstance(obj, dict):
        meta = obj["metadata"]
        return [
            (f"{kind} {meta['name']}", m["manager"],
             f"{m['operation']}/{m.get('subresource', '')}", _when(m["time"]))
            for m in meta.get("managedFields") or ()
        ]  # fmt: skip
    meta = obj.metadata
    return [
        (f"{kind} {meta.name}", m.manager, f"{m.operation}/{m.subresource or ''}", _when(m.time))
        for m in meta.managed_fields or ()
    ]


async def written_by(k8s: Any, manager: str, namespace: str, lease: str, pool: str) -> list[Any]:
    """Every managedFields entry of `manager` on what a controller writes here: the Services,
    their Events, the Lease, the AddressPool, BGPAdvertisements."""
    core, custom = CoreV1Api(k8s), CustomObjectsApi(k8s)
    objects: list[tuple[Any, str]] = []
    objects += [(s, "Service") for s in (await core.list_namespaced_service(namespace)).items]
    objects += [(e, "Event") for e in (await core.list_namespaced_event(namespace)).items]
    objects.append((await CoordinationV1Api(k8s).read_namespaced_lease(lease, namespace), "Lease"))
    objects.append(
        (await custom.get_cluster_custom_object(GROUP, VERSION, "addresspools", pool), "Pool")
    )
    advertisements = await custom.list_namespaced_custom_object(
        GROUP, VERSION, namespace, "bgpadvertisements"
    )
    objects += [(a, "BGPAdvertisement") for a in advertisements["items"]]
    return [e for obj, kind in objects for e in _entries(obj, kind) if e[1] == manager]


async def test_frozen_leader_stops_before_it_writes(
    k8s: Any,
    namespace: str,
    control_plane: ControlPlane,
    tmp_path: Path,
    k8s_report: Callable[[str], None],
) -> None:
    """Two controllers; the leader is frozen (SIGSTOP) past its Lease. The other takes over and
    serves what changes meanwhile; the first, thawed, exits 1 (LeadershipLost) without a write.
    Each process has its own field manager, so the apiserver's managedFields say who wrote
    what and when: no entry of the old leader is as recent as its thaw."""
    await apply_crds(k8s)
    await until(lambda: nothing_foreign(k8s, namespace), 60, 0.2)
    core, custom = CoreV1Api(k8s), CustomObjectsApi(k8s)
    pool, lease = unique_name("frozen"), "frozen"
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "AddressPool",
        "metadata": {"name": pool},
        "spec": {"cidr": "10.142.0.0/24", "type": "service", "autoAssign": True},
    }
    await custom.create_cluster_custom_object(GROUP, VERSION, "addresspools", body)
    processes: dict[str, ControllerProcess] = {}

    async def create(name: str) -> None:
        service = {
            "metadata": {"name": name},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80}], "selector": {"app": name}},
        }
        await core.create_namespaced_service(namespace, service)

    async def address(name: str) -> str | None:
        service = await core.read_namespaced_service(name, namespace)
        balancer = service.status.load_balancer
        return balancer.ingress[0].ip if balancer and balancer.ingress else None

    async def gone(name: str) -> bool:
        try:
            await core.read_namespaced_service(name, namespace)
        except ApiException as error:
            return error.status == 404
        return False

    async def allocated(count: int) -> bool:
        got = await custom.get_cluster_custom_object(GROUP, VERSION, "addresspools", pool)
        return bool((got.get("status") or {}).get("allocatedAddresses") == count)

    async def recorded(name: str) -> bool:
        events = await core.list_namespaced_event(
            namespace, field_selector=f"involvedObject.name={name}"
        )
        return any(e.reason == "AddressAllocated" for e in events.items)

    try:
        for letter in "ab":
            processes[letter] = ControllerProcess.start(
                control_plane.kubeconfig,
                tmp_path / f"controller-{letter}.log",
                lease_namespace=namespace,
                lease_name=lease,
                identity=f"frozen-{letter}",
                lease=LEASE,
                field_manager=f"frozen-{letter}",
            )
        holder = await until(lambda: read_holder(k8s, namespace, lease), 30)
        leader = next(p for p in processes.values() if p.identity == holder)
        standby = next(p for p in processes.values() if p is not leader)
        manager = f"frozen-{'a' if leader is processes['a'] else 'b'}"
        for name in ("early-0", "early-1"):
            await create(name)
        early = [await until(lambda n=name: address(n), 30) for name in ("early-0", "early-1")]
        # The leader has done all it had to: both Events recorded, the pool's status counted.
        for name in ("early-0", "early-1"):
            await until(lambda n=name: recorded(n), 30)
        await until(lambda: allocated(2), 30)

        log_offset = leader.log_size()  # a frozen process writes no log
        stopped = time.time()
        leader.signal(signal.SIGSTOP)
        await create("late-0")
        took_over = time.monotonic()
        late = [await until(lambda: address("late-0"), 30)]
        takeover = time.monotonic() - took_over
        assert await read_holder(k8s, namespace, lease) == standby.identity
        # More happens while the old leader is frozen: its view goes stale.
        await core.delete_namespaced_service("early-1", namespace)
        for name in ("late-1", "late-2"):
            await create(name)
        late += [await until(lambda n=name: address(n), 30) for name in ("late-1", "late-2")]
        await until(lambda: gone("early-1"), 30)  # the standby released what the leader gave
        assert len({early[0], *late}) == 4

        # The fault itself: a freeze longer than the Lease (which the takeover shows) and
        # than two whole seconds, so that managedFields' whole seconds tell before from after.
        await asyncio.sleep(max(0.0, stopped + FREEZE - time.time()))
        resumed = time.time()
        leader.signal(signal.SIGCONT)
        code = await leader.wait_exit(30)
        assert code == 1, f"the old leader's exit code is {code}"
        assert standby.returncode is None

        # The apiserver's record: the old leader wrote before its freeze (the finalizer and
        # status of early-0, its Event), and nothing after its thaw. Entries carry whole
        # seconds: a write after the thaw shows a time of at least floor(resumed), later than
        # anything written before the freeze (a write still in flight then included).
        entries = await written_by(k8s, manager, namespace, lease, pool)
        assert any(e[0] == "Service early-0" for e in entries), entries
        after = [e for e in entries if e[3].timestamp() >= math.floor(resumed)]
        assert not after, f"the old leader wrote after its thaw: {after}"
        # Its own log from the thaw on: it lost the Lease and no write of it failed (a failed
        # write would mean one was sent). It may still have decided on its stale view and
        # logged an Event's message before the fence refused to record it: counted, not sent.
        thawed = leader.log_entries(log_offset)
        assert any("LeadershipLost" in str(e.get("exception", "")) for e in thawed), thawed
        failed = ("write failed, retrying", "write refused", "event not recorded")
        assert not [e for e in thawed if e.get("message") in failed], thawed
        decided = sum("reason" in e for e in thawed)
        k8s_report(
            f"frozen leader: the standby served a new Service {takeover:.1f} s after the freeze;"
            f" thawed {resumed - stopped:.1f} s after the freeze, the old leader exited {code}"
            f" with no write ({decided} Events decided on its stale view, fenced)"
        )
    finally:
        for process in processes.values():
            process.kill()  # SIGKILL ends a frozen process too
        await _clean_up(k8s, namespace, pool)


async def _clean_up(k8s: Any, namespace: str, pool: str) -> None:
    core = CoreV1Api(k8s)
    for service in (await core.list_namespaced_service(namespace)).items:
        with contextlib.suppress(ApiException):
            await core.delete_namespaced_service(service.metadata.name, namespace)
    with contextlib.suppress(ApiException):
        await CustomObjectsApi(k8s).delete_cluster_custom_object(
            GROUP, VERSION, "addresspools", pool
        )
