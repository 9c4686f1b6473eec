"""The maximum number of prefixes a peer may send (RFC 4271 6, RFC 4486), pure.

A neighbor's `PrefixLimit` says how many paths its Adj-RIB-In may hold, when to warn and how
long to stay down after the limit was passed. `level` judges a count; `cease_data` is the
data of the Cease / Maximum Number of Prefixes Reached NOTIFICATION. `Session` applies them
(`Session.prefixes_received`) and the state machine holds the session down (AutomaticStop
with an IdleHoldTimer).
"""

from __future__ import annotations

import enum
import struct

import attrs

from sart.bgp.messages import MpReachNlri, Update

DEFAULT_WARNING_PERCENT = 75


def _positive(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not 1 <= value <= 2**32 - 1:
        raise ValueError(f"{attribute.name} {value} is outside 1..{2**32 - 1}")


def _percent(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not 1 <= value <= 100:
        raise ValueError(f"{attribute.name} {value} is outside 1..100")


def _seconds(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} {value} is negative")


@attrs.frozen(kw_only=True)
class PrefixLimit:
    """At most `limit` paths from the peer (every family together); a warning once the count
    reaches `warning_percent` of it; after the limit was passed the session stays down
    `restart_time` seconds, or until an operator starts it again when 0."""

    limit: int = attrs.field(validator=_positive)
    warning_percent: int = attrs.field(default=DEFAULT_WARNING_PERCENT, validator=_percent)
    restart_time: float = attrs.field(default=0.0, validator=_seconds)

    @property
    def warning_threshold(self) -> int:
        """The count that warns: warning_percent of the limit, rounded up, at least 1."""
        return max(1, -(-self.limit * self.warning_percent // 100))


class Level(enum.Enum):
    NORMAL = "normal"
    WARNING = "warning"  # at or above the warning threshold, within the limit
    EXCEEDED = "exceeded"  # more than the limit


def level(limit: PrefixLimit, count: int) -> Level:
    if count > limit.limit:
        return Level.EXCEEDED
    if count >= limit.warning_threshold:
        return Level.WARNING
    return Level.NORMAL


def cease_data(afi: int, safi: int, limit: int) -> bytes:
    """RFC 4486 4: "the Data field ... AFI (2 octets), SAFI (1 octet), and the prefix upper
    bound (4 octets)"."""
    return struct.pack(">HBI", afi, safi, min(limit, 2**32 - 1))


def announced_family(update: Update) -> tuple[int, int]:
    """(AFI, SAFI) of the routes an UPDATE announces: its last MP_REACH_NLRI's, else IPv4
    unicast (the NLRI field)."""
    for attribute in reversed(update.attributes):
        if isinstance(attribute, MpReachNlri) and (attribute.nlri or not update.nlri):
            return attribute.afi, attribute.safi
    return 1, 1
