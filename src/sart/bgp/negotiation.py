"""From two OPENs to what the session may do (RFC 4271 4.2, RFC 5492 and the capability RFCs).

`negotiate` checks the peer's OPEN against what we expect of the peer and returns the frozen
result: hold and keepalive times, the families both sides speak, and the two SessionContexts
the codec needs (add-path is negotiated per direction, RFC 7911 4).
"""

from __future__ import annotations

import attrs
from netaddr import IPAddress

from sart.bgp.codes import AS_TRANS, AddPathDirection, ErrorCode, OpenSubcode
from sart.bgp.context import SessionContext
from sart.bgp.errors import BgpDecodeError
from sart.bgp.messages import (
    IPV4_UNICAST,
    AddPathCapability,
    EnhancedRouteRefreshCapability,
    ExtendedMessageCapability,
    ExtendedNextHopCapability,
    Family,
    FourOctetAsCapability,
    GracefulRestartCapability,
    MultiprotocolCapability,
    Open,
    RouteRefreshCapability,
)

_RECEIVE = (AddPathDirection.RECEIVE, AddPathDirection.BOTH)
_SEND = (AddPathDirection.SEND, AddPathDirection.BOTH)


@attrs.frozen(kw_only=True)
class Negotiated:
    peer_asn: int
    peer_id: IPAddress
    hold_time: int  # seconds; 0: no hold timer and no keepalives (RFC 4271 4.2)
    families: frozenset[Family]
    receive: SessionContext  # for decoding what the peer sends
    send: SessionContext  # for encoding what we send
    route_refresh: bool
    enhanced_route_refresh: bool
    peer_graceful_restart: GracefulRestartCapability | None
    wanted_keepalive: int | None = None  # ours, configured; None: a third of the hold time

    @property
    def keepalive_time(self) -> int:
        """A third of the hold time (RFC 4271 10, the suggested ratio), or the keepalive time
        we were configured with when that is shorter (as FRR does): a peer that lowers the hold
        time below three keepalives gets them more often, never less (RFC 4271 4.4)."""
        third = self.hold_time // 3
        if self.wanted_keepalive is None:
            return third
        return min(self.wanted_keepalive, third)


def _families(message: Open) -> frozenset[Family]:
    announced = frozenset(
        c.family for c in message.capabilities if isinstance(c, MultiprotocolCapability)
    )
    # RFC 4760 8: a speaker that announces no multiprotocol capability speaks IPv4 unicast.
    return announced or frozenset({IPV4_UNICAST})


def _add_path(message: Open, directions: tuple[int, ...]) -> frozenset[Family]:
    capability = message.capability(AddPathCapability)
    if capability is None:
        return frozenset()
    return frozenset(
        Family(f.afi, f.safi) for f in capability.families if f.send_receive in directions
    )


def _extended_next_hop(message: Open) -> frozenset[Family]:
    capability = message.capability(ExtendedNextHopCapability)
    if capability is None:
        return frozenset()
    return frozenset(Family(e.afi, e.safi) for e in capability.entries if e.next_hop_afi == 2)


def _open_error(reason: str, subcode: int, data: bytes = b"") -> BgpDecodeError:
    return BgpDecodeError(reason, ErrorCode.OPEN_MESSAGE, subcode, data)


def negotiate(
    local: Open,
    remote: Open,
    *,
    peer_asn: int | None = None,
    internal: bool | None = None,
    keepalive_time: int | None = None,
) -> Negotiated:
    """What the session with `remote` may do, given our `local` OPEN. `peer_asn` is the AS we
    expect (None: any); `internal` says the session is iBGP (None: the ASNs decide);
    `keepalive_time` is ours (None: a third of the negotiated hold time). Raises
    BgpDecodeError with the NOTIFICATION to send when the peer's OPEN is unacceptable."""
    if peer_asn is not None and remote.asn != peer_asn:
        raise _open_error(
            f"peer says it is AS {remote.asn}, we expect AS {peer_asn}",
            OpenSubcode.BAD_PEER_AS,
            remote.my_as.to_bytes(2, "big"),
        )
    four_octet = remote.capability(FourOctetAsCapability)
    if four_octet is None and remote.my_as == AS_TRANS:
        raise _open_error(
            "peer says it is AS_TRANS without a 4-octet AS capability (RFC 6793 4.1)",
            OpenSubcode.BAD_PEER_AS,
            remote.my_as.to_bytes(2, "big"),
        )
    if internal is None:
        internal = remote.asn == local.asn
    if internal and remote.bgp_id == local.bgp_id:
        raise _open_error(
            f"peer's BGP identifier {remote.bgp_id} is ours (RFC 6286 2.2)",
            OpenSubcode.BAD_BGP_IDENTIFIER,
        )
    four_octet_as = four_octet is not None and local.capability(FourOctetAsCapability) is not None
    extended_message = (
        remote.capability(ExtendedMessageCapability) is not None
        and local.capability(ExtendedMessageCapability) is not None
    )
    extended_next_hop = _extended_next_hop(local) & _extended_next_hop(remote)
    receive = SessionContext(
        four_octet_as=four_octet_as,
        add_path=_add_path(local, _RECEIVE) & _add_path(remote, _SEND),
        extended_next_hop=extended_next_hop,
        extended_message=extended_message,
    )
    send = attrs.evolve(receive, add_path=_add_path(local, _SEND) & _add_path(remote, _RECEIVE))
    return Negotiated(
        peer_asn=remote.asn,
        peer_id=remote.bgp_id,
        hold_time=min(local.hold_time, remote.hold_time),
        families=_families(local) & _families(remote),
        receive=receive,
        send=send,
        route_refresh=all(
            m.capability(RouteRefreshCapability) is not None for m in (local, remote)
        ),
        enhanced_route_refresh=all(
            m.capability(EnhancedRouteRefreshCapability) is not None for m in (local, remote)
        ),
        peer_graceful_restart=remote.capability(GracefulRestartCapability),
        wanted_keepalive=keepalive_time,
    )
