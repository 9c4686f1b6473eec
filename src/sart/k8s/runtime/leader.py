"""Leader election with a coordination.k8s.io Lease, as client-go does it, so two controllers
never both act.

- Expiry is judged on our own clock: a candidate remembers when it last saw the Lease record
  change, and takes the Lease only when it has not changed for `duration` seconds. The holder's
  renewTime is never compared with our clock, so clock skew between nodes cannot make two
  leaders.
- The leader renews every `renew` seconds. A failed renewal (a transient apiserver error) is
  retried; leadership is lost only when no renewal has succeeded for `renew_deadline` seconds
  (shorter than `duration`, so the leader stops before anyone else may start), or at once when
  someone else holds the Lease.
- `fence()` tells the work whether it may still write: it raises LeadershipLost once the last
  successful renewal is older than `renew_deadline`. A leader frozen past its lease (SIGSTOP,
  a long GC pause) that wakes up finds itself fenced before its first write.
- Writes carry the Lease's resourceVersion, so of two candidates racing for a free Lease
  exactly one wins (the other gets 409).
- `release()` at a clean stop empties the holder, so a standby takes over at once.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from kubernetes_asyncio.client import CoordinationV1Api
from kubernetes_asyncio.client.exceptions import ApiException

from sart.k8s.runtime.outcome import API_ERRORS, LeadershipLost

log = logging.getLogger("sart.k8s")


def _format(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElection:
    def __init__(
        self,
        api: CoordinationV1Api,
        *,
        name: str,
        namespace: str,
        identity: str,
        duration: float = 15.0,
        renew: float = 2.0,
        renew_deadline: float | None = None,
        on_change: Callable[[bool], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api, self.name, self.namespace, self.identity = api, name, namespace, identity
        self.duration, self.renew = duration, renew
        self.renew_deadline = renew_deadline if renew_deadline is not None else duration * 2 / 3
        if not renew < self.renew_deadline < duration:
            raise ValueError("leader election needs renew < renew_deadline < duration")
        self.on_change = on_change or (lambda leading: None)
        self.clock = clock
        self._observed: tuple[Any, ...] | None = None  # the Lease record as last read
        self._observed_at = 0.0  # when (our clock) the record last changed
        self._renewed_at: float | None = None  # our last successful acquire or renew

    # --- the record -----------------------------------------------------------------------

    def _spec(self, acquired: str | None, transitions: int) -> dict[str, Any]:
        now = _format(datetime.datetime.now(datetime.UTC))
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.duration)),
            "acquireTime": acquired or now,
            "renewTime": now,
            "leaseTransitions": transitions,
        }

    def _observe(self, spec: Any) -> None:
        record = (
            spec.holder_identity,
            spec.renew_time,
            spec.acquire_time,
            spec.lease_transitions,
            spec.lease_duration_seconds,
        )
        if record != self._observed:
            self._observed, self._observed_at = record, self.clock()

    async def try_acquire(self) -> bool:
        """One attempt to acquire or renew: True if we hold the Lease now, False if someone
        else does. Apiserver errors other than a lost race (409) are raised.

        A success counts from when the attempt *began*: an answer read late (the process was
        frozen with it in its socket) must not make an old renewal look fresh."""
        began = self.clock()
        try:
            lease = await self.api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as error:
            if error.status != 404:
                raise
            body: Any = {"metadata": {"name": self.name}, "spec": self._spec(None, 0)}
            try:
                await self.api.create_namespaced_lease(self.namespace, body)
            except ApiException as create_error:
                if create_error.status == 409:
                    return False
                raise
            self._renewed_at = began
            return True
        spec = lease.spec
        self._observe(spec)
        holder = spec.holder_identity
        ours = holder == self.identity
        duration = spec.lease_duration_seconds or self.duration
        if holder and not ours and self.clock() - self._observed_at < duration:
            return False
        transitions = (spec.lease_transitions or 0) + (0 if ours else 1)
        acquired = _format(spec.acquire_time) if ours and spec.acquire_time else None
        body = {
            "metadata": {"name": self.name, "resourceVersion": lease.metadata.resource_version},
            "spec": self._spec(acquired, transitions),
        }
        try:
            await self.api.replace_namespaced_lease(self.name, self.namespace, body)
        except ApiException as error:
            if error.status == 409:
                return False  # someone else wrote it first
            raise
        self._renewed_at = began
        return True

    # --- leading --------------------------------------------------------------------------

    def leading(self) -> bool:
        """Whether a renewal succeeded within the renew deadline."""
        return self._renewed_at is not None and (
            self.clock() - self._renewed_at < self.renew_deadline
        )

    @property
    def answered(self) -> bool:
        """Whether the apiserver has answered an attempt on the Lease: we hold it, or know who
        does (a standby that knows is ready to take over; for /readyz)."""
        return self._observed is not None or self._renewed_at is not None

    def fence(self) -> None:
        """Call before every write made as the leader."""
        if not self.leading():
            raise LeadershipLost(f"{self.identity} no longer holds the Lease {self.name}")

    async def _acquire(self) -> None:
        while True:
            try:
                if await self.try_acquire():
                    return
            except API_ERRORS as error:
                log.warning("lease not acquired", extra={"error": repr(error)})
            await asyncio.sleep(self.renew)

    async def _keep(self) -> None:
        """Renew until leadership is lost; then raise LeadershipLost."""
        while True:
            await asyncio.sleep(self.renew)
            if not self.leading():
                raise LeadershipLost(f"no renewal for {self.renew_deadline:.1f} s")
            assert self._renewed_at is not None
            left = self._renewed_at + self.renew_deadline - self.clock()
            try:
                async with asyncio.timeout(max(left, 0.01)):
                    held = await self.try_acquire()
            except (*API_ERRORS, TimeoutError) as error:
                log.warning("lease not renewed, retrying", extra={"error": repr(error)})
                continue
            if not held:
                self._renewed_at = None
                raise LeadershipLost(f"the Lease {self.name} is held by someone else")

    async def hold(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Wait to lead, then run `work` while we lead. Losing the Lease cancels the work at
        once and raises LeadershipLost; the work failing raises its error."""
        await self._acquire()
        log.info(
            "leading", extra={"lease": f"{self.namespace}/{self.name}", "identity": self.identity}
        )
        self.on_change(True)
        task: asyncio.Task[None] = asyncio.create_task(work())
        keeper: asyncio.Task[None] = asyncio.create_task(self._keep())
        try:
            await asyncio.wait({task, keeper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pending in (task, keeper):
                pending.cancel()
            await asyncio.gather(task, keeper, return_exceptions=True)
            self.on_change(False)
        if keeper.done() and not keeper.cancelled() and keeper.exception() is not None:
            log.error("lost the lease: stopping", extra={"identity": self.identity})
            raise keeper.exception()  # type: ignore[misc]
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]

    async def release(self) -> None:
        """Give the Lease up at a clean stop, so a standby takes over at once."""
        self._renewed_at = None
        try:
            lease = await self.api.read_namespaced_lease(self.name, self.namespace)
            if lease.spec.holder_identity == self.identity:
                body: Any = {
                    "metadata": {
                        "name": self.name,
                        "resourceVersion": lease.metadata.resource_version,
                    },
                    "spec": {
                        **self._spec(None, lease.spec.lease_transitions or 0),
                        "holderIdentity": None,
                        "leaseDurationSeconds": 1,
                    },
                }
                await self.api.replace_namespaced_lease(self.name, self.namespace, body)
        except API_ERRORS as error:
            log.warning("lease not released", extra={"error": repr(error)})
