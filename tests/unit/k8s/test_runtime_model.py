"""The runtime's plain parts: the watch store (a relist replaces it and yields deletions), the
error model (which failures are done, redo, temporary or permanent) and the backoff."""

from __future__ import annotations

import random
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio.client.exceptions import ApiException

from sart.k8s.runtime.outcome import Backoff, KeyedBackoff, Outcome, classify
from sart.k8s.runtime.watch import Store, object_key


def obj(name: str, version: str, namespace: str | None = "ns") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "resourceVersion": version}
    if namespace:
        meta["namespace"] = namespace
    return {"metadata": meta}


def test_a_relist_replaces_the_store_and_yields_what_vanished() -> None:
    store = Store()
    assert store.replace([obj("a", "1"), obj("b", "1"), obj("c", "1")]) == [
        ("ADDED", obj("a", "1")), ("ADDED", obj("b", "1")), ("ADDED", obj("c", "1")),
    ]  # fmt: skip
    # b deleted and c changed while the watch was down, d created: a is untouched
    events = store.replace([obj("a", "1"), obj("c", "2"), obj("d", "3")])
    assert events == [
        ("DELETED", obj("b", "1")), ("MODIFIED", obj("c", "2")), ("ADDED", obj("d", "3")),
    ]  # fmt: skip
    assert sorted(store.objects) == ["ns/a", "ns/c", "ns/d"]
    assert store.replace([]) == [("DELETED", o) for o in (obj("a", "1"), obj("c", "2"),
                                                          obj("d", "3"))]  # fmt: skip
    assert store.objects == {}


def test_watch_events_update_the_store() -> None:
    store = Store()
    assert store.apply("ADDED", obj("a", "1")) == [("ADDED", obj("a", "1"))]
    # an ADDED for a key we hold already (a resumed watch) is a modification to the handlers
    assert store.apply("ADDED", obj("a", "2")) == [("MODIFIED", obj("a", "2"))]
    assert store.apply("DELETED", obj("a", "3")) == [("DELETED", obj("a", "3"))]
    assert store.objects == {}
    assert store.apply("DELETED", obj("x", "4")) == [("DELETED", obj("x", "4"))]


def test_keys_of_namespaced_and_cluster_objects() -> None:
    assert object_key(obj("a", "1")) == "ns/a"
    assert object_key(obj("pool", "1", namespace=None)) == "pool"


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (ApiException(status=404), Outcome.DONE),
        (ApiException(status=409), Outcome.REDO),
        (ApiException(status=429), Outcome.TEMPORARY),
        (ApiException(status=500), Outcome.TEMPORARY),
        (ApiException(status=503), Outcome.TEMPORARY),
        (ApiException(status=400), Outcome.PERMANENT),
        (ApiException(status=401), Outcome.PERMANENT),
        (ApiException(status=403), Outcome.PERMANENT),
        (ApiException(status=422), Outcome.PERMANENT),
        (aiohttp.ServerDisconnectedError(), Outcome.TEMPORARY),
        (aiohttp.ClientPayloadError("cut"), Outcome.TEMPORARY),
        (ConnectionRefusedError(), Outcome.TEMPORARY),
        (TimeoutError(), Outcome.TEMPORARY),
    ],
)
def test_every_failure_has_one_outcome(error: BaseException, outcome: Outcome) -> None:
    assert classify(error) is outcome


def test_a_404_means_what_the_caller_says() -> None:
    assert classify(ApiException(status=404), gone=Outcome.TEMPORARY) is Outcome.TEMPORARY


def test_a_bug_of_ours_is_not_swallowed() -> None:
    with pytest.raises(KeyError):
        classify(KeyError("oops"))


def test_backoff_doubles_with_jitter_up_to_its_cap_and_resets() -> None:
    backoff = Backoff(base=0.1, cap=2.0, rng=random.Random(7))
    delays = [backoff.next() for _ in range(10)]
    ceilings = [min(2.0, 0.1 * 2**n) for n in range(10)]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert len(set(delays)) == 10  # jittered: clients failing together spread out
    backoff.reset()
    assert backoff.next() <= 0.1


def test_keyed_backoff_keeps_one_object_from_slowing_another() -> None:
    backoffs = KeyedBackoff(base=1.0, cap=60.0, rng=random.Random(1))
    for _ in range(5):
        backoffs.next("slow")
    assert backoffs.failures("slow") == 5 and backoffs.failures("fast") == 0
    assert backoffs.next("fast") <= 1.0
    backoffs.reset("slow")
    assert backoffs.failures("slow") == 0
