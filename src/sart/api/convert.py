"""Between the sart.speaker.v1 protobuf messages and the library's values.

Parsing of what a caller sends raises `InvalidArgument` naming the field, which the service
turns into INVALID_ARGUMENT."""

from __future__ import annotations

from collections.abc import Iterable

from netaddr import AddrFormatError, IPAddress, IPNetwork

from sart.api._gen.sart.speaker.v1 import speaker_pb2 as pb
from sart.bgp.codes import OriginCode
from sart.bgp.config import BfdConfig, NeighborConfig, PathAttributesConfig
from sart.bgp.fsm import State
from sart.bgp.limits import DEFAULT_WARNING_PERCENT
from sart.bgp.messages import (
    IPV4_UNICAST,
    IPV6_UNICAST,
    Communities,
    Family,
    LargeCommunities,
    LargeCommunity,
    LocalPref,
    MultiExitDisc,
    find,
    format_community,
    parse_community,
)
from sart.bgp.rib import Path
from sart.errors import SartError


class InvalidArgument(SartError):
    pass


FAMILIES: dict[int, Family] = {
    pb.FAMILY_IPV4_UNICAST: IPV4_UNICAST,
    pb.FAMILY_IPV6_UNICAST: IPV6_UNICAST,
}
FAMILY_OF_VERSION = {4: pb.FAMILY_IPV4_UNICAST, 6: pb.FAMILY_IPV6_UNICAST}
STATES = {
    State.IDLE: pb.SESSION_STATE_IDLE,
    State.CONNECT: pb.SESSION_STATE_CONNECT,
    State.ACTIVE: pb.SESSION_STATE_ACTIVE,
    State.OPEN_SENT: pb.SESSION_STATE_OPEN_SENT,
    State.OPEN_CONFIRM: pb.SESSION_STATE_OPEN_CONFIRM,
    State.ESTABLISHED: pb.SESSION_STATE_ESTABLISHED,
}


def address(text: str, field: str) -> IPAddress:
    try:
        return IPAddress(text)
    except (AddrFormatError, ValueError, TypeError):
        raise InvalidArgument(f"{field}: {text!r} is not an IP address") from None


def prefix(text: str, field: str) -> IPNetwork:
    try:
        network = IPNetwork(text)
    except (AddrFormatError, ValueError, TypeError):
        raise InvalidArgument(f"{field}: {text!r} is not a prefix") from None
    if "/" not in text:
        raise InvalidArgument(f"{field}: {text!r} has no prefix length")
    if network.ip != network.network:
        raise InvalidArgument(f"{field}: {text!r} has host bits set (did you mean {network.cidr}?)")
    return network


def family(value: int, field: str) -> Family | None:
    """None for FAMILY_UNSPECIFIED (both)."""
    if value == pb.FAMILY_UNSPECIFIED:
        return None
    known = FAMILIES.get(value)
    if known is None:
        raise InvalidArgument(f"{field}: unknown family {value}")
    return known


def neighbor_config(message: pb.Neighbor) -> NeighborConfig:
    families = tuple(f for f in (family(v, "neighbor.families") for v in message.families) if f)
    try:
        return NeighborConfig(
            address=address(message.address, "neighbor.address"),
            asn=message.asn,
            name=message.name,
            port=message.port or 179,
            passive=message.passive,
            hold_time=message.hold_time if message.HasField("hold_time") else None,
            keepalive_time=(message.keepalive_time if message.HasField("keepalive_time") else None),
            password=message.password or None,
            ttl=message.ttl or None,
            local_address=(
                address(message.local_address, "neighbor.local_address")
                if message.local_address
                else None
            ),
            families=families or (IPV4_UNICAST, IPV6_UNICAST),
            admin_down=message.admin_down,
            graceful_restart=message.graceful_restart,
            next_hops=tuple(address(a, "neighbor.next_hops") for a in message.next_hops),
            max_prefixes=message.max_prefixes or None,
            max_prefixes_warning=(
                message.max_prefixes_warning
                if message.HasField("max_prefixes_warning")
                else DEFAULT_WARNING_PERCENT
            ),
            max_prefixes_restart=message.max_prefixes_restart,
            bfd=bfd_config(message.bfd) if message.HasField("bfd") else None,
        )
    except ValueError as error:  # the model's validators: ASN range, hold time, TTL...
        raise InvalidArgument(f"neighbor: {error}") from None


def bfd_config(message: pb.Bfd) -> BfdConfig:
    """0 in a field: BfdConfig's default for it."""
    defaults = BfdConfig()
    return BfdConfig(
        min_rx=message.min_rx_ms or defaults.min_rx,
        min_tx=message.min_tx_ms or defaults.min_tx,
        multiplier=message.multiplier or defaults.multiplier,
    )


def bfd_message(config: BfdConfig) -> pb.Bfd:
    return pb.Bfd(min_rx_ms=config.min_rx, min_tx_ms=config.min_tx, multiplier=config.multiplier)


def neighbor_message(config: NeighborConfig) -> pb.Neighbor:
    message = pb.Neighbor(
        address=str(config.address),
        asn=config.asn,
        name=config.name,
        port=config.port,
        passive=config.passive,
        ttl=config.ttl or 0,
        local_address=str(config.local_address or ""),
        families=[FAMILY_OF_VERSION[4 if f == IPV4_UNICAST else 6] for f in config.families],
        admin_down=config.admin_down,
        graceful_restart=config.graceful_restart,
        next_hops=[str(a) for a in config.next_hops],
        max_prefixes=config.max_prefixes or 0,
        max_prefixes_warning=config.max_prefixes_warning,
        max_prefixes_restart=config.max_prefixes_restart,
    )
    if config.hold_time is not None:
        message.hold_time = config.hold_time
    if config.keepalive_time is not None:
        message.keepalive_time = config.keepalive_time
    if config.bfd is not None:
        message.bfd.CopyFrom(bfd_message(config.bfd))
    return message


def path_attributes(message: pb.PathAttributes) -> PathAttributesConfig:
    try:
        communities = tuple(parse_community(c) for c in message.communities)
    except ValueError as error:
        raise InvalidArgument(f"attributes.communities: {error}") from None
    try:
        large = tuple(LargeCommunity.from_str(c) for c in message.large_communities)
    except ValueError as error:
        raise InvalidArgument(f"attributes.large_communities: {error}") from None
    if message.origin not in (0, 1, 2):
        raise InvalidArgument(f"attributes.origin: unknown origin {message.origin}")
    return PathAttributesConfig(
        origin=OriginCode(message.origin),
        local_pref=message.local_pref if message.HasField("local_pref") else None,
        med=message.med if message.HasField("med") else None,
        communities=communities,
        large_communities=large,
        next_hop=address(message.next_hop, "attributes.next_hop") if message.next_hop else None,
    )


def path_message(
    path: Path, *, best: bool, now: float, stale: bool = False, next_hop: IPAddress | None = None
) -> pb.Path:
    communities = find(path.attributes, Communities)
    large = find(path.attributes, LargeCommunities)
    local_pref = find(path.attributes, LocalPref)
    med = find(path.attributes, MultiExitDisc)
    hop = next_hop if next_hop is not None else path.next_hop
    message = pb.Path(
        prefix=str(path.prefix),
        family=FAMILY_OF_VERSION[path.prefix.version],
        next_hop=str(hop) if hop is not None else "",
        origin=path.origin,  # type: ignore[arg-type]
        as_path=str(path.as_path),
        communities=[format_community(c) for c in communities.values] if communities else [],
        large_communities=[str(c) for c in large.values] if large else [],
        best=best,
        age_seconds=max(now - path.learned, 0.0) if path.learned else 0.0,
        source=str(path.source.address) if path.source.address is not None else "local",
        path_id=path.path_id,
        stale=stale,
    )
    if local_pref is not None:
        message.local_pref = local_pref.value
    if med is not None:
        message.med = med.value
    return message


def wanted_versions(value: int) -> Iterable[int]:
    chosen = family(value, "family")
    if chosen is None:
        return (4, 6)
    return (4,) if chosen == IPV4_UNICAST else (6,)
