"""The original sart's finalizers (and the one earlier versions of sart-controller wrote) are
released only when the object is being deleted."""

from __future__ import annotations

from sart.k8s.reconcile.legacy import released


def test_only_the_originals_and_only_when_deleting() -> None:
    mixed = ["service.sart.terassyi.net/finalizer", "example.com/keep"]
    assert released(mixed, deleting=False) is None
    assert released(mixed, deleting=True) == ("example.com/keep",)
    assert released(["sart.terassyi.net/finalizer"], deleting=True) == ()  # our earlier one
    assert released(["clusterbgp.sart.terassyi.net/finalizer"], deleting=True) == ()
