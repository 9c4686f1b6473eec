"""What a session negotiated, as far as the wire format depends on it."""

from __future__ import annotations

import attrs

from sart.bgp.codes import MAX_EXTENDED_MESSAGE_LENGTH, MAX_MESSAGE_LENGTH
from sart.bgp.messages import Family


@attrs.frozen(kw_only=True)
class SessionContext:
    """The negotiated properties the codec needs, for one direction of one session.

    The defaults describe a plain RFC 4271 session: 2-octet ASNs, no add-path, IPv4 next hops
    for IPv4 routes, 4096-octet messages. Add-path is negotiated per direction (RFC 7911 4),
    so a session has one context for what it receives and one for what it sends; they differ
    only in `add_path`.
    """

    four_octet_as: bool = False  # RFC 6793
    add_path: frozenset[Family] = frozenset()  # NLRI of these families carry path ids (RFC 7911)
    extended_next_hop: frozenset[Family] = frozenset()  # may carry an IPv6 next hop (RFC 8950)
    extended_message: bool = False  # RFC 8654

    @property
    def max_message_length(self) -> int:
        return MAX_EXTENDED_MESSAGE_LENGTH if self.extended_message else MAX_MESSAGE_LENGTH


DEFAULT_CONTEXT = SessionContext()
