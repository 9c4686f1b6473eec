"""The one watch layer every daemon here shares (kubernetes-asyncio), as client-go's reflector
does it:

- LIST, then WATCH from the listing's resourceVersion with bookmarks, and when a watch ends
  (the apiserver closes it every few minutes, or the connection breaks) WATCH again from the
  last resourceVersion seen, without listing again;
- LIST again only when the apiserver says that version is too old (410 Gone); a relist
  *replaces* the store: what vanished while we were not watching is handed on as DELETED;
- every transport failure, 429 and 5xx is temporary: jittered exponential backoff, never
  fatal; 401 and 403 are logged as errors (the RBAC is wrong), and retried slowly in case it is
  fixed.

The handler sees ("ADDED" | "MODIFIED" | "DELETED", object) and ("SYNCED", None) after each
listing has been applied. Objects are kubernetes-asyncio models, or with `raw=True` (and always
for our kinds) the JSON the apiserver sent, as dicts: building the models (and parsing every
timestamp in them with dateutil) took most of the controller's CPU time. The store (`Store`) and
the decisions are plain code; only `watch_objects` does I/O.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, NamedTuple, TypeVar

import aiohttp
import attrs
from kubernetes_asyncio.client import CustomObjectsApi
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.watch import Watch

from sart.k8s.convert import InvalidObject, structure
from sart.k8s.models import GROUP, VERSION
from sart.k8s.runtime.calls import call_raw
from sart.k8s.runtime.outcome import API_ERRORS, Backoff, Outcome, classify, is_authorization

log = logging.getLogger("sart.k8s")

Handler = Callable[[str, Any], None]
WATCH_SECONDS = 300  # the apiserver ends each watch after this; we resume from where it was
T = TypeVar("T")


class Meta(NamedTuple):
    """The metadata the runtime reads of any object it watches."""

    namespace: str
    name: str
    resource_version: str
    finalizers: tuple[str, ...]
    deleting: bool


def object_meta(obj: Any) -> Meta:
    """The metadata of a dict (our kinds) or of a kubernetes-asyncio model (core kinds)."""
    if isinstance(obj, dict):
        meta = obj.get("metadata") or {}
        return Meta(
            meta.get("namespace") or "",
            meta.get("name") or "",
            meta.get("resourceVersion", ""),
            tuple(meta.get("finalizers") or ()),
            bool(meta.get("deletionTimestamp")),
        )
    meta = obj.metadata
    return Meta(
        meta.namespace or "",
        meta.name or "",
        meta.resource_version or "",
        tuple(meta.finalizers or ()),
        meta.deletion_timestamp is not None,
    )


def object_key(obj: Any) -> str:
    """namespace/name, or name for cluster-scoped objects."""
    meta = object_meta(obj)
    return f"{meta.namespace}/{meta.name}" if meta.namespace else meta.name


def _version(listing: Any) -> str:
    if isinstance(listing, dict):
        return str((listing.get("metadata") or {}).get("resourceVersion", ""))
    return str(listing.metadata.resource_version or "")


def _items(listing: Any) -> list[Any]:
    if isinstance(listing, dict):
        return list(listing.get("items") or [])
    return list(listing.items or [])


class Store:
    """The objects of one kind as last seen, by key. Plain code: `replace` (a listing) and
    `apply` (a watch event) return the events to hand on."""

    def __init__(self) -> None:
        self.objects: dict[str, Any] = {}

    def replace(self, items: Iterable[Any]) -> list[tuple[str, Any]]:
        """Make the store exactly these: ADDED for new keys, MODIFIED for changed ones, DELETED
        (with the last object seen) for keys the listing no longer has."""
        fresh = {object_key(item): item for item in items}
        events: list[tuple[str, Any]] = [
            ("DELETED", old) for key, old in self.objects.items() if key not in fresh
        ]
        for key, item in fresh.items():
            old = self.objects.get(key)
            if old is None:
                events.append(("ADDED", item))
            elif object_meta(old).resource_version != object_meta(item).resource_version:
                events.append(("MODIFIED", item))
        self.objects = fresh
        return events

    def apply(self, kind: str, obj: Any) -> list[tuple[str, Any]]:
        key = object_key(obj)
        if kind == "DELETED":
            self.objects.pop(key, None)
            return [("DELETED", obj)]
        known = key in self.objects
        self.objects[key] = obj
        return [("MODIFIED" if known else "ADDED", obj)]


@attrs.define
class WatchStats:
    """What a watch has done, for tests to wait on and for operators to read."""

    lists: int = 0  # LISTs answered (the first, then one per 410 Gone)
    watches: int = 0  # WATCH requests opened
    events: int = 0  # events handed on (deletions found by a relist included)
    failures: int = 0  # failed LISTs and broken WATCHes


class _RawWatch(Watch):
    """A kubernetes-asyncio Watch that hands on each event's object as the apiserver sent it."""

    def get_return_type(self, func: object) -> str:
        return ""  # no model to build


class Gone(Exception):
    """The resourceVersion we watch from is too old (410): list again."""


async def _list(
    list_call: Callable[..., Awaitable[Any]], what: str, backoff: Backoff, **kwargs: Any
) -> Any:
    while True:
        try:
            listing = await list_call(**kwargs)
        except API_ERRORS as error:
            await _wait_out(error, what, "list", backoff)
            continue
        backoff.reset()
        return listing


async def _wait_out(error: BaseException, what: str, doing: str, backoff: Backoff) -> None:
    """Back off after a failed LIST or WATCH; every outcome but a bug of ours is retried."""
    outcome = classify(error, gone=Outcome.TEMPORARY)  # 404: the CRD is not served yet
    delay = backoff.next()
    if is_authorization(error):
        log.error(
            f"not allowed to {doing} {what}: check the RBAC",
            extra={"what": what, "status": getattr(error, "status", None), "retry_in": delay},
        )
    else:
        log.warning(
            f"{doing} failed, retrying",
            extra={"what": what, "outcome": outcome.value, "error": _text(error),
                   "retry_in": round(delay, 2)},
        )  # fmt: skip
    await asyncio.sleep(delay)


def _text(error: BaseException) -> str:
    if isinstance(error, ApiException):
        return f"{error.status} {error.reason}"
    return f"{type(error).__name__}: {error}"


async def watch_objects(
    list_call: Callable[..., Awaitable[Any]],
    handle: Handler,
    what: str,
    *,
    stats: WatchStats | None = None,
    raw: bool = False,
    **kwargs: Any,
) -> None:
    """List, then watch `list_call`'s objects forever, handing each change to `handle` (as
    dicts with `raw`)."""
    stats = stats if stats is not None else WatchStats()
    store = Store()
    backoff = Backoff(base=0.1, cap=30.0)

    def hand_on(events: Iterable[tuple[str, Any]]) -> None:
        for kind, obj in events:
            stats.events += 1
            handle(kind, obj)

    since = ""  # the resourceVersion to watch from; empty: list first
    while True:
        if not since:
            lister = functools.partial(call_raw, list_call) if raw else list_call
            listing = await _list(lister, what, backoff, **kwargs)
            stats.lists += 1
            hand_on(store.replace(_items(listing)))
            handle("SYNCED", None)
            since = _version(listing)
        try:
            stats.watches += 1
            since = await _watch(list_call, store, hand_on, since, raw, **kwargs)
            backoff.reset()
        except Gone:
            log.info("watch expired, listing again", extra={"what": what})
            since = ""
        except API_ERRORS as error:
            stats.failures += 1
            if isinstance(error, ApiException) and error.status == 410:
                since = ""
                continue
            await _wait_out(error, what, "watch", backoff)


async def _watch(
    list_call: Callable[..., Awaitable[Any]],
    store: Store,
    hand_on: Callable[[Iterable[tuple[str, Any]]], None],
    since: str,
    raw: bool,
    **kwargs: Any,
) -> str:
    """One WATCH from `since` until the apiserver ends it; returns the last version seen."""
    # A read that stays silent for longer than the apiserver's own timeout means a dead
    # connection (no FIN ever came): give up on it rather than wait forever.
    timeout = aiohttp.ClientTimeout(sock_connect=10, sock_read=WATCH_SECONDS + 30)
    async with _RawWatch() if raw else Watch() as stream:
        async for event in stream.stream(
            list_call,
            resource_version=since,
            allow_watch_bookmarks=True,
            timeout_seconds=WATCH_SECONDS,
            _request_timeout=timeout,
            **kwargs,
        ):
            kind = event["type"]
            if kind == "BOOKMARK":
                since = object_meta(event["raw_object"]).resource_version or since
                continue
            if kind == "ERROR":  # kubernetes-asyncio raises for these; kept for safety
                raise Gone
            obj = event["object"]
            since = object_meta(obj).resource_version or since
            hand_on(store.apply(kind, obj))
    return since


async def watch_kind(
    custom: CustomObjectsApi,
    plural: str,
    handle: Handler,
    *,
    stats: WatchStats | None = None,
    **kwargs: Any,
) -> None:
    """`watch_objects` for one of our kinds, cluster-wide (namespaced kinds: every namespace)."""
    await watch_objects(custom.list_cluster_custom_object, handle, plural, stats=stats,
                        raw=True, **_kind(plural), **kwargs)  # fmt: skip


def _kind(plural: str) -> dict[str, str]:
    """The options that make list_cluster_custom_object list one of our kinds."""
    return {"group": GROUP, "version": VERSION, "plural": plural}


@attrs.define
class _Shared:
    list_call: Callable[..., Awaitable[Any]]
    what: str
    raw: bool
    options: dict[str, Any]
    handlers: list[Handler] = attrs.field(factory=list)

    def hand_on(self, kind: str, obj: Any) -> None:
        for handle in self.handlers:
            handle(kind, obj)


class SharedWatches:
    """One LIST and WATCH per kind (and options) for a whole process, however many of its parts
    handle the events, as client-go's shared informers: each event is sent by the apiserver,
    read and decoded once. Parts `add` their handlers, then the owner runs `run`; every handler
    sees every event (and SYNCED), in the order they were added, and must not change the
    object."""

    def __init__(self) -> None:
        self._watches: dict[str, _Shared] = {}

    def add(
        self,
        list_call: Callable[..., Awaitable[Any]],
        handle: Handler,
        what: str,
        *,
        raw: bool = False,
        **kwargs: Any,
    ) -> None:
        """`watch_objects(list_call, handle, what, raw=raw, **kwargs)`, shared with every
        other handler added with the same `what`, `raw` and options."""
        key = repr((what, raw, sorted(kwargs.items())))
        shared = self._watches.setdefault(key, _Shared(list_call, what, raw, kwargs))
        shared.handlers.append(handle)

    def add_kind(
        self, custom: CustomObjectsApi, plural: str, handle: Handler, **kwargs: Any
    ) -> None:
        """`watch_kind(custom, plural, handle, **kwargs)`, shared."""
        self.add(custom.list_cluster_custom_object, handle, plural, raw=True,
                 **_kind(plural), **kwargs)  # fmt: skip

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            for shared in self._watches.values():
                tasks.create_task(
                    watch_objects(
                        shared.list_call,
                        shared.hand_on,
                        shared.what,
                        raw=shared.raw,
                        **shared.options,
                    )
                )


def read_object(kind: type[T], obj: dict[str, Any]) -> T | None:
    """An object from the apiserver as its model (sart.k8s.models), or None, logged, when it
    does not fit (the CRD schema keeps that rare)."""
    try:
        return structure(kind, obj)
    except InvalidObject as error:
        log.warning("object ignored", extra={"error": str(error), "problems": error.messages})
        return None
