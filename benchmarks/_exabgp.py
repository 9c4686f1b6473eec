"""ExaBGP's own decoder, driven outside its daemon, to benchmark ours against on identical bytes.

Benchmark-only: sart never imports this, and ExaBGP comes from the ``bench`` dependency group.

    negotiated = make_negotiated(four_octet_as=True)
    prefixes = decode_all(messages, negotiated)

Two things about ExaBGP's parser matter when reading the timings:

* ``Negotiated.cached_attributes``: each session remembers the last path attribute section
  it parsed (when it held no MP_REACH/MP_UNREACH) and hands the same ``Attributes`` object
  back when the next UPDATE's attribute bytes are identical. A real session has it, so it
  stays on; but UPDATEs repeating their predecessor's attributes skip attribute parsing
  entirely, and the cache outlives a ``decode_all`` call. Use a fresh ``make_negotiated()``
  per run for a cold start. It is the only cache at work: the process-wide per-attribute
  one (``Attribute.cache``) is not consulted when parsing off the wire in 5.0.15.
* The one step ExaBGP defers: an INET NLRI's ``CIDR`` keeps the packed prefix and renders
  the address on the first ``top()``, where every other address (next hops, aggregator,
  ...) is rendered while parsing. ``decode_all`` forces it so prefixes end up as complete.

ExaBGP decodes a prefix in an MP_REACH_NLRI with several next hops (IPv6 global plus
link-local) once per next hop, so its NLRI list is not the wire's prefix count; see
``_prefix_count``.
"""

from collections.abc import Sequence
from struct import unpack
from typing import Any

# ExaBGP ships no type information, hence the ignores. The refresh module is imported only
# for its side effect: it registers ROUTE_REFRESH with Message.unpack, as the daemon's own
# imports do.
import exabgp.bgp.message.refresh  # type: ignore[import-untyped]  # noqa: F401
from exabgp.bgp.message import Message, Notify, Open, Update
from exabgp.bgp.message.direction import Direction  # type: ignore[import-untyped]
from exabgp.bgp.message.open import ASN, HoldTime, RouterID, Version  # type: ignore[import-untyped]
from exabgp.bgp.message.open.capability import (  # type: ignore[import-untyped]
    ASN4,
    Capabilities,
    Capability,
    MultiProtocol,
    Negotiated,
)
from exabgp.bgp.message.update.nlri import INET  # type: ignore[import-untyped]
from exabgp.bgp.neighbor import Neighbor  # type: ignore[import-untyped]
from exabgp.environment import getenv  # type: ignore[import-untyped]
from exabgp.logger import log  # type: ignore[import-untyped]
from exabgp.protocol.family import AFI, SAFI  # type: ignore[import-untyped]

# Replace every log level with a no-op. Without it the parser's log.critical calls would
# raise AttributeError, the logger they use being created only by the daemon, and every
# log.debug call in the parse would still go through ExaBGP's level checks.
log.disable()

# An eBGP session, the common case. Both fit in two octets, so the same pair serves either
# session kind; which AS each side is only matters to AIGP, which ExaBGP drops anyway unless
# the neighbor is configured for it.
_LOCAL_AS = 65000
_PEER_AS = 65001
_HOLD_TIME = 180


def _open(asn: int, router_id: str, capabilities: Capabilities) -> Open:
    return Open(Version(4), ASN(asn), HoldTime(_HOLD_TIME), RouterID(router_id), capabilities)


def make_negotiated(
    *, four_octet_as: bool, families: Sequence[tuple[int, int]] = ((1, 1), (2, 1))
) -> object:
    """An ExaBGP Negotiated object for a session with these properties (no add-path).

    Both OPENs go through ExaBGP's own negotiation, so every field the parser reads (asn4,
    families, add-path, extended next hop) is set as it would be in the daemon.
    """
    capabilities = Capabilities()
    capabilities[Capability.CODE.MULTIPROTOCOL] = MultiProtocol(
        (AFI.create(afi), SAFI.create(safi)) for afi, safi in families
    )
    if four_octet_as:
        capabilities[Capability.CODE.FOUR_BYTES_ASN] = ASN4(_LOCAL_AS)

    # Negotiated only takes the neighbor's AIGP setting (off by default, so AIGP attributes
    # are dropped as ExaBGP does for an unconfigured peer); a default Neighbor is enough.
    negotiated = Negotiated(Neighbor())
    negotiated.sent(_open(_LOCAL_AS, "192.0.2.1", capabilities))
    negotiated.received(_open(_PEER_AS, "192.0.2.2", capabilities))

    # ExaBGP reads its settings (environment, env file) on first use, which is the first
    # UPDATE it parses; do it here so that one-time cost stays out of decode_all's timings.
    getenv()
    return negotiated


def _unpack(wire: bytes, negotiated: Negotiated) -> object:
    """One message through the header checks ExaBGP's reader makes, then ExaBGP's parser.

    ExaBGP checks the header in Connection.reader, which pulls from its socket, so those
    checks are repeated here in its order; everything past the header is ExaBGP's own code.
    """
    if not wire.startswith(Message.MARKER):
        raise Notify(1, 1, "The packet received does not contain a BGP marker")
    length = unpack("!H", wire[16:18])[0]
    kind = wire[18]
    within_session = Message.HEADER_LEN <= length <= negotiated.msg_size
    # Message.Length is ExaBGP's per-type table; types it lacks only need a whole header.
    valid_for_type = Message.Length.get(kind, lambda size: size >= Message.HEADER_LEN)
    if not within_session or not valid_for_type(length):
        raise Notify(1, 2, f"{Message.CODE.name(kind)} has an invalid message length of {length}")
    # The reader would take `length` bytes off the stream; here the caller framed the message.
    if length != len(wire):
        raise ValueError(f"header says {length} bytes, the message has {len(wire)}")
    return Message.unpack(kind, wire[Message.HEADER_LEN :], Direction.IN, negotiated)


def _prefix_count(nlris: Sequence[Any]) -> int:
    """How many prefixes the wire carried, from ExaBGP's NLRI list for one UPDATE.

    ExaBGP lists the per-next-hop copies of an MP_REACH_NLRI prefix back to back, the same
    NLRI with a different next hop each, so such a run counts once. A new prefix in that
    attribute starts again at the first next hop, which the run has already had, so a
    prefix the wire repeats still counts each time.

    The checks are ordered cheapest first, and INET NLRI compare by their CIDR: ExaBGP's
    own NLRI equality formats the family on every comparison, which added about an eighth
    to the measured time of an IPv6 UPDATE.
    """
    count = 0
    head: Any = None
    nexthops: list[Any] = []
    for nlri in nlris:
        if (
            head is not None
            and nlri.action == head.action
            and nlri.nexthop not in nexthops
            and nlri.afi == head.afi
            and nlri.safi == head.safi
            and (nlri.cidr == head.cidr if isinstance(nlri, INET) else nlri == head)
        ):
            nexthops.append(nlri.nexthop)
            continue
        head, nexthops = nlri, [nlri.nexthop]
        count += 1
    return count


def decode_all(messages: Sequence[bytes], negotiated: object) -> int:
    """Decode every message with ExaBGP's parser, returning how many prefixes they carry.

    Each message is the whole wire message, header included, of any type. The count is the
    prefixes on the wire, announced plus withdrawn, MP_REACH_NLRI and MP_UNREACH_NLRI
    included, so the caller can check both decoders found the same. Raises ExaBGP's Notify
    for what ExaBGP rejects.

    Path attributes and NLRI are built in full while ExaBGP parses, so only the deferred
    CIDR rendering needs forcing; there is nothing else to walk.
    """
    prefixes = 0
    for wire in messages:
        message = _unpack(wire, negotiated)
        # An End-of-RIB is its own class, not an Update, and carries no prefix.
        if isinstance(message, Update):
            for nlri in message.nlris:
                if isinstance(nlri, INET):
                    nlri.cidr.top()
            prefixes += _prefix_count(message.nlris)
    return prefixes
