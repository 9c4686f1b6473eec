"""Kubernetes Events, aggregated as client-go's correlator does: the same object, reason and
message seen again updates the Event already written (count + 1, lastTimestamp) instead of
adding one more, so a Service that waits for an address does not flood its namespace.

Events are best effort: a failure to record one is logged, never a reason to write again."""

from __future__ import annotations

import datetime
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes_asyncio.client import CoreV1Api

from sart.k8s.runtime import MERGE
from sart.k8s.runtime.calls import call_raw
from sart.k8s.runtime.outcome import API_ERRORS, describe

log = logging.getLogger("sart.k8s")
REMEMBERED = 4096  # aggregation keys kept (least recently used forgotten first)


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
