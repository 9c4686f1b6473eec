"""Kubernetes Events, aggregated as client-go's correlator does: the same object, reason and
message seen again updates the Event already written (count + 1, lastTimestamp) instead of
adding one more, so a Service that waits for an address does not flood its namespace.

Events are best effort: a failure to record one is logged, never a reason to write again.
`EventLane` writes them after the state they tell of, as client-go's asynchronous recorder
does."""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes_asyncio.client import CoreV1Api

from sart.k8s.runtime import MERGE
from sart.k8s.runtime.calls import call_raw
from sart.k8s.runtime.outcome import API_ERRORS, describe

log = logging.getLogger("sart.k8s")
REMEMBERED = 4096  # aggregation keys kept (least recently used forgotten first)
HOLD = 30.0  # seconds an Event may wait for the controller's state writes to end
POLL = 0.05  # seconds between looks at whether they have
QUEUED = 10000  # Events waiting at most: past that the oldest are dropped


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


class EventRecorder:
    def __init__(
        self, core: CoreV1Api, component: str, *, fence: Callable[[], None] = lambda: None
    ) -> None:
        self.core, self.component, self.fence = core, component, fence
        # (uid or namespace/name, reason, message) -> (namespace, Event name, count)
        self.seen: OrderedDict[tuple[str, str, str], tuple[str, str, int]] = OrderedDict()
        self.written = 0  # Events created or updated (for tests and metrics)

    async def record(
        self, involved: Mapping[str, Any], type_: str, reason: str, message: str
    ) -> None:
        """Record an Event about `involved` (apiVersion, kind, name, namespace?, uid?)."""
        namespace = involved.get("namespace") or "default"  # cluster-scoped: default
        identity = involved.get("uid") or f"{namespace}/{involved['name']}"
        key = (identity, reason, message)
        now = _now()
        known = self.seen.get(key)
        self.fence()
        try:
            if known is not None:
                self.seen.move_to_end(key)
                if await self._bump(key, known, now):
                    return
            body: Any = {
                "metadata": {"generateName": f"{involved['name']}."},
                "involvedObject": dict(involved),
                "type": type_,
                "reason": reason,
                "message": message,
                "source": {"component": self.component},
                "reportingComponent": self.component,
                "firstTimestamp": now,
                "lastTimestamp": now,
                "count": 1,
            }
            made = await call_raw(self.core.create_namespaced_event, namespace, body)
            self.written += 1
            self.seen[key] = (namespace, made["metadata"]["name"], 1)
            while len(self.seen) > REMEMBERED:
                self.seen.popitem(last=False)
        except API_ERRORS as error:
            # A namespace being deleted refuses Events: best effort.
            log.warning("event not recorded", extra={"reason": reason, "error": describe(error)})

    async def _bump(self, key: tuple[str, str, str], known: tuple[str, str, int], now: str) -> bool:
        """Count the Event once more; False when it is gone (expired): write a new one."""
        namespace, name, count = known
        body = {"count": count + 1, "lastTimestamp": now}
        try:
            await call_raw(self.core.patch_namespaced_event, name, namespace, body, **MERGE)
        except API_ERRORS as error:
            if getattr(error, "status", None) == 404:
                return False
            raise
        self.written += 1
        self.seen[key] = (namespace, name, count + 1)
        return True


class EventLane:
    """Events posted now and written once the owner's state writes are done.

    A burst of new Services is a burst of apiserver writes: each Service's status, its
    BGPAdvertisement and its Event, beside the creates themselves. The Events are the only
    part nobody waits for, so they wait: while `busy()` says state writes are queued or in
    flight, for at most HOLD seconds after being posted, then are written one at a time.
    Best effort, as every Event: past QUEUED waiting, the oldest are dropped (and counted)."""

    def __init__(
        self, recorder: EventRecorder, busy: Callable[[], bool], *, hold: float = HOLD
    ) -> None:
        self.recorder, self.busy, self.hold = recorder, busy, hold
        self._waiting: deque[tuple[float, Mapping[str, Any], str, str, str]] = deque()
        self._posted = asyncio.Event()
        self._writing = False
        self.dropped = 0

    def post(self, involved: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        if len(self._waiting) >= QUEUED:
            self._waiting.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("events dropped: too many waiting", extra={"dropped": self.dropped})
        self._waiting.append((time.monotonic(), involved, type_, reason, message))
        self._posted.set()

    @property
    def waiting(self) -> int:
        """Events posted and not written yet (the one being written included)."""
        return len(self._waiting) + self._writing

    async def run(self) -> None:
        while True:
            if not self._waiting:
                self._posted.clear()
                await self._posted.wait()
                continue
            posted, involved, type_, reason, message = self._waiting[0]
            while self.busy() and time.monotonic() < posted + self.hold:
                await asyncio.sleep(POLL)
            self._waiting.popleft()
            self._writing = True
            try:
                await self.recorder.record(involved, type_, reason, message)
            finally:
                self._writing = False
