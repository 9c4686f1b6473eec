"""Leader election with a coordination.k8s.io Lease, so two controllers never both act.

The holder renews the Lease every `renew` seconds; another candidate takes it only when it has
not been renewed for `duration` seconds. Writes carry the Lease's resourceVersion, so of two
candidates racing for an expired Lease exactly one wins (the other gets 409). `hold` runs the
work while we lead and cancels it the moment a renewal fails."""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from kubernetes_asyncio.client import CoordinationV1Api
from kubernetes_asyncio.client.exceptions import ApiException

log = logging.getLogger("sart.k8s")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


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
        renew: float = 5.0,
    ) -> None:
        self.api, self.name, self.namespace, self.identity = api, name, namespace, identity
        self.duration, self.renew = duration, renew

    def _spec(self, acquired: datetime.datetime | None, transitions: int) -> dict[str, Any]:
        now = _now()
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.duration),
            "acquireTime": _format(acquired or now),
            "renewTime": _format(now),
            "leaseTransitions": transitions,
        }

    async def try_acquire(self) -> bool:
        """One attempt: True if we hold the Lease now."""
        try:
            lease = await self.api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as error:
            if error.status != 404:
                raise
            body: Any = {"metadata": {"name": self.name}, "spec": self._spec(None, 0)}
            try:
                await self.api.create_namespaced_lease(self.namespace, body)
                return True
            except ApiException as create_error:
                if create_error.status == 409:
                    return False
                raise
        spec = lease.spec
        holder = spec.holder_identity
        renewed = spec.renew_time
        expired = renewed is None or (
            (_now() - renewed).total_seconds() > (spec.lease_duration_seconds or self.duration)
        )
        if holder not in (None, "", self.identity) and not expired:
            return False
        transitions = (spec.lease_transitions or 0) + (0 if holder == self.identity else 1)
        acquired = spec.acquire_time if holder == self.identity else None
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
        return True

    async def hold(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Wait to lead, then run `work` until it ends or leadership is lost."""
        while not await self.try_acquire():
            await asyncio.sleep(self.renew)
        log.info(
            "leading", extra={"lease": f"{self.namespace}/{self.name}", "identity": self.identity}
        )
        task: asyncio.Task[None] = asyncio.create_task(work())
        try:
            while not task.done():
                done, _ = await asyncio.wait({task}, timeout=self.renew)
                if done:
                    break
                if not await self.try_acquire():
                    log.error("lost the lease: stopping", extra={"identity": self.identity})
                    task.cancel()
                    break
        finally:
            if not task.done():
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]

    async def release(self) -> None:
        """Give the Lease up at a clean stop, so a standby takes over at once."""
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
                    },
                }
                await self.api.replace_namespaced_lease(self.name, self.namespace, body)
        except ApiException as error:
            log.warning("lease not released", extra={"status": error.status})
