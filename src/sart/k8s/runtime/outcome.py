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

import enum
import random

import aiohttp
import attrs
from kubernetes_asyncio.client.exceptions import ApiException


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
