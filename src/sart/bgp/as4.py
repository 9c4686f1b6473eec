"""RFC 6793 on receive: the real AS path and aggregator of a route from a 2-octet speaker.

A 2-octet (OLD) speaker carries 4-octet ASNs as AS_TRANS in AS_PATH and AGGREGATOR, and the
real values in AS4_PATH and AS4_AGGREGATOR, which it passes on without understanding them.
The sending side of the same conversion is `sart.bgp.wire.attributes.to_two_octet`, which the
encoder applies by itself on 2-octet sessions.
"""

from __future__ import annotations

from collections.abc import Iterable

from sart.bgp.codes import AS_TRANS, AsPathSegmentType
from sart.bgp.messages import (
    Aggregator,
    As4Aggregator,
    As4Path,
    AsPath,
    AsPathSegment,
    PathAttribute,
    find,
)


def effective_aggregator(attributes: Iterable[PathAttribute]) -> Aggregator | None:
    """The aggregating AS and address (RFC 6793 4.2.3): AS4_AGGREGATOR replaces an AGGREGATOR
    that holds AS_TRANS; beside a real 2-octet AGGREGATOR it is ignored."""
    attributes = tuple(attributes)
    aggregator = find(attributes, Aggregator)
    as4 = find(attributes, As4Aggregator)
    if as4 is None or (aggregator is not None and aggregator.asn != AS_TRANS):
        return aggregator
    flags = aggregator.flags if aggregator is not None else as4.flags
    return Aggregator(as4.asn, as4.address, flags=flags)


def effective_as_path(attributes: Iterable[PathAttribute]) -> AsPath:
    """The AS path a route really took (RFC 6793 4.2.3): the leading part of AS_PATH that
    AS4_PATH does not cover, then AS4_PATH. AS4_PATH is ignored when it is longer than
    AS_PATH, or when a real 2-octet AGGREGATOR says the route was aggregated by an OLD
    speaker that dropped it."""
    attributes = tuple(attributes)
    path = find(attributes, AsPath)
    as4_path = find(attributes, As4Path)
    if path is None:
        path = AsPath()
    if as4_path is None:
        return path
    aggregator = find(attributes, Aggregator)
    has_as4_aggregator = find(attributes, As4Aggregator) is not None
    if has_as4_aggregator and aggregator is not None and aggregator.asn != AS_TRANS:
        return path
    keep = path.length - as4_path.length
    if keep < 0:
        return path
    return AsPath(_leading(path.segments, keep) + as4_path.segments, flags=path.flags)


def _leading(segments: tuple[AsPathSegment, ...], count: int) -> tuple[AsPathSegment, ...]:
    """The first `count` ASNs of a path, counted as path length counts them, with the
    confederation segments that lead or are adjacent to a taken segment (RFC 6793 4.2.3):
    since the walk stops at the first segment past `count`, every confederation segment it
    meets is one of those."""
    taken: list[AsPathSegment] = []
    for segment in segments:
        if segment.is_confederation:
            taken.append(segment)
            continue
        if count <= 0:
            break
        if segment.type == AsPathSegmentType.AS_SET:
            taken.append(segment)
            count -= 1
        else:
            taken.append(AsPathSegment(segment.type, segment.asns[:count]))
            count -= min(count, len(segment.asns))
    return tuple(taken)
