"""Switching from the original sart: objects it left behind must never hang a delete.

The original put finalizers of its own on Services, EndpointSlices, Nodes and its custom
resources. With the original controller gone, nothing would remove them and every delete of
such an object would wait forever. sart releases them, and only when the object is being
deleted (so rolling back to the original still finds its finalizers on live objects). The same
goes for the finalizer earlier versions of sart-controller put on the Services they allocated
for (`sart.terassyi.net/finalizer`): it is no longer written (the Services' status is the truth
about what is allocated), and a Service that still carries it is released when deleted."""

from __future__ import annotations

from collections.abc import Sequence

ORIGINAL_FINALIZERS = frozenset(
    {
        "service.sart.terassyi.net/finalizer",
        "endpointslice.sart.terassyi.net/finalizer",
        "endpointsliece.sart.terassyi.net/finalizer",  # sic: one version of the original
        "node.sart.terassyi.net/finalizer",
        "addresspool.sart.terassyi.net/finalizer",
        "addressblock.sart.terassyi.net/finalizer",
        "blockrequest.sart.terassyi.net/finalizer",
        "clusterbgp.sart.terassyi.net/finalizer",  # ClusterBGP and NodeBGP
        "bgppeer.sart.terassyi.net/finalizer",
        "bgpadvertisement.sart.terassyi.net/finalizer",
    }
)


EARLIER_FINALIZER = "sart.terassyi.net/finalizer"
"""On Services that earlier versions of sart-controller allocated for; no longer written."""
RELEASED = ORIGINAL_FINALIZERS | {EARLIER_FINALIZER}


def released(finalizers: Sequence[str], deleting: bool) -> tuple[str, ...] | None:
    """The finalizers to keep once the original's (and our earlier one) are released, or None
    when there is nothing to do (not being deleted, or none of those)."""
    if not deleting or not RELEASED.intersection(finalizers):
        return None
    return tuple(f for f in finalizers if f not in RELEASED)
