"""The one error model of the runtime (as kopf has it): every failure of a call to the
apiserver, in the controller, the block controller, the agent and the watch layer, is one of

- DONE: nothing is left to do (the object is gone: the watch will say so);
- REDO: the object changed under us (409): decide again at once on fresh state;
- TEMPORARY: the apiserver or the network (429, 5xx, a refused or broken connection, a
  timeout): back off, jittered and exponential, and try again;
- PERMANENT: the request itself is refused (400, 401, 403, 422...): say so (a Warning Event, an
  error log) and do not try again until the object changes, so nothing loops hot.

`classify` makes that call for an exception; `Backoff` computes the delays (pure: the random
source is passed in, so tests pin it).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
from collections.abc import Awaitable, Callable

import aiohttp
import attrs
from kubernetes_asyncio.client.exceptions import ApiException

log = logging.getLogger("sart.k8s")


class Outcome(enum.Enum):
    DONE = "done"
    REDO = "redo"
    TEMPORARY = "temporary"
    PERMANENT = "permanent"


class LeadershipLost(Exception):
    """This process no longer holds the leader Lease: whatever it was doing must stop."""


TRANSPORT_ERRORS = (aiohttp.ClientError, OSError, TimeoutError)
API_ERRORS = (ApiException, *TRANSPORT_ERRORS)  # what a call to the apiserver may raise


def classify(error: BaseException, *, gone: Outcome = Outcome.DONE) -> Outcome:
    """What a failed call means. `gone` is what a 404 means to the caller: DONE for a write to
    an object deleted meanwhile, TEMPORARY for a kind the apiserver does not serve yet."""
    if isinstance(error, ApiException):
        status = error.status or 0
        if status == 404:
            return gone
        if status == 409:
            return Outcome.REDO
        if status == 429 or status >= 500 or status == 0:
            return Outcome.TEMPORARY
        return Outcome.PERMANENT
    if isinstance(error, TRANSPORT_ERRORS):
        return Outcome.TEMPORARY
    raise error  # a bug of ours, not an answer of the apiserver: let it crash loudly


def describe(error: BaseException) -> str:
    """A short label for logs and metrics: the HTTP status, or the transport error's type."""
    if isinstance(error, ApiException):
        return str(error.status)
    return type(error).__name__


def is_authorization(error: BaseException) -> bool:
    return isinstance(error, ApiException) and error.status in (401, 403)


@attrs.define
class Backoff:
    """Exponential delays with jitter: base, 2 x base, 4 x base... up to cap, each drawn
    uniformly from its upper half so that many clients failing together spread out."""

    base: float = 0.1
    cap: float = 30.0
    rng: random.Random = attrs.field(factory=random.Random)
    failures: int = 0

    def next(self) -> float:
        ceiling = min(self.cap, self.base * 2 ** min(self.failures, 62))
        self.failures += 1
        return float(ceiling * self.rng.uniform(0.5, 1.0))

    def reset(self) -> None:
        self.failures = 0


@attrs.define
class KeyedBackoff:
    """One Backoff per key (a Service, a BlockRequest): one failing object never slows another."""

    base: float = 0.5
    cap: float = 60.0
    rng: random.Random = attrs.field(factory=random.Random)
    backoffs: dict[str, Backoff] = attrs.field(factory=dict)

    def next(self, key: str) -> float:
        backoff = self.backoffs.setdefault(key, Backoff(self.base, self.cap, self.rng))
        return backoff.next()

    def failures(self, key: str) -> int:
        backoff = self.backoffs.get(key)
        return backoff.failures if backoff is not None else 0

    def reset(self, key: str) -> None:
        self.backoffs.pop(key, None)


class RetryTimes:
    """When each failed key (a request, an object) may be tried again, with its own backoff;
    `wait` sleeps until the earliest of those or until `wake` is set, whichever comes first."""

    def __init__(self, backoff: KeyedBackoff | None = None) -> None:
        self.backoff = backoff or KeyedBackoff()
        self.not_before: dict[str, float] = {}  # key -> loop time it may be tried again

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    def due(self, key: str) -> bool:
        return self.not_before.get(key, 0.0) <= self._now()

    def failed(self, key: str, at_least: float = 0.0) -> float:
        """Schedule the key's next try after its backoff (or `at_least`); returns the delay."""
        delay = max(self.backoff.next(key), at_least)
        self.not_before[key] = self._now() + delay
        return delay

    def forget(self, key: str) -> None:
        """It worked, or the key is gone: no more waiting, and its backoff starts over."""
        self.not_before.pop(key, None)
        self.backoff.reset(key)

    async def wait(self, wake: asyncio.Event) -> None:
        earliest = min(self.not_before.values(), default=None)
        timeout = None if earliest is None else max(earliest - self._now(), 0.0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout)
        wake.clear()


async def sync_passes(
    wake: asyncio.Event,
    ready: Callable[[], bool],
    sync: Callable[[], Awaitable[float | None]],
    what: str,
    *,
    backoff: Backoff,
    refused_retry: float,
) -> None:
    """Run `sync`, one level-based pass over what the watches show, whenever `wake` is set and
    `ready()` (everything it decides from is listed), and again after the delay it returns
    (None: only when woken). A pass that fails is run again as the error model says: at once
    after a conflict or a 404 (changed or gone meanwhile), after the backoff when temporary,
    after `refused_retry` at least when refused (logged as an error)."""
    retry: float | None = None
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), retry)
        wake.clear()
        if not ready():
            retry = None
            continue  # decide only on a full view
        try:
            retry = await sync()
        except API_ERRORS as error:
            outcome = classify(error, gone=Outcome.REDO)
            retry = 0.0 if outcome is Outcome.REDO else backoff.next()
            if outcome is Outcome.PERMANENT:
                retry = max(retry, refused_retry)
                log.error(f"{what} write refused", extra={"error": describe(error)})
            elif outcome is Outcome.TEMPORARY:
                log.warning(
                    f"{what} not in sync, retrying",
                    extra={"error": describe(error), "retry_in": round(retry, 2)},
                )
            continue
        backoff.reset()
