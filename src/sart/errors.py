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


class IpamError(SartError):
    """Address allocation failed."""


class ConfigError(SartError):
    """A configuration file, flag or resource is invalid."""
