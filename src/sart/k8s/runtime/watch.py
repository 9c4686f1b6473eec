"""List-then-watch, the one loop every controller here shares (kubernetes-asyncio).

`watch_objects` lists a resource, hands every object to `handle("SYNC", obj)` (and
`handle("SYNCED", None)` after the listing), then watches from the listing's resourceVersion;
when the apiserver says the version is too old (410) it lists again. Failures back off
exponentially (capped), so an apiserver that is starting or overloaded (429, 5xx) is waited
for, never hammered and never fatal.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from kubernetes_asyncio.client import CustomObjectsApi
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.watch import Watch

from sart.k8s.convert import InvalidObject, structure
from sart.k8s.models import GROUP, VERSION

log = logging.getLogger("sart.k8s")

Handler = Callable[[str, Any], None]
BACKOFF_MAX = 30.0
T = TypeVar("T")


def _version(listing: Any) -> str:
    if isinstance(listing, dict):
        return str(listing.get("metadata", {}).get("resourceVersion", ""))
    return str(listing.metadata.resource_version or "")


def _items(listing: Any) -> list[Any]:
    if isinstance(listing, dict):
        return list(listing.get("items", []))
    return list(listing.items or [])


async def retry(call: Callable[[], Awaitable[Any]], what: str) -> Any:
    """Call until it answers: the apiserver may still be starting (404 for a CRD not yet
    served, 429, 5xx, connection refused)."""
    delay = 0.1
    while True:
        try:
            return await call()
        except (ApiException, OSError) as error:
            status = getattr(error, "status", None)
            log.info("waiting for the apiserver", extra={"what": what, "status": status})
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)


async def watch_objects(
    list_call: Callable[..., Awaitable[Any]], handle: Handler, what: str, **kwargs: Any
) -> None:
    delay = 0.1
    while True:
        listing = await retry(lambda: list_call(**kwargs), what)
        for item in _items(listing):
            handle("SYNC", item)
        handle("SYNCED", None)
        version = _version(listing)
        try:
            async with Watch() as stream:
                async for event in stream.stream(
                    list_call, resource_version=version, timeout_seconds=300, **kwargs
                ):
                    kind = event["type"]
                    if kind == "ERROR":
                        break  # usually 410 Gone: list again
                    if kind != "BOOKMARK":
                        handle(kind, event["object"])
            delay = 0.1
        except ApiException as error:
            if error.status != 410:
                log.warning("watch failed", extra={"what": what, "status": error.status})
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX)
        except (TimeoutError, OSError) as error:
            log.warning("watch broke", extra={"what": what, "error": str(error)})
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)


async def watch_kind(custom: CustomObjectsApi, plural: str, handle: Handler, **kwargs: Any) -> None:
    """`watch_objects` for one of our kinds, cluster-wide (namespaced kinds: every namespace)."""
    await watch_objects(
        custom.list_cluster_custom_object,
        handle,
        plural,
        group=GROUP,
        version=VERSION,
        plural=plural,
        **kwargs,
    )


def read_object(kind: type[T], obj: dict[str, Any]) -> T | None:
    """An object from the apiserver as its model (sart.k8s.models), or None, logged, when it
    does not fit (the CRD schema keeps that rare)."""
    try:
        return structure(kind, obj)
    except InvalidObject as error:
        log.warning("object ignored", extra={"error": str(error), "problems": error.messages})
        return None
