"""Switching from the original sart: objects it left behind must never hang a delete.

The original put finalizers of its own on Services, EndpointSlices, Nodes and its custom
resources. With the original controller gone, nothing would remove them and every delete of
such an object would wait forever. sart releases them, and only when the object is being
deleted (so rolling back to the original still finds its finalizers on live objects). sart's
own finalizer (`sart.terassyi.net/finalizer`, on Services it allocated for) is not touched
here: the LoadBalancer controller releases it after freeing the addresses."""

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


def released(finalizers: Sequence[str], deleting: bool) -> tuple[str, ...] | None:
    """The finalizers to keep once the original's are released, or None when there is
    nothing to do (not being deleted, or none of the original's)."""
    if not deleting or not ORIGINAL_FINALIZERS.intersection(finalizers):
        return None
    return tuple(f for f in finalizers if f not in ORIGINAL_FINALIZERS)
