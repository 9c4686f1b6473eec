"""LoadBalancer Services against the real apiserver: sart-controller beside the status-only floor
and MetalLB's controller.

Each contender runs as its own process against a fresh control plane (scripts/k8s-control-plane
binaries), in the same sitting, interleaved for K rounds (floor, sart, metallb, floor, sart,
metallb, ...): each round's ratios compare sart's run with the others' side by side in time, and
each target is judged on the median of the rounds' ratios, since one run beside another is a
noisy ratio on a shared machine:

- floor: the least any controller can do, a process that watches Services and PATCHes each
  LoadBalancer Service's status with the next address (kubernetes-asyncio, 64 writes in flight,
  as sart-controller);
- sart: `sart-controller` as deployed (every part, leader election with its default timings);
- metallb: MetalLB v0.15.2's controller (scripts/metallb builds it from the Go module proxy, the
  first time when the benchmark starts; its CRDs are the module's own), as its manifests deploy
  it (one replica, no leader election) but outside a cluster: --webhook-mode disabled and
  --disable-cert-rotation (no webhook Service to serve), no memberlist Secret (that is the
  speakers'), an autoAssign IPAddressPool of the same addresses in its namespace. Left out with
  --contenders floor,sart (sart's ratios against MetalLB are then not printed).

For each: an autoAssign pool, then N Services created at once (64 creates in flight) while a
watch notes when each is ADDED and when its status first shows an address. Printed:
ADDED -> address p50 / p99, ADDED -> the Service's first BGPAdvertisement p99 (what makes the
address reachable over BGP; sart only), the time from the first create until every Service has
an address, the contender's CPU time (user + system of its process) from just before the first
create until its writes stop, the apiserver's own request counters (`apiserver_request_total` from
/metrics) over the same span as writes per Service by verb and resource (left out: the
benchmark's own creates, the controller-manager's EndpointSlices, Endpoints and Events, the
apiserver's IPAddresses, and every Lease write, shown apart), the apiserver's time serving
writes by verb and resource (the five costliest, with the mean per request), the 409 answers by
verb and resource, and the requests while idle; then sart's ratios to the floor (all addresses
target 1.2x, ADDED -> address p99 2x) and to MetalLB (CPU target at most 1x), each round's and
their medians over the rounds. Then sart's restart: a controller started against N_restart
Services that an earlier one allocated (and stopped, releasing its Lease), the time from its
start until /readyz answers 200 as the leader (it has listed and adopted everything), and the
writes it made until 5 s later (none is the target).

    python benchmarks/controller.py [--services 1000] [--rounds 3] [--restart-services 10000]
                                    [--idle 30] [--contenders floor,sart,metallb]
    python benchmarks/controller.py --floor-writer KUBECONFIG   # the floor process itself
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
from kubernetes_asyncio import config
from kubernetes_asyncio.client import CoreV1Api, CustomObjectsApi
from kubernetes_asyncio.watch import Watch
from netaddr import IPNetwork
from prometheus_client.parser import text_string_to_metric_families

from sart.k8s.models import GROUP, VERSION
from sart.k8s.runtime import MERGE
from sart.k8s.runtime.controller import SERVICE_LABEL
from sart.testing.chaos import ControllerProcess, LeaseTimings
from sart.testing.controlplane import ControlPlane, create_namespace, find_binaries, unique_name
from sart.testing.crds import apply_crds

POOL_CIDR = "10.200.0.0/16"
NAMESPACE = "bench"
IN_FLIGHT = 64
WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION"})
# Written by others: the controller-manager (EndpointSlices, Endpoints) and the apiserver itself
# (the IPAddress of each ClusterIP).
NOT_THE_CONTROLLERS = frozenset({"endpointslices", "endpoints", "ipaddresses"})
MAX_TICKS = os.sysconf("SC_CLK_TCK")
CONTENDERS = ("floor", "sart", "metallb")
# The component each contender's Events name as their source (the floor writes none).
EVENT_SOURCES = {"sart": "sart-controller", "metallb": "metallb-controller"}
METALLB_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "metallb"
METALLB_NAMESPACE = "metallb-system"

Requests = Counter[tuple[str, str, str]]  # (verb, resource[/subresource], code) -> count


# --- the floor: a status-only writer --------------------------------------------------------


async def floor_writer(kubeconfig: str) -> None:
    """Give every LoadBalancer Service the next address of the pool, by a status PATCH, and
    nothing else. Prints "ready" once its first listing is in."""
    addresses: Iterator[Any] = IPNetwork(POOL_CIDR).iter_hosts()
    async with await config.new_client_from_config(config_file=kubeconfig) as api:
        core = CoreV1Api(api)
        writers = asyncio.Semaphore(IN_FLIGHT)
        tasks: set[asyncio.Task[None]] = set()

        async def give(name: str, namespace: str) -> None:
            body = {"status": {"loadBalancer": {"ingress": [{"ip": str(next(addresses))}]}}}
            async with writers:
                await core.patch_namespaced_service_status(name, namespace, body, **MERGE)

        listing = await core.list_service_for_all_namespaces()
        print("ready", flush=True)
        async with Watch() as watch:
            stream = watch.stream(
                core.list_service_for_all_namespaces,
                resource_version=listing.metadata.resource_version,
            )
            async for event in stream:
                service = event["object"]
                balancer = service.status.load_balancer
                wanted = event["type"] == "ADDED" and service.spec.type == "LoadBalancer"
                if wanted and not (balancer and balancer.ingress):
                    task = asyncio.create_task(
                        give(service.metadata.name, service.metadata.namespace)
                    )
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)


# --- measuring -------------------------------------------------------------------------------


def _samples(
    plane: ControlPlane, family: str, sample: str
) -> Iterator[tuple[dict[str, str], float]]:
    """The labels and value of each `sample` of the apiserver's metric `family`, the labels'
    resource with its subresource as resource/subresource."""
    text = plane._get("/metrics")
    if text is None:
        raise RuntimeError("the apiserver did not answer /metrics")
    for found in text_string_to_metric_families(text.decode()):
        if found.name != family:
            continue
        for each in found.samples:
            if each.name == sample:
                labels = dict(each.labels)
                if labels.get("subresource"):
                    labels["resource"] = labels.get("resource", "") + "/" + labels["subresource"]
                yield labels, each.value


def requests_now(plane: ControlPlane) -> Requests:
    """The apiserver's apiserver_request_total, by verb, resource and code."""
    found: Requests = Counter()
    for labels, value in _samples(plane, "apiserver_request", "apiserver_request_total"):
        found[(labels["verb"], labels.get("resource", ""), labels["code"])] += int(value)
    return found


def serving_now(plane: ControlPlane) -> dict[tuple[str, str], float]:
    """The apiserver's time serving writes so far (apiserver_request_duration_seconds_sum), by
    verb and resource: where its time goes."""
    found: dict[tuple[str, str], float] = {}
    metric = "apiserver_request_duration_seconds"
    for labels, value in _samples(plane, metric, f"{metric}_sum"):
        if labels["verb"] in WRITE_VERBS:
            key = (labels["verb"], labels.get("resource", ""))
            found[key] = found.get(key, 0.0) + value
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (not its children), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / MAX_TICKS


def _delta(after: Requests, before: Requests) -> Requests:
    return Counter({key: after[key] - before[key] for key in after if after[key] > before[key]})


def _writes(requests: Requests) -> Counter[tuple[str, str]]:
    found: Counter[tuple[str, str]] = Counter()
    for (verb, resource, _), count in requests.items():
        if verb in WRITE_VERBS:
            found[(verb, resource)] += count
    return found


async def settled(plane: ControlPlane, *, quiet: float = 3.0, limit: float = 60.0) -> Requests:
    """Wait until no write but a Lease's has reached the apiserver for `quiet` seconds; the
    counters then."""
    deadline = time.monotonic() + limit
    last = requests_now(plane)
    calm_since = time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        now = requests_now(plane)
        moved = any(r != "leases" for (_, r) in _writes(_delta(now, last)))
        if moved:
            calm_since = time.monotonic()
        elif time.monotonic() - calm_since >= quiet:
            return now
        last = now
    return last


@attrs.frozen
class Run:
    name: str
    services: int
    created: float  # first create -> last create answered
    total: float  # first create -> every Service has an address
    p50: float  # ADDED -> address
    p99: float
    advertised_p99: float | None  # ADDED -> its first BGPAdvertisement (none: the floor's)
    cpu: float  # the contender's CPU time over the run
    requests: Requests  # the apiserver's counters over the run (until settled)
    serving: dict[tuple[str, str], float]  # the apiserver's seconds on writes over the run
    idle: Requests  # over the idle window

    def controller_writes(self) -> Counter[tuple[str, str]]:
        """Writes the contender made: the benchmark's creates, the controller-manager's and
        every Lease write left out."""
        writes = _writes(self.requests)
        writes[("POST", "services")] -= self.services
        return Counter(
            {
                (verb, resource): count
                for (verb, resource), count in writes.items()
                if count > 0 and resource not in NOT_THE_CONTROLLERS and resource != "leases"
            }
        )

    def conflicts(self) -> Counter[tuple[str, str]]:
        """409 answers, by verb and resource."""
        found: Counter[tuple[str, str]] = Counter()
        for (verb, resource, code), count in self.requests.items():
            if code == "409":
                found[(verb, resource)] += count
        return found


@attrs.frozen
class MetalLB:
    """scripts/metallb's build: MetalLB's controller binary and the directory of its CRDs."""

    controller: Path
    crds: Path

    @classmethod
    def built(cls) -> MetalLB:
        """Built first when the cache has none (minutes the first time, its progress shown)."""

        def ask(what: str) -> Path:
            answer = subprocess.run(
                [METALLB_SCRIPT, what], stdout=subprocess.PIPE, text=True, check=True
            )
            return Path(answer.stdout.strip())

        return cls(ask("build"), ask("crds"))


async def _setup(plane: ControlPlane, metallb: MetalLB | None = None) -> None:
    """The CRDs and an autoAssign pool of POOL_CIDR: MetalLB's when given, else sart's."""
    async with await plane.api_client() as api:
        custom = CustomObjectsApi(api)
        if metallb is None:
            await apply_crds(api)
            pool = {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "AddressPool",
                "metadata": {"name": "bench-pool"},
                "spec": {"cidr": POOL_CIDR, "type": "service", "autoAssign": True},
            }
            await custom.create_cluster_custom_object(GROUP, VERSION, "addresspools", pool)
        else:
            await apply_crds(api, metallb.crds)
            await create_namespace(api, METALLB_NAMESPACE)
            pool = {
                "apiVersion": "metallb.io/v1beta1",
                "kind": "IPAddressPool",
                "metadata": {"name": "bench-pool"},
                "spec": {"addresses": [POOL_CIDR], "autoAssign": True},
            }
            await custom.create_namespaced_custom_object(
                "metallb.io", "v1beta1", METALLB_NAMESPACE, "ipaddresspools", pool
            )
        await create_namespace(api, NAMESPACE)


async def create_services(
    plane: ControlPlane,
    count: int,
    *,
    node_ports: bool = True,
    added: dict[str, float] | None = None,
) -> tuple[float, float, list[float]]:
    """Create `count` Services at once, 64 in flight, watching for their addresses; returns
    (seconds to create them all, seconds until all have addresses, ADDED -> address each).
    Without `node_ports` they ask for none (the default range holds 2,768). When each was
    ADDED (perf_counter) goes into `added`."""
    if added is None:
        added = {}
    async with await plane.api_client() as api:
        core = CoreV1Api(api)
        served: dict[str, float] = {}
        done = asyncio.Event()
        watching = asyncio.Event()

        async def observe() -> None:
            listing = await core.list_namespaced_service(NAMESPACE)
            watching.set()
            async with Watch() as watch:
                async for event in watch.stream(
                    core.list_namespaced_service,
                    NAMESPACE,
                    resource_version=listing.metadata.resource_version,
                ):
                    now = time.perf_counter()
                    service: Any = event["object"]
                    name = service.metadata.name
                    added.setdefault(name, now)
                    balancer = service.status.load_balancer
                    if balancer and balancer.ingress and name not in served:
                        served[name] = now
                        if len(served) == count:
                            done.set()
                            return

        watcher = asyncio.create_task(observe())
        await watching.wait()
        gate = asyncio.Semaphore(IN_FLIGHT)

        async def create(index: int) -> None:
            body: Any = {
                "metadata": {"name": f"svc-{index}"},
                "spec": {
                    "type": "LoadBalancer",
                    "ports": [{"port": 80}],
                    "selector": {"app": f"svc-{index}"},
                    "allocateLoadBalancerNodePorts": node_ports,
                },
            }
            async with gate:
                await core.create_namespaced_service(NAMESPACE, body)

        started = time.perf_counter()
        await asyncio.gather(*(create(i) for i in range(count)))
        created = time.perf_counter() - started
        await asyncio.wait_for(done.wait(), 900)
        total = time.perf_counter() - started
        await watcher
        return created, total, sorted(served[n] - added[n] for n in served)


async def watch_advertisements(plane: ControlPlane, seen: dict[str, float]) -> None:
    """Note when each Service's first BGPAdvertisement appears (perf_counter, by the Service's
    name), until cancelled."""
    async with await plane.api_client() as api:
        custom = CustomObjectsApi(api)
        plural = "bgpadvertisements"
        listing = await custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, plural)
        async with Watch() as watch:
            async for event in watch.stream(
                custom.list_namespaced_custom_object,
                GROUP,
                VERSION,
                NAMESPACE,
                plural,
                resource_version=listing["metadata"]["resourceVersion"],
            ):
                labels = event["object"]["metadata"].get("labels") or {}
                if SERVICE_LABEL in labels:
                    seen.setdefault(labels[SERVICE_LABEL], time.perf_counter())


async def others_events(plane: ControlPlane, source: str | None) -> set[str]:
    """The Events whose source is not the contender's `source` (the controller-manager's), by
    uid: their creates are not the contender's."""
    async with await plane.api_client() as api:
        events = await CoreV1Api(api).list_event_for_all_namespaces()
    return {
        e.metadata.uid
        for e in events.items
        if source is None or (e.source.component if e.source else None) != source
    }


def _percentile(values: list[float], fraction: float) -> float:
    return values[max(int(len(values) * fraction + 0.5) - 1, 0)]


async def _ready(
    url: str,
    accept: Callable[[bytes], bool],
    gone: Callable[[], str | None],
    timeout: float = 900.0,
) -> None:
    """Until `url` answers 200 with a body `accept`s; `gone` says why the process serving it
    exited (None while it runs)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (why := gone()) is not None:
            raise RuntimeError(why)
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200 and accept(answer.read()):
                    return
        except OSError:
            pass
        await asyncio.sleep(0.02)
    raise TimeoutError(f"{url} never answered 200 as awaited")


async def sart_ready(url: str, process: ControllerProcess) -> None:
    """Until /readyz answers 200 with `"leader": true`: the process leads and has listed and
    adopted everything (a standby is ready too, but has not)."""
    await _ready(
        url,
        lambda body: json.loads(body).get("leader") is True,
        lambda: (
            None
            if process.returncode is None
            else f"sart-controller exited: {process.why_exited()}"
        ),
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_sart(plane: ControlPlane, log: Path) -> tuple[ControllerProcess, str]:
    port = _free_port()
    process = ControllerProcess.start(
        plane.kubeconfig,
        log,
        lease_namespace="kube-system",
        lease_name="sart-controller",
        identity=unique_name("bench"),
        lease=LeaseTimings(duration=15.0, renew_deadline=10.0, retry_period=2.0),
        metrics_address=f"127.0.0.1:{port}",
    )
    return process, f"http://127.0.0.1:{port}/readyz"


async def start_metallb(
    plane: ControlPlane, metallb: MetalLB, log: Path
) -> subprocess.Popen[bytes]:
    """MetalLB's controller, once its /metrics shows the pool's size: it has read the pool (a
    Service before then would wait for it)."""
    port = _free_port()
    with log.open("ab") as output:
        process = subprocess.Popen(
            [
                metallb.controller, "--kubeconfig", str(plane.kubeconfig),
                "--namespace", METALLB_NAMESPACE, "--port", str(port),
                "--webhook-mode", "disabled", "--disable-cert-rotation",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    await _ready(
        f"http://127.0.0.1:{port}/metrics",
        lambda body: b'metallb_allocator_addresses_total{pool="bench-pool"}' in body,
        lambda: (
            None
            if process.poll() is None
            else f"MetalLB's controller exited {process.returncode}: see {log}"
        ),
    )
    return process


def start_floor(plane: ControlPlane) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, __file__, "--floor-writer", str(plane.kubeconfig)],
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    if process.stdout.readline().strip() != b"ready":
        raise RuntimeError("the floor writer did not start")
    return process


async def contend(
    name: str, count: int, idle: float, workdir: Path, metallb: MetalLB | None
) -> Run:
    """One contender against a fresh control plane (`metallb` for the contender "metallb")."""
    with ControlPlane(find_binaries()) as plane:
        await _setup(plane, metallb if name == "metallb" else None)
        stop: Callable[[], object]
        if name == "floor":
            floor = start_floor(plane)
            pid, stop = floor.pid, floor.terminate
        elif name == "metallb":
            assert metallb is not None
            theirs = await start_metallb(plane, metallb, workdir / f"{name}.log")
            pid, stop = theirs.pid, theirs.terminate
        else:
            sart, ready = start_sart(plane, workdir / f"{name}.log")
            await sart_ready(ready, sart)
            pid, stop = sart.pid, sart.stop
        source = EVENT_SOURCES.get(name)
        try:
            await settled(plane)
            before, cpu_before = requests_now(plane), cpu_seconds(pid)
            serving_before = serving_now(plane)
            earlier = await others_events(plane, source)
            added: dict[str, float] = {}
            advertised: dict[str, float] = {}
            advertising = (
                asyncio.create_task(watch_advertisements(plane, advertised))
                if name != "metallb"  # sart's CRDs are not on its control plane
                else None
            )
            created, total, latencies = await create_services(plane, count, added=added)
            after = await settled(plane)
            serving_after = serving_now(plane)
            if advertising is not None:
                advertising.cancel()
            cpu = cpu_seconds(pid) - cpu_before
            others = len(await others_events(plane, source) - earlier)
            idle_from = requests_now(plane)
            await asyncio.sleep(idle)
            idled = _delta(requests_now(plane), idle_from)
        finally:
            stop()
    return Run(
        name=name,
        services=count,
        created=created,
        total=total,
        p50=statistics.median(latencies),
        p99=_percentile(latencies, 0.99),
        advertised_p99=_percentile(
            sorted(advertised[name] - added[name] for name in advertised), 0.99
        )
        if advertised
        else None,
        cpu=cpu,
        requests=_delta(after, before) - Counter({("POST", "events", "201"): others}),
        serving={
            key: seconds - serving_before.get(key, 0.0)
            for key, seconds in serving_after.items()
            if seconds > serving_before.get(key, 0.0)
        },
        idle=idled,
    )


@attrs.frozen
class Restart:
    services: int
    fill: float  # the first controller: first create -> every Service has an address
    ready: float  # the second controller: process start -> /readyz 200 as the leader
    writes: Counter[tuple[str, str]]  # from its start to 5 s after ready: the controller's
    leases: int  # Lease writes in that span


async def restart(count: int, workdir: Path) -> Restart:
    with ControlPlane(find_binaries()) as plane:
        await _setup(plane)
        first, ready = start_sart(plane, workdir / "restart-first.log")
        await sart_ready(ready, first)
        _, fill, _ = await create_services(plane, count, node_ports=False)
        await settled(plane, limit=900.0)  # the controller-manager's EndpointSlices too
        first.stop()
        before = requests_now(plane)
        started = time.perf_counter()
        second, ready = start_sart(plane, workdir / "restart-second.log")
        try:
            await sart_ready(ready, second)
            took = time.perf_counter() - started
            await asyncio.sleep(5.0)
            writes = _writes(_delta(requests_now(plane), before))
        finally:
            second.stop()
    leases = writes.pop(("PUT", "leases"), 0) + writes.pop(("POST", "leases"), 0)
    theirs = [key for key in writes if key[1] in NOT_THE_CONTROLLERS]
    for key in theirs:
        del writes[key]
    return Restart(count, fill, took, writes, leases)


# --- the report ------------------------------------------------------------------------------


def _by_kind(writes: Counter[tuple[str, str]], per: int) -> str:
    return ", ".join(
        f"{verb} {resource} {n / per:.2f}" for (verb, resource), n in sorted(writes.items())
    )


def _listed(counts: Counter[tuple[str, str]]) -> str:
    return ", ".join(f"{verb} {what} {n}" for (verb, what), n in sorted(counts.items())) or "none"


@attrs.frozen
class Ratios:
    """One round's sart run against another contender's run beside it."""

    total: float  # all addresses
    p99: float  # ADDED -> address p99
    cpu: float

    @classmethod
    def of(cls, sart: Run, other: Run) -> Ratios:
        return cls(sart.total / other.total, sart.p99 / other.p99, sart.cpu / other.cpu)


def _advertised(run: Run) -> str:
    if run.advertised_p99 is None:
        return ""
    return f" ADDED -> BGPAdvertisement p99 {run.advertised_p99 * 1000:.0f} ms;"


def report(runs: list[Run], idle: float) -> dict[str, Ratios]:
    """The contenders' lines, each ratio against the floor's run; sart's ratios to each other
    contender, by its name."""
    floor = next(r for r in runs if r.name == "floor")
    sart = next(r for r in runs if r.name == "sart")
    for run in runs:
        writes = run.controller_writes()
        per = sum(writes.values()) / run.services
        lease_writes = sum(n for (v, r), n in _writes(run.requests).items() if r == "leases")
        print(
            f"{run.name:>7}: {run.services:,} Services: created in {run.created:.1f} s,"
            f" all addresses {run.total:.1f} s ({run.total / floor.total:.2f}x floor);"
            f" ADDED -> address p50 {run.p50 * 1000:.0f} ms, p99 {run.p99 * 1000:.0f} ms"
            f" ({run.p99 / floor.p99:.2f}x floor);{_advertised(run)} CPU {run.cpu:.1f} s"
            f" ({run.cpu / floor.cpu:.2f}x floor)"
        )
        print(
            f"         writes per Service {per:.2f} ({_by_kind(writes, run.services)});"
            f" 409s {_listed(run.conflicts())}; Lease writes {lease_writes}"
        )
        busiest = sorted(run.serving.items(), key=lambda item: -item[1])[:5]
        served = _writes(run.requests)
        print(
            "         apiserver time on writes: "
            + ", ".join(
                f"{verb} {resource} {seconds:.1f} s"
                f" ({seconds / max(served[(verb, resource)], 1) * 1000:.1f} ms each)"
                for (verb, resource), seconds in busiest
            )
        )
        idle_requests = Counter(
            {(v, r): n for (v, r, _), n in run.idle.items() if r and r != "leases"}
        )
        lease_requests = sum(n for (_, r, _), n in run.idle.items() if r == "leases")
        print(
            f"         idle {idle:.0f} s: {sum(idle_requests.values())} requests on resources"
            f" besides Leases ({_listed(idle_requests)}); {lease_requests} on Leases"
        )
    ratios = {run.name: Ratios.of(sart, run) for run in runs if run.name != "sart"}
    if "metallb" in ratios:
        theirs = ratios["metallb"]
        print(
            f"sart / MetalLB: all addresses {theirs.total:.3g}x, ADDED -> address p99"
            f" {theirs.p99:.3g}x, CPU {theirs.cpu:.3g}x"
        )
    return ratios


# Each target by the contender sart is compared with: all addresses, ADDED -> address p99, CPU.
TARGETS = {"floor": ("1.2x", "2x", None), "metallb": (None, None, "1x")}


def report_medians(rounds: list[dict[str, Ratios]]) -> None:
    """Each target judged on the median of the rounds' paired ratios."""
    for other, targets in TARGETS.items():
        if other not in rounds[0]:
            continue
        paired = [ratios[other] for ratios in rounds]
        for label, ratios, target in zip(
            ("all addresses", "ADDED -> address p99", "CPU"),
            ([r.total for r in paired], [r.p99 for r in paired], [r.cpu for r in paired]),
            targets,
            strict=True,
        ):
            each = ", ".join(f"{ratio:.3g}x" for ratio in ratios)
            within = f"; target {target}" if target else ""
            print(
                f"median over {len(rounds)} rounds: sart's {label}"
                f" {statistics.median(ratios):.3g}x {other}'s (rounds {each}{within})"
            )


def report_restart(restarted: Restart) -> None:
    print(
        f"restart: {restarted.services:,} Services (allocated in {restarted.fill:.1f} s by the"
        f" first controller): the second ready {restarted.ready:.2f} s after its start;"
        f" writes until 5 s after ready: {sum(restarted.writes.values())}"
        f" ({_listed(restarted.writes)}) besides {restarted.leases} Lease writes"
    )


async def measure(
    count: int, restart_count: int, idle: float, rounds: int, contenders: list[str]
) -> None:
    metallb = MetalLB.built() if count and "metallb" in contenders else None
    with tempfile.TemporaryDirectory(prefix="sart-bench-") as work:
        workdir = Path(work)
        if count:
            ratios = []
            for index in range(rounds):
                print(f"round {index + 1} of {rounds}:", flush=True)
                runs = [await contend(name, count, idle, workdir, metallb) for name in contenders]
                ratios.append(report(runs, idle))
            report_medians(ratios)
        if restart_count:
            report_restart(await restart(restart_count, workdir))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--restart-services", type=int, default=10000, help="0: no restart")
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of idle watched")
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of the contenders in turn; medians judged"
    )
    parser.add_argument(
        "--contenders",
        default=",".join(CONTENDERS),
        help="run in this order each round; floor and sart are needed (default: %(default)s)",
    )
    parser.add_argument("--floor-writer", metavar="KUBECONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.floor_writer:
        asyncio.run(floor_writer(args.floor_writer))
        return
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, not {args.rounds}")
    contenders = args.contenders.split(",")
    unknown = [name for name in contenders if name not in CONTENDERS]
    if (
        unknown
        or len(set(contenders)) != len(contenders)
        or not {"floor", "sart"} <= set(contenders)
    ):
        parser.error(
            f"--contenders {args.contenders!r}: each of {', '.join(CONTENDERS)} at most once,"
            " floor and sart among them"
        )
    asyncio.run(measure(args.services, args.restart_services, args.idle, args.rounds, contenders))


if __name__ == "__main__":
    main()
