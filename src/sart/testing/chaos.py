"""Fault proofs for sart-controller: SIGKILL it at random moments while Services churn, then
read the apiserver and check that no address is held by two Services, that every LoadBalancer
Service has its address and that every deleted Service is gone.

`run_chaos` drives one run against a control plane (`sart.testing.controlplane.ControlPlane`,
or any kubeconfig). It creates an autoAssign AddressPool and a pool for named addresses, then,
from one seed, plans a churn of Services (`plan_churn`: created, their annotations and type
changed, deleted; a few name their address, a few share one by a sharing key) and a schedule of
kills (`plan_kills`). It runs sart-controller as a subprocess with leader election, SIGKILLs it
at each scheduled moment and at once starts a new one, which must wait for the dead leader's
Lease to expire before it acts, as a restarted Pod does. Some kills come a random time after the
start (start-up, sync, waiting for the Lease), the others a random time after the process took
the Lease (adopting what the Services' status says, reconciling, writing). The churn keeps pace
with the kills: the operations planned for cycle k wait until the k-th controller is started.

When the churn and the kills are done, the last controller settles and `check` reads the
apiserver: the time until every invariant holds is the settle time, and what still fails after
`settle_timeout` is reported as violations. Meanwhile a watch notes every moment two Services
showed one address without a common sharing key: the apiserver's intermediate states, reported
for information, apart by cause: a status the controller wrote (`transient_doubles`), or the
churn taking a sharing key away from Services that shared (`unshared`, which the controller
then resolves by moving one of them).

The seed is printed first: the same seed replays the same operations, kill schedule and pauses
(the machine's timing stays its own). `ControllerProcess` starts, freezes, thaws, kills and stops
one sart-controller and reads its JSON log; the leader freeze test uses it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import aiohttp
import attrs
from kubernetes_asyncio.client import ApiClient, CoordinationV1Api, CoreV1Api, CustomObjectsApi
from kubernetes_asyncio.client.exceptions import ApiException
from netaddr import IPAddress, IPNetwork

from sart.k8s.models import (
    ALLOW_SHARED_IP_ANNOTATION,
    GROUP,
    LOAD_BALANCER_IPS_ANNOTATION,
    VERSION,
)
from sart.k8s.reconcile.legacy import EARLIER_FINALIZER
from sart.k8s.reconcile.loadbalancer import LOAD_BALANCER_CLASS
from sart.k8s.runtime import MERGE
from sart.k8s.runtime.watch import watch_objects

TOUCH_ANNOTATION: Final = "chaos.sart.terassyi.net/touched"
"""Changed by the churn to make a Service change without changing what it asks for."""
LAUNCH: Final = """\
import ctypes, os, signal, sys
parent = int(sys.argv.pop(1))
ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
if os.getppid() != parent:
    sys.exit("the process that started this controller is gone")
from sart.cli.controller import main
main(sys.argv[1:], prog_name="sart-controller")
"""
"""`python -c LAUNCH PARENT ARGS...`: sart-controller that dies with the process starting it,
so a driver killed outright leaves no controller behind."""


class ChaosError(RuntimeError):
    """The run could not be carried out (not a violation of the invariants)."""


# --- settings ------------------------------------------------------------------------------


@attrs.frozen
class LeaseTimings:
    """sart-controller's --lease-duration, --renew-deadline and --retry-period."""

    duration: float = 3.0
    renew_deadline: float = 2.0
    retry_period: float = 0.5

    def __attrs_post_init__(self) -> None:
        if not self.retry_period < self.renew_deadline < self.duration:
            raise ValueError("lease timings need retry_period < renew_deadline < duration")

    def options(self) -> list[str]:
        return [
            "--lease-duration", str(self.duration),
            "--renew-deadline", str(self.renew_deadline),
            "--retry-period", str(self.retry_period),
        ]  # fmt: skip


def _positive_range(instance: Any, attribute: Any, value: tuple[float, float]) -> None:
    low, high = value
    if not 0 <= low <= high:
        raise ValueError(f"{attribute.name} must be (low, high) with 0 <= low <= high")


@attrs.frozen(kw_only=True)
class ChaosSettings:
    seed: int
    kills: int = attrs.field(default=100, validator=attrs.validators.ge(1))
    services: int = attrs.field(default=200, validator=attrs.validators.ge(1))
    named: int = 5  # Services that name their address (sart.terassyi.net/loadBalancerIPs)
    shared: int = 6  # Services that share addresses by a sharing key
    sharing_keys: int = 2
    changes: int = attrs.field()
    deletions: int = attrs.field()
    auto_cidr: str = "10.140.0.0/24"  # the autoAssign pool: every Service fits
    named_cidr: str = "10.140.1.0/25"  # the named addresses come from here
    lease: LeaseTimings = LeaseTimings()
    lead_fraction: float = 0.7  # kills timed from when the process took the Lease
    start_delay: tuple[float, float] = attrs.field(default=(0.0, 4.0), validator=_positive_range)
    lead_delay: tuple[float, float] = attrs.field(default=(0.0, 3.0), validator=_positive_range)
    settle_timeout: float = 120.0

    @changes.default
    def _changes(self) -> int:
        return self.services // 2

    @deletions.default
    def _deletions(self) -> int:
        return self.services // 4

    def __attrs_post_init__(self) -> None:
        if self.named + self.shared > self.services:
            raise ValueError("named + shared must not exceed services")
        if len(list(IPNetwork(self.auto_cidr).iter_hosts())) < self.services:
            raise ValueError(f"{self.auto_cidr} cannot give all {self.services} an address")


# --- the plan (pure) -----------------------------------------------------------------------


@attrs.frozen
class Create:
    name: str
    port: int
    annotations: Mapping[str, str]


@attrs.frozen
class Annotate:
    name: str
    annotations: Mapping[str, str | None]  # None removes the annotation


@attrs.frozen
class Retype:
    name: str
    type: str


@attrs.frozen
class Delete:
    name: str


Operation = Create | Annotate | Retype | Delete


@attrs.frozen
class Expected:
    """What a Service must show once the controller has settled."""

    type: str
    named: tuple[str, ...]  # the addresses it names; empty: one from the autoAssign pool
    sharing_key: str


@attrs.define
class _Modelled:
    type: str
    annotations: dict[str, str]


def _named_supply(cidr: str) -> Iterator[str]:
    for address in IPNetwork(cidr).iter_hosts():
        yield str(address)
    raise ChaosError(f"{cidr} has too few addresses for the named Services")


def plan_churn(settings: ChaosSettings, rng: random.Random) -> tuple[Operation, ...]:
    """The operations of one run, in order: `settings.services` creates interleaved with
    `settings.changes` changes and `settings.deletions` deletions of Services already made.
    A named address is never asked for twice, so every Service can get what it asks for."""
    kinds = ["named"] * settings.named + ["shared"] * settings.shared
    kinds += ["auto"] * (settings.services - len(kinds))
    rng.shuffle(kinds)
    supply = _named_supply(settings.named_cidr)
    keys = [f"share-{k}" for k in range(settings.sharing_keys)]
    model: dict[str, _Modelled] = {}
    alive: list[str] = []
    operations: list[Operation] = []
    created, changes, deletions, touches = 0, settings.changes, settings.deletions, 0
    while True:
        weights = [
            settings.services - created,
            changes if alive else 0,
            deletions if alive else 0,
        ]
        if not any(weights):
            return tuple(operations)
        choice = rng.choices(("create", "change", "delete"), weights)[0]
        if choice == "create":
            name, kind = f"s{created:03d}", kinds[created]
            annotations = {}
            if kind == "named":
                annotations[LOAD_BALANCER_IPS_ANNOTATION] = next(supply)
            elif kind == "shared":
                annotations[ALLOW_SHARED_IP_ANNOTATION] = rng.choice(keys)
            operations.append(Create(name, 10000 + created, annotations))
            model[name] = _Modelled("LoadBalancer", dict(annotations))
            alive.append(name)
            created += 1
            continue
        name = rng.choice(alive)
        if choice == "delete":
            operations.append(Delete(name))
            alive.remove(name)
            deletions -= 1
            continue
        changes -= 1
        service = model[name]
        if service.type == "ClusterIP":
            operations.append(Retype(name, "LoadBalancer"))
            service.type = "LoadBalancer"
            continue
        options = ["retype", "retype", "touch"]
        if LOAD_BALANCER_IPS_ANNOTATION in service.annotations:
            options += ["rename", "rename", "unname"]
        elif ALLOW_SHARED_IP_ANNOTATION in service.annotations:
            options += ["rekey", "rekey", "unshare"]
        else:
            options += ["name", "share"]
        change = rng.choice(options)
        if change == "retype":
            operations.append(Retype(name, "ClusterIP"))
            service.type = "ClusterIP"
            continue
        patch: dict[str, str | None]
        if change == "touch":
            touches += 1
            patch = {TOUCH_ANNOTATION: str(touches)}
        elif change in ("rename", "name"):
            patch = {LOAD_BALANCER_IPS_ANNOTATION: next(supply)}
        elif change == "unname":
            patch = {LOAD_BALANCER_IPS_ANNOTATION: None}
        elif change == "unshare":
            patch = {ALLOW_SHARED_IP_ANNOTATION: None}
        else:  # rekey, share
            current = service.annotations.get(ALLOW_SHARED_IP_ANNOTATION)
            patch = {ALLOW_SHARED_IP_ANNOTATION: rng.choice([k for k in keys if k != current])}
        operations.append(Annotate(name, patch))
        for key, value in patch.items():
            if value is None:
                service.annotations.pop(key, None)
            else:
                service.annotations[key] = value


def expectations(operations: Sequence[Operation]) -> dict[str, Expected | None]:
    """What every Service the operations touch must look like at the end (None: gone)."""
    types: dict[str, str] = {}
    annotations: dict[str, dict[str, str]] = {}
    gone: set[str] = set()
    for operation in operations:
        name = operation.name
        if isinstance(operation, Create):
            types[name], annotations[name] = "LoadBalancer", dict(operation.annotations)
        elif isinstance(operation, Retype):
            types[name] = operation.type
        elif isinstance(operation, Annotate):
            for key, value in operation.annotations.items():
                if value is None:
                    annotations[name].pop(key, None)
                else:
                    annotations[name][key] = value
        else:
            gone.add(name)
    result: dict[str, Expected | None] = {}
    for name, kind in types.items():
        if name in gone:
            result[name] = None
            continue
        named = annotations[name].get(LOAD_BALANCER_IPS_ANNOTATION, "")
        result[name] = Expected(
            type=kind,
            named=tuple(a.strip() for a in named.split(",") if a.strip()),
            sharing_key=annotations[name].get(ALLOW_SHARED_IP_ANNOTATION, ""),
        )
    return result


@attrs.frozen
class Kill:
    after_lead: bool  # timed from when the process took the Lease, else from its start
    delay: float


def plan_kills(settings: ChaosSettings, rng: random.Random) -> tuple[Kill, ...]:
    kills = []
    for _ in range(settings.kills):
        after_lead = rng.random() < settings.lead_fraction
        low, high = settings.lead_delay if after_lead else settings.start_delay
        kills.append(Kill(after_lead, rng.uniform(low, high)))
    return tuple(kills)


# --- the invariants (pure) -----------------------------------------------------------------


@attrs.frozen(kw_only=True)
class ServiceState:
    """What the checks read of a Service."""

    namespace: str
    name: str
    type: str
    load_balancer_class: str | None
    ingress: tuple[str, ...]
    finalizers: tuple[str, ...]
    deleting: bool
    sharing_key: str

    @classmethod
    def from_api(cls, service: Any) -> ServiceState:
        meta, spec, status = service.metadata, service.spec, service.status
        balancer = status.load_balancer if status is not None else None
        ingress = tuple(i.ip for i in (balancer.ingress or ()) if i.ip) if balancer else ()
        return cls(
            namespace=meta.namespace,
            name=meta.name,
            type=spec.type or "ClusterIP",
            load_balancer_class=spec.load_balancer_class,
            ingress=ingress,
            finalizers=tuple(meta.finalizers or ()),
            deleting=meta.deletion_timestamp is not None,
            sharing_key=(meta.annotations or {}).get(ALLOW_SHARED_IP_ANNOTATION, "").strip(),
        )

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@attrs.frozen
class PoolState:
    name: str
    cidr: str
    allocated: int | None  # status.allocatedAddresses; None: not written yet


@attrs.frozen
class Violation:
    kind: str  # one of VIOLATION_KINDS
    text: str


VIOLATION_KINDS: Final = (
    "held twice",  # an address in two Services without a common sharing key
    "without address",  # a LoadBalancer Service without (the right) address
    "not released",  # a deleted Service still there: a finalizer holds it
    "finalizer",  # a Service carries the finalizer sart-controller no longer writes
    "pool status",  # an AddressPool's allocatedAddresses differs from what Services hold
    "crash",  # a controller exited by itself for another reason than losing the Lease
    "other",
)


def _holders(services: Sequence[ServiceState]) -> dict[str, list[ServiceState]]:
    holders: dict[str, list[ServiceState]] = {}
    for service in services:
        for address in set(service.ingress):
            holders.setdefault(address, []).append(service)
    return holders


def _may_share(holders: Sequence[ServiceState]) -> bool:
    keys = {h.sharing_key for h in holders}
    return len(keys) == 1 and "" not in keys


def check(
    namespace: str,
    expected: Mapping[str, Expected | None],
    services: Sequence[ServiceState],
    pools: Sequence[PoolState],
    auto_cidr: str,
) -> list[Violation]:
    """The invariants, on what the apiserver holds: `services` of every namespace, `expected`
    the Services of `namespace` the churn touched, `pools` the pools whose status must count
    exactly the addresses Services hold."""
    violations: list[Violation] = []
    holders = _holders(services)
    for address, holding in sorted(holders.items()):
        if len(holding) > 1 and not _may_share(holding):
            names = ", ".join(f"{h.key} (key {h.sharing_key or 'none'})" for h in holding)
            violations.append(Violation("held twice", f"{address} is held by {names}"))
    ours = {s.name: s for s in services if s.namespace == namespace}
    auto = IPNetwork(auto_cidr)
    for name, want in sorted(expected.items()):
        got = ours.get(name)
        if want is None:
            if got is not None:
                violations.append(
                    Violation(
                        "not released",
                        f"{name} was deleted but is still there"
                        f" (finalizers {list(got.finalizers)}, ingress {list(got.ingress)})",
                    )
                )
            continue
        if got is None:
            violations.append(Violation("other", f"{name} is missing"))
            continue
        violations += _check_one(got, want, auto)
    for pool in pools:
        network = IPNetwork(pool.cidr)
        held = sum(1 for a in holders if IPAddress(a) in network)
        if pool.allocated != held:
            violations.append(
                Violation(
                    "pool status",
                    f"AddressPool {pool.name} reports {pool.allocated} allocated,"
                    f" Services hold {held}",
                )
            )
    return violations


def _check_one(got: ServiceState, want: Expected, auto: IPNetwork) -> list[Violation]:
    name = got.name
    if got.type != want.type:
        return [Violation("other", f"{name} is {got.type}, not {want.type}")]
    ours = got.type == "LoadBalancer" and got.load_balancer_class in (None, LOAD_BALANCER_CLASS)
    found = []
    if EARLIER_FINALIZER in got.finalizers:
        found.append(Violation("finalizer", f"{name} carries {EARLIER_FINALIZER}"))
    if not ours:
        if got.ingress:
            found.append(Violation("other", f"{name} ({got.type}) still shows {got.ingress}"))
        return found
    if not got.ingress:
        found.append(Violation("without address", f"{name} has no address"))
    elif want.named and sorted(got.ingress) != sorted(want.named):
        found.append(
            Violation("without address", f"{name} has {list(got.ingress)}, names {want.named}")
        )
    elif not want.named and (len(got.ingress) != 1 or IPAddress(got.ingress[0]) not in auto):
        found.append(
            Violation("without address", f"{name} has {list(got.ingress)}, not one of {auto}")
        )
    return found


# --- the report ------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class ChaosReport:
    seed: int
    kills: int
    kills_leading: int  # of those, kills of a process that held the Lease
    own_exits: tuple[str, ...]  # processes that exited before their kill, and why
    services: int
    changes: int
    deletions: int
    remaining_balancers: int
    remaining_cluster_ips: int
    shared_addresses: int  # addresses held by more than one Service at the end
    chaos_seconds: float  # from the first controller's start to the last kill / operation
    takeover_seconds: float | None  # the last kill -> the last controller holds the Lease
    settle_seconds: float | None  # end of the chaos -> every invariant holds; None: never
    startup_conflicts: int  # "allocation conflict at start-up" logged by the controllers
    deleted_unled: int  # deletions made while no live controller held the Lease
    transient_doubles: tuple[str, ...]  # an address written to a second Service meanwhile
    unshared: int  # a sharing key taken away while two Services shared the address
    final_exit: int | None  # the last controller's exit code on SIGTERM
    violations: tuple[Violation, ...]

    @property
    def passed(self) -> bool:
        return not self.violations and self.settle_seconds is not None and self.final_exit == 0

    def counts(self) -> dict[str, int]:
        counted = Counter(v.kind for v in self.violations)
        return {kind: counted.get(kind, 0) for kind in VIOLATION_KINDS}

    def lines(self) -> list[str]:
        def seconds(value: float | None) -> str:
            return "never" if value is None else f"{value:.1f} s"

        counts = self.counts()
        lines = [
            f"seed {self.seed}",
            f"kills: {self.kills} SIGKILLs ({self.kills_leading} of the leader,"
            f" {self.kills - self.kills_leading} during start-up or while waiting for the"
            f" Lease); {len(self.own_exits)} exits on its own",
            f"Services: {self.services} created, {self.changes} changed,"
            f" {self.deletions} deleted ({self.deleted_unled} while no controller led);"
            f" left {self.remaining_balancers} LoadBalancer,"
            f" {self.remaining_cluster_ips} ClusterIP; {self.shared_addresses} shared addresses",
            f"chaos {self.chaos_seconds:.1f} s; the last controller led"
            f" {seconds(self.takeover_seconds)} after the last kill; all invariants held"
            f" {seconds(self.settle_seconds)} after the chaos ended",
            f"during the churn: {len(self.transient_doubles)} addresses written to a second"
            f" Service while another showed them; {self.unshared} sharing keys taken away from"
            f" Services sharing an address; {self.startup_conflicts} conflicts logged at"
            " adoption",
            "violations: " + ", ".join(f"{counts[k]} {k}" for k in VIOLATION_KINDS),
            f"last controller stopped with exit code {self.final_exit}",
        ]
        lines += [f"  own exit: {text}" for text in self.own_exits]
        lines += [f"  transient: {text}" for text in self.transient_doubles[:10]]
        lines += [f"  VIOLATION {v.kind}: {v.text}" for v in self.violations[:50]]
        lines.append("PASS" if self.passed else "FAIL")
        return lines


# --- one sart-controller process ---------------------------------------------------------------


class ControllerProcess:
    """sart-controller as a subprocess, in its own process group, logging JSON lines to a
    file; it dies with the process that started it (PR_SET_PDEATHSIG)."""

    def __init__(self, process: subprocess.Popen[bytes], identity: str, log: Path) -> None:
        self.process = process
        self.identity = f"{identity}-{process.pid}"  # as sart-controller makes it
        self.log = log

    @classmethod
    def start(
        cls,
        kubeconfig: Path,
        log: Path,
        *,
        lease_namespace: str,
        lease_name: str,
        identity: str = "chaos",
        lease: LeaseTimings | None = None,
        field_manager: str = "sart-controller",
        level: str = "info",
        metrics_address: str = "",
    ) -> ControllerProcess:
        timings = lease if lease is not None else LeaseTimings()
        command = [
            sys.executable, "-c", LAUNCH, str(os.getpid()),
            "--kubeconfig", str(kubeconfig),
            "--lease-namespace", lease_namespace, "--lease-name", lease_name,
            "--identity", identity, "--field-manager", field_manager,
            *timings.options(),
            "--metrics-address", metrics_address, "--format", "json", "--level", level,
        ]  # fmt: skip
        with log.open("ab") as output:
            process = subprocess.Popen(
                command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
            )
        return cls(process, identity, log)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def signal(self, signum: int) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signum)

    def kill(self) -> int:
        """SIGKILL and reap; the exit code (-9 unless it had exited already)."""
        self.signal(signal.SIGKILL)
        return self.process.wait()

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM (a clean stop), SIGKILL if it is not gone after `timeout`; the exit code."""
        self.signal(signal.SIGCONT)  # a frozen process cannot act on SIGTERM
        self.signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return self.kill()

    async def wait_exit(self, timeout: float) -> int | None:
        """The exit code once it exits by itself within `timeout`, else None."""
        deadline = time.monotonic() + timeout
        while (code := self.process.poll()) is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return code

    def log_size(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def log_entries(self, offset: int = 0) -> list[dict[str, Any]]:
        """The JSON log entries written from byte `offset` on (other lines as messages)."""
        if not self.log.exists():
            return []
        with self.log.open("rb") as handle:
            handle.seek(offset)
            text = handle.read().decode(errors="replace")
        entries: list[dict[str, Any]] = []
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                entry = {"message": line}
            entries.append(entry if isinstance(entry, dict) else {"message": line})
        return entries

    def why_exited(self) -> str:
        """The last error the log shows (the traceback's last line when there is one)."""
        for entry in reversed(self.log_entries()):
            if entry.get("level") in ("critical", "error"):
                exception = str(entry.get("exception", "")).strip().splitlines()
                return exception[-1] if exception else str(entry.get("message"))
        return "nothing logged"


# --- the run -------------------------------------------------------------------------------


async def read_holder(api: ApiClient, namespace: str, name: str) -> str | None:
    """The Lease's holderIdentity (None when there is no Lease or no holder)."""
    try:
        lease = await CoordinationV1Api(api).read_namespaced_lease(name, namespace)
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    holder: str | None = lease.spec.holder_identity
    return holder


async def _retrying(call: Callable[[], Awaitable[Any]], attempts: int = 6) -> Any:
    """One apiserver call, retried on what is temporary (429, 5xx, the transport)."""
    for attempt in range(attempts):
        try:
            return await call()
        except ApiException as error:
            temporary = error.status in (0, 429) or (error.status or 0) >= 500
            if not temporary or attempt == attempts - 1:
                raise
        except (aiohttp.ClientError, OSError, TimeoutError):
            if attempt == attempts - 1:
                raise
        await asyncio.sleep(0.2 * 2**attempt)
    raise AssertionError("unreachable")


class _TransientDoubles:
    """Follows the namespace's Services and notes every address two of them showed at once
    without a common sharing key (an intermediate state): `written` when a status gave a
    Service an address another one showed, `unshared` when the churn took the sharing key
    away from Services that shared an address."""

    def __init__(self) -> None:
        self.states: dict[str, ServiceState] = {}
        self.written: dict[tuple[str, frozenset[str]], str] = {}
        self.unshared: set[tuple[str, frozenset[str]]] = set()

    def handle(self, kind: str, service: Any) -> None:
        if kind == "SYNCED":
            return
        state = ServiceState.from_api(service)
        before = self.states.pop(state.name, None)
        if kind == "DELETED":
            return
        self.states[state.name] = state
        for address in state.ingress:
            holding = [s for s in self.states.values() if address in s.ingress]
            if len(holding) < 2 or _may_share(holding):
                continue
            names = frozenset(h.name for h in holding)
            key = (address, names)
            if before is not None and address in before.ingress:
                self.unshared.add(key)  # it had the address: its sharing key changed
            elif key not in self.written:
                deleting = [h.name for h in holding if h.deleting]
                note = f" ({', '.join(deleting)} being deleted)" if deleting else ""
                self.written[key] = f"{address}: {', '.join(sorted(names))}{note}"


class _Run:
    def __init__(
        self,
        api: ApiClient,
        kubeconfig: Path,
        namespace: str,
        settings: ChaosSettings,
        workdir: Path,
        say: Callable[[str], None],
    ) -> None:
        self.api, self.kubeconfig, self.namespace = api, kubeconfig, namespace
        self.settings, self.workdir, self.say = settings, workdir, say
        self.core, self.custom = CoreV1Api(api), CustomObjectsApi(api)
        seed = settings.seed
        self.operations = plan_churn(settings, random.Random(f"{seed}-churn"))
        self.schedule = plan_kills(settings, random.Random(f"{seed}-kills"))
        pauses = random.Random(f"{seed}-pauses")
        self.pauses = tuple(pauses.uniform(0.0, 2.0) for _ in self.operations)
        self.suffix = f"{seed % 10**8:08d}"
        self.lease_name = f"chaos-{self.suffix}"
        self.pools = {
            f"chaos-auto-{self.suffix}": (settings.auto_cidr, True),
            f"chaos-named-{self.suffix}": (settings.named_cidr, False),
        }
        self.processes: list[ControllerProcess] = []
        self.cycles = [asyncio.Event() for _ in range(settings.kills + 1)]
        self.cycle_seconds: list[float] = []
        self.own_exits: list[str] = []
        self.crashes: list[Violation] = []
        self.kills_leading = 0
        self.deleted_unled = 0
        self.doubles = _TransientDoubles()

    # processes

    def start_controller(self) -> ControllerProcess:
        number = len(self.processes)
        process = ControllerProcess.start(
            self.kubeconfig,
            self.workdir / f"controller-{number:03d}.log",
            lease_namespace=self.namespace,
            lease_name=self.lease_name,
            lease=self.settings.lease,
        )
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.processes:
            if process.returncode is None:
                process.kill()

    def note_own_exit(self, process: ControllerProcess) -> None:
        why = process.why_exited()
        self.own_exits.append(f"{process.identity}: exit code {process.returncode}: {why}")
        if "LeadershipLost" not in why:
            self.crashes.append(Violation("crash", f"{process.identity} exited: {why}"))
        if len(self.own_exits) > self.settings.kills:
            raise ChaosError("the controller keeps exiting by itself: " + why)

    async def holds_lease(self, process: ControllerProcess) -> bool:
        holder = await _retrying(lambda: read_holder(self.api, self.namespace, self.lease_name))
        return bool(holder == process.identity)

    async def wait_leading(self, process: ControllerProcess) -> bool:
        """Until the process holds the Lease (True) or exits (False)."""
        bound = 30.0 + 10 * self.settings.lease.duration
        deadline = time.monotonic() + bound
        while process.returncode is None:
            if await self.holds_lease(process):
                return True
            if time.monotonic() > deadline:
                raise ChaosError(f"{process.identity} did not take the Lease in {bound:.0f} s")
            await asyncio.sleep(0.05)
        return False

    async def pause_unless_exited(self, process: ControllerProcess, seconds: float) -> bool:
        """Sleep `seconds` (the random kill delay); False if the process exits meanwhile."""
        deadline = time.monotonic() + seconds
        while process.returncode is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            await asyncio.sleep(min(left, 0.05))
        return False

    # the chaos

    async def kill_loop(self) -> ControllerProcess:
        process = self.start_controller()
        index = 0
        while index < len(self.schedule):
            self.cycles[index].set()
            began = time.monotonic()
            kill = self.schedule[index]
            alive = True
            if kill.after_lead:
                alive = await self.wait_leading(process)
            alive = alive and await self.pause_unless_exited(process, kill.delay)
            if not alive:
                self.note_own_exit(process)
                process = self.start_controller()
                continue
            leading = await self.holds_lease(process)
            process.kill()
            self.kills_leading += leading
            self.cycle_seconds.append(time.monotonic() - began)
            index += 1
            process = self.start_controller()
        self.cycles[-1].set()
        return process

    async def churn(self) -> None:
        per_cycle = len(self.operations) / self.settings.kills
        lease = self.settings.lease.duration
        first_guess = 1.5 + lease + sum(self.settings.lead_delay) / 2
        for index, operation in enumerate(self.operations):
            await self.cycles[min(int(index / per_cycle), self.settings.kills - 1)].wait()
            cycle = (
                sum(self.cycle_seconds) / len(self.cycle_seconds)
                if self.cycle_seconds
                else first_guess
            )
            await asyncio.sleep(self.pauses[index] * cycle / per_cycle)
            await _retrying(functools.partial(self.apply, operation))

    async def apply(self, operation: Operation) -> None:
        name, namespace = operation.name, self.namespace
        body: Any
        if isinstance(operation, Create):
            body = {
                "metadata": {"name": name, "annotations": dict(operation.annotations)},
                "spec": {
                    "type": "LoadBalancer",
                    "ports": [{"port": operation.port, "targetPort": 8080}],
                    "selector": {"app": name},
                },
            }
            try:
                await self.core.create_namespaced_service(namespace, body)
            except ApiException as error:
                if error.status != 409:  # a retry of a create that went through
                    raise
        elif isinstance(operation, Annotate):
            body = {"metadata": {"annotations": dict(operation.annotations)}}
            await self.core.patch_namespaced_service(name, namespace, body, **MERGE)
        elif isinstance(operation, Retype):
            body = {"spec": {"type": operation.type}}
            await self.core.patch_namespaced_service(name, namespace, body, **MERGE)
        else:
            try:
                await self.core.delete_namespaced_service(name, namespace)
            except ApiException as error:
                if error.status != 404:
                    raise
            holder = await read_holder(self.api, self.namespace, self.lease_name)
            live = {p.identity for p in self.processes if p.returncode is None}
            self.deleted_unled += holder not in live

    # reading the apiserver

    async def observe(self) -> tuple[list[ServiceState], list[PoolState]]:
        listing = await _retrying(self.core.list_service_for_all_namespaces)
        services = [ServiceState.from_api(s) for s in listing.items]
        pools = []
        for name, (cidr, _) in self.pools.items():
            read = functools.partial(
                self.custom.get_cluster_custom_object, GROUP, VERSION, "addresspools", name
            )
            pool = await _retrying(read)
            allocated = (pool.get("status") or {}).get("allocatedAddresses")
            pools.append(PoolState(name, cidr, allocated))
        return services, pools

    async def violations(self, expected: Mapping[str, Expected | None]) -> list[Violation]:
        services, pools = await self.observe()
        return check(self.namespace, expected, services, pools, self.settings.auto_cidr)

    # set-up and clean-up

    async def create_pools(self) -> None:
        # Right after the CRDs are made the apiserver may still answer 429 for a while.
        listing = functools.partial(
            self.custom.list_cluster_custom_object, GROUP, VERSION, "addresspools"
        )
        existing = await _retrying(listing)
        for pool in existing["items"]:
            spec = pool.get("spec") or {}
            service = spec.get("autoAssign") and spec.get("type", "service") == "service"
            if service and IPNetwork(spec.get("cidr", "0.0.0.0/0")).version == 4:
                raise ChaosError(
                    f"AddressPool {pool['metadata']['name']} is autoAssign already:"
                    " the run needs its own"
                )
        for name, (cidr, auto) in self.pools.items():
            body = {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "AddressPool",
                "metadata": {"name": name},
                "spec": {"cidr": cidr, "type": "service", "autoAssign": auto},
            }
            create = functools.partial(
                self.custom.create_cluster_custom_object, GROUP, VERSION, "addresspools", body
            )
            await _retrying(create)

    async def clean_up(self) -> None:
        """Delete the run's Services and its pools."""
        listing = await _retrying(lambda: self.core.list_namespaced_service(self.namespace))
        for service in listing.items:
            with contextlib.suppress(ApiException):
                await self.core.delete_namespaced_service(service.metadata.name, self.namespace)
        for name in self.pools:
            with contextlib.suppress(ApiException):
                await self.custom.delete_cluster_custom_object(GROUP, VERSION, "addresspools", name)

    # the whole run

    async def run(self) -> ChaosReport:
        settings = self.settings
        self.say(f"seed {settings.seed}: {len(self.operations)} operations on"
                 f" {settings.services} Services, {settings.kills} kills")  # fmt: skip
        expected = expectations(self.operations)
        await self.create_pools()
        watcher = asyncio.create_task(
            watch_objects(
                self.core.list_namespaced_service,
                self.doubles.handle,
                "services",
                namespace=self.namespace,
            )
        )
        try:
            began = time.monotonic()
            churn = asyncio.create_task(self.churn())
            try:
                final = await self.kill_loop()
                last_kill = time.monotonic()
                takeover: float | None = None
                if await self.wait_leading(final):
                    takeover = time.monotonic() - last_kill
                await churn
            finally:
                churn.cancel()
                await asyncio.gather(churn, return_exceptions=True)
            ended = time.monotonic()
            self.say(f"chaos over after {ended - began:.1f} s; settling")
            settle: float | None = None
            found: list[Violation] = []
            deadline = ended + settings.settle_timeout
            while time.monotonic() < deadline:
                if final.returncode is not None:
                    self.note_own_exit(final)
                    final = self.start_controller()
                found = await self.violations(expected)
                if not found and await self.holds_lease(final):
                    settle = time.monotonic() - ended
                    break
                await asyncio.sleep(0.2)
            final_exit = final.stop()
            services, _ = await self.observe()
        finally:
            self.stop_all()
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            await self.clean_up()
        mine = [s for s in services if s.namespace == self.namespace]
        holders = _holders(services)
        conflicts = sum(
            1
            for process in self.processes
            for entry in process.log_entries()
            if entry.get("message") == "allocation conflict at start-up"
        )
        return ChaosReport(
            seed=settings.seed,
            kills=len(self.schedule),
            kills_leading=self.kills_leading,
            own_exits=tuple(self.own_exits),
            services=settings.services,
            changes=sum(isinstance(o, Annotate | Retype) for o in self.operations),
            deletions=sum(isinstance(o, Delete) for o in self.operations),
            remaining_balancers=sum(s.type == "LoadBalancer" for s in mine),
            remaining_cluster_ips=sum(s.type == "ClusterIP" for s in mine),
            shared_addresses=sum(len(h) > 1 for h in holders.values()),
            chaos_seconds=ended - began,
            takeover_seconds=takeover,
            settle_seconds=settle,
            startup_conflicts=conflicts,
            deleted_unled=self.deleted_unled,
            transient_doubles=tuple(self.doubles.written.values()),
            unshared=len(self.doubles.unshared),
            final_exit=final_exit,
            violations=tuple(self.crashes + found),
        )


async def run_chaos(
    api: ApiClient,
    kubeconfig: Path,
    namespace: str,
    settings: ChaosSettings,
    workdir: Path,
    say: Callable[[str], None] = print,
) -> ChaosReport:
    """One run (see the module's docstring) in `namespace`, which must exist and hold nothing
    else; the Lease is made there too. The controllers log to `workdir`. The run's Services
    and pools are deleted at the end, whatever happens; its processes are gone too."""
    return await _Run(api, kubeconfig, namespace, settings, workdir, say).run()
