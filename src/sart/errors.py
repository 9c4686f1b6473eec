"""The one exception tree of sart: every error the library raises on purpose is a SartError.

Core code raises only these (plus ValueError/TypeError from attrs validators); the adapters
translate them into NOTIFICATIONs, gRPC statuses and CRD conditions.
"""

from __future__ import annotations


class SartError(Exception):
    """Root of every error sart raises on purpose."""


class BgpError(SartError):
    """Something about BGP went wrong."""


class BgpUsageError(BgpError):
    """The caller asked for something the protocol cannot express (an ASN too large for its
    field, an UPDATE larger than the negotiated maximum, a message sent in the wrong state)."""


class MrtDecodeError(BgpError):
    """An MRT file (RFC 6396) that does not hold what its fields say, at `offset`."""

    def __init__(self, reason: str, offset: int) -> None:
        super().__init__(f"{reason} (at octet {offset})")
        self.offset = offset


class IpamError(SartError):
    """Address allocation failed. The allocator is unchanged after any of these."""


class PoolExhausted(IpamError):
    """No free address (or block) is left."""


class AddressInUse(IpamError):
    """The address asked for is already allocated or reserved."""


class NotAllocated(IpamError):
    """The address to release is not allocated (released twice, or never handed out)."""


class OutOfRange(IpamError):
    """The address is not in the pool, or not of its family."""


class AllocationConflict(IpamError):
    """Observed allocations claim the same address twice (found when rebuilding)."""


class ConfigError(SartError):
    """A configuration file, flag or resource is invalid."""
