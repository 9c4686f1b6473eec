"""The original (Rust) sart speaker's contract, `sart.v1.BgpApi`, over our `Speaker` (grpclib).

Served beside `SpeakerService` by `sartd bgp` so that the original's agent and `sart` CLI can
drive this speaker during a migration. Each call is translated to what the speaker does for its
own API; where the original's meaning cannot be kept, the call answers UNIMPLEMENTED and says
why. Where the original answered before acting (it queued every change and returned OK),
this service acts first and answers with the outcome, so a refused change is an error here:
INVALID_ARGUMENT for a malformed value (the original: ABORTED), NOT_FOUND for an unknown
neighbor on a read, ALREADY_EXISTS for a second AddPeer, FAILED_PRECONDITION for an AS or
router id change while neighbors exist. Deleting what is not there succeeds, as it did there.
docs/api.md lists every call.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import attrs
from google.protobuf.any_pb2 import Any as AnyMessage
from google.protobuf.empty_pb2 import Empty
from google.protobuf.timestamp_pb2 import Timestamp
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.server import Stream
from netaddr import IPAddress, IPNetwork

from sart.api import convert
from sart.api._gen.sart.v1 import original_bgp_pb2 as pb
from sart.api._gen.sart.v1.original_bgp_grpc import BgpApiBase
from sart.bgp.codes import AsPathSegmentType, OriginCode
from sart.bgp.config import NeighborConfig, PathAttributesConfig
from sart.bgp.fsm import State
from sart.bgp.messages import IPV4_UNICAST, IPV6_UNICAST, Family, LocalPref, MultiExitDisc, find
from sart.bgp.rib import Path
from sart.bgp.speaker import Neighbor, Speaker
from sart.errors import BgpUsageError

PEER_STATES = {
    State.IDLE: pb.Peer.IDLE,
    State.CONNECT: pb.Peer.CONNECT,
    State.ACTIVE: pb.Peer.ACTIVE,
    State.OPEN_SENT: pb.Peer.OPEN_SENT,
    State.OPEN_CONFIRM: pb.Peer.OPEN_CONFIRM,
    State.ESTABLISHED: pb.Peer.ESTABLISHED,
}
AFI_OF_VERSION = {4: pb.AddressFamily.AFI_IP4, 6: pb.AddressFamily.AFI_IP6}
SEGMENT_TYPES = {
    AsPathSegmentType.AS_SET: pb.AsSegment.AS_SET,
    AsPathSegmentType.AS_SEQUENCE: pb.AsSegment.AS_SEQUENCE,
}


def _invalid(message: str) -> GRPCError:
    return GRPCError(Status.INVALID_ARGUMENT, message)


def _unimplemented(message: str) -> GRPCError:
    return GRPCError(Status.UNIMPLEMENTED, message)


# --- the original's messages -> values -------------------------------------------------------


def family_version(message: pb.AddressFamily, field: str) -> int:
    """4 or 6 for IPv4/IPv6 unicast, the only families this speaker carries."""
    if message.safi == pb.AddressFamily.SAFI_MULTICAST:
        raise _unimplemented(f"{field}: multicast is not supported by this speaker (unicast only)")
    if message.safi != pb.AddressFamily.SAFI_UNICAST:
        raise _invalid(f"{field}: safi {message.safi} is not SAFI_UNICAST")
    for version, afi in AFI_OF_VERSION.items():
        if message.afi == afi:
            return version
    raise _invalid(f"{field}: afi {message.afi} is neither AFI_IP4 nor AFI_IP6")


def required_version(request: pb.GetPathRequest | pb.GetNeighborPathRequest) -> int:
    if not request.HasField("family"):
        raise _invalid("family: missing")
    return family_version(request.family, "family")


def address(text: str, field: str) -> IPAddress:
    try:
        return convert.address(text, field)
    except convert.InvalidArgument as error:
        raise _invalid(str(error)) from None


def prefixes(texts: Iterable[str], family: pb.AddressFamily | None) -> list[IPNetwork]:
    """The prefixes of an AddPath/DeletePath, all of the request's family when it names one."""
    version = family_version(family, "family") if family is not None else None
    parsed = []
    for text in texts:
        try:
            prefix = convert.prefix(text, "prefixes")
        except convert.InvalidArgument as error:
            raise _invalid(str(error)) from None
        if version is not None and prefix.version != version:
            raise _invalid(f"prefixes: {prefix} is not of the request's family (IPv{version})")
        parsed.append(prefix)
    return parsed


def neighbor_config(peer: pb.Peer) -> NeighborConfig:
    """AddPeer's Peer. Zero hold time means the speaker's own; keepalive_time has no setting
    of its own here (a third of the hold time, RFC 4271 10); uptime, counters and state are
    output fields and ignored."""
    families: list[Family] = []
    for index, family in enumerate(peer.families):
        version = family_version(family, f"peer.families[{index}]")
        chosen = IPV4_UNICAST if version == 4 else IPV6_UNICAST
        if chosen not in families:
            families.append(chosen)
    router_id = address(peer.router_id, "peer.router_id") if peer.router_id else None
    if router_id is not None and router_id.version != 4:
        raise _invalid(f"peer.router_id: {router_id} is not IPv4")
    try:
        return NeighborConfig(
            address=address(peer.address, "peer.address"),
            asn=peer.asn,
            name=peer.name,
            router_id=router_id,
            passive=peer.passive_open,
            hold_time=peer.hold_time or None,
            families=tuple(families) or (IPV4_UNICAST, IPV6_UNICAST),
        )
    except ValueError as error:  # the model's validators: ASN range, hold time
        raise _invalid(f"peer: {error}") from None


def path_attributes(packed: Iterable[AnyMessage]) -> PathAttributesConfig:
    """AddPath's attributes, each an Any holding one of the original's *Attribute messages."""
    config = PathAttributesConfig()
    for index, any_message in enumerate(packed):
        field = f"attributes[{index}]"
        if any_message.Is(pb.OriginAttribute.DESCRIPTOR):
            origin = pb.OriginAttribute()
            any_message.Unpack(origin)
            if origin.value not in (0, 1, 2):
                raise _invalid(f"{field}: unknown origin {origin.value}")
            config = attrs.evolve(config, origin=OriginCode(origin.value))
        elif any_message.Is(pb.LocalPrefAttribute.DESCRIPTOR):
            local_pref = pb.LocalPrefAttribute()
            any_message.Unpack(local_pref)
            config = attrs.evolve(config, local_pref=local_pref.value)
        elif any_message.Is(pb.MultiExitDiscAttribute.DESCRIPTOR):
            med = pb.MultiExitDiscAttribute()
            any_message.Unpack(med)
            config = attrs.evolve(config, med=med.value)
        elif any_message.Is(pb.NextHopAttribute.DESCRIPTOR):
            next_hop = pb.NextHopAttribute()
            any_message.Unpack(next_hop)
            config = attrs.evolve(config, next_hop=address(next_hop.value, f"{field}.value"))
        elif any_message.type_url.rpartition("/")[2] in (
            "sart.v1.AsPathAttribute",
            "sart.v1.AtomicAggregateAttribute",
            "sart.v1.AggregatorAttribute",
            "sart.v1.UnknownAttribute",
        ):
            name = any_message.type_url.rpartition(".")[2]
            raise _unimplemented(
                f"{field}: {name} is not supported: this speaker originates paths with an "
                "empty AS path and only ORIGIN, NEXT_HOP, MED and LOCAL_PREF set"
            )
        else:
            raise _invalid(f"{field}: {any_message.type_url!r} is not a sart.v1 path attribute")
    return config


# --- values -> the original's messages -------------------------------------------------------


def family_message(version: int) -> pb.AddressFamily:
    return pb.AddressFamily(afi=AFI_OF_VERSION[version], safi=pb.AddressFamily.SAFI_UNICAST)


def wall_clock(monotonic: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(int((time.time() - (time.monotonic() - monotonic)) * 1e9))
    return stamp


def path_message(path: Path, *, best: bool, next_hop: IPAddress | None = None) -> pb.Path:
    local_pref = find(path.attributes, LocalPref)
    med = find(path.attributes, MultiExitDisc)
    hop = next_hop if next_hop is not None else path.next_hop
    segments = [
        pb.AsSegment(type=SEGMENT_TYPES.get(s.type, pb.AsSegment.UNKNOWN), elm=s.asns)  # type: ignore[call-overload]
        for s in path.as_path.segments
    ]
    message = pb.Path(
        nlri=str(path.prefix),
        family=family_message(path.prefix.version),
        origin=path.origin,
        next_hops=[str(hop)] if hop is not None else [],
        segments=segments,
        local_pref=local_pref.value if local_pref is not None else 0,
        med=med.value if med is not None else 0,
        peer_asn=path.source.asn,
        peer_addr=str(path.source.address) if path.source.address is not None else "",
        best=best,
    )
    if path.learned:
        message.timestamp.CopyFrom(wall_clock(path.learned))
    return message


class OriginalBgpService(BgpApiBase):
    def __init__(self, speaker: Speaker) -> None:
        self.speaker = speaker

    def _neighbor(self, text: str) -> Neighbor:
        found = self.speaker.neighbors.get(address(text, "addr"))
        if found is None:
            raise GRPCError(Status.NOT_FOUND, f"no neighbor {text}")
        return found

    def _peer(self, neighbor: Neighbor) -> pb.Peer:
        config = neighbor.config
        negotiated = neighbor.negotiated if neighbor.established else None
        hold = config.hold_time if config.hold_time is not None else self.speaker.config.hold_time
        router_id = config.router_id
        if negotiated is not None:
            hold, router_id = negotiated.hold_time, negotiated.peer_id
        peer = pb.Peer(
            asn=config.asn,
            address=str(config.address),
            router_id=str(router_id or ""),
            families=[family_message(4 if f == IPV4_UNICAST else 6) for f in config.families],
            hold_time=hold,
            keepalive_time=hold // 3,
            send_counter=pb.MessageCounter(update=neighbor.stats.updates_out),
            recv_counter=pb.MessageCounter(update=neighbor.stats.updates_in),
            state=PEER_STATES[neighbor.state],
            passive_open=config.passive,
            name=config.name,
        )
        established_at = neighbor.stats.established_at
        if neighbor.established and established_at is not None:
            peer.uptime.CopyFrom(wall_clock(established_at))
        return peer

    def _loc_rib(self, version: int, wanted: IPNetwork | None = None) -> list[pb.Path]:
        rib = self.speaker.rib
        entries = [rib.lookup(wanted)] if wanted is not None else [paths for _, paths in rib]
        return [
            path_message(path, best=index == 0)
            for entry in entries
            if entry and entry[0].prefix.version == version
            for index, path in enumerate(entry)
        ]

    # --- global ---------------------------------------------------------------------------

    async def Health(self, stream: Stream[pb.HealthRequest, Empty]) -> None:
        await stream.recv_message()
        await stream.send_message(Empty())

    async def GetBgpInfo(self, stream: Stream[pb.GetBgpInfoRequest, pb.GetBgpInfoResponse]) -> None:
        await stream.recv_message()
        speaker = self.speaker
        info = pb.BgpInfo(
            asn=speaker.config.asn,
            router_id=str(speaker.config.router_id),
            port=speaker.ports[0] if speaker.ports else speaker.config.port,
            multi_path=speaker.config.multi_path,
        )
        await stream.send_message(pb.GetBgpInfoResponse(info=info))

    async def SetAS(self, stream: Stream[pb.SetASRequest, Empty]) -> None:
        request = await stream.recv_message()
        assert request is not None
        if not 1 <= request.asn <= 2**32 - 1:
            raise _invalid(f"asn {request.asn} is outside 1..4294967295")
        if request.asn != self.speaker.config.asn:  # the same AS again changes nothing
            self._set_identity(asn=request.asn)
        await stream.send_message(Empty())

    async def SetRouterId(self, stream: Stream[pb.SetRouterIdRequest, Empty]) -> None:
        request = await stream.recv_message()
        assert request is not None
        router_id = address(request.router_id, "router_id")
        if router_id.version != 4:
            raise _invalid(f"router_id {router_id} is not IPv4")
        if router_id != self.speaker.config.router_id:
            self._set_identity(router_id=router_id)
        await stream.send_message(Empty())

    def _set_identity(self, **identity: object) -> None:
        try:
            self.speaker.set_identity(**identity)  # type: ignore[arg-type]
        except BgpUsageError as error:
            raise GRPCError(Status.FAILED_PRECONDITION, str(error)) from None

    async def ClearBgpInfo(self, stream: Stream[pb.ClearBgpInfoRequest, Empty]) -> None:
        await stream.recv_message()
        raise _unimplemented(
            "ClearBgpInfo: this speaker always has an AS and a router id; set new ones with "
            "SetAS and SetRouterId (while no neighbor exists)"
        )

    async def ConfigureMultiPath(self, stream: Stream[pb.ConfigureMultiPathRequest, Empty]) -> None:
        request = await stream.recv_message()
        assert request is not None
        # The original has no multipath-relax switch: ours keeps its current setting.
        self.speaker.set_multipath(request.enable, self.speaker.config.multi_path_relax)
        await stream.send_message(Empty())

    # --- neighbors ------------------------------------------------------------------------

    async def GetNeighbor(
        self, stream: Stream[pb.GetNeighborRequest, pb.GetNeighborResponse]
    ) -> None:
        request = await stream.recv_message()
        assert request is not None
        neighbor = self._neighbor(request.addr)
        await stream.send_message(pb.GetNeighborResponse(peer=self._peer(neighbor)))

    async def ListNeighbor(
        self, stream: Stream[pb.ListNeighborRequest, pb.ListNeighborResponse]
    ) -> None:
        await stream.recv_message()
        neighbors = sorted(self.speaker.neighbors.values(), key=lambda n: n.address.sort_key())
        await stream.send_message(pb.ListNeighborResponse(peers=[self._peer(n) for n in neighbors]))

    async def AddPeer(self, stream: Stream[pb.AddPeerRequest, Empty]) -> None:
        request = await stream.recv_message()
        assert request is not None
        if not request.HasField("peer"):
            raise _invalid("peer: missing")
        config = neighbor_config(request.peer)
        if config.address in self.speaker.neighbors:
            raise GRPCError(Status.ALREADY_EXISTS, f"neighbor {config.address} already exists")
        self.speaker.add_neighbor(config)
        await stream.send_message(Empty())

    async def DeletePeer(self, stream: Stream[pb.DeletePeerRequest, Empty]) -> None:
        request = await stream.recv_message()
        assert request is not None
        peer = address(request.addr, "addr")
        if peer in self.speaker.neighbors:  # none: nothing to do, as the original answered
            await self.speaker.remove_neighbor(peer)
        await stream.send_message(Empty())

    # --- paths ----------------------------------------------------------------------------

    async def AddPath(self, stream: Stream[pb.AddPathRequest, pb.AddPathResponse]) -> None:
        request = await stream.recv_message()
        assert request is not None
        family = request.family if request.HasField("family") else None
        wanted = prefixes(request.prefixes, family)
        attributes = path_attributes(request.attributes)
        self.speaker.announce(wanted, attributes)
        await stream.send_message(pb.AddPathResponse())

    async def DeletePath(self, stream: Stream[pb.DeletePathRequest, pb.DeletePathResponse]) -> None:
        request = await stream.recv_message()
        assert request is not None
        family = request.family if request.HasField("family") else None
        self.speaker.withdraw(prefixes(request.prefixes, family))
        await stream.send_message(pb.DeletePathResponse())

    async def GetPath(self, stream: Stream[pb.GetPathRequest, pb.GetPathResponse]) -> None:
        request = await stream.recv_message()
        assert request is not None
        version = required_version(request)
        await stream.send_message(pb.GetPathResponse(paths=self._loc_rib(version)))

    async def GetPathByPrefix(
        self, stream: Stream[pb.GetPathByPrefixRequest, pb.GetPathByPrefixResponse]
    ) -> None:
        request = await stream.recv_message()
        assert request is not None
        family = request.family if request.HasField("family") else None
        (wanted,) = prefixes([request.prefix], family)
        paths = self._loc_rib(wanted.version, wanted)
        await stream.send_message(pb.GetPathByPrefixResponse(paths=paths))

    async def GetNeighborPath(
        self, stream: Stream[pb.GetNeighborPathRequest, pb.GetNeighborPathResponse]
    ) -> None:
        request = await stream.recv_message()
        assert request is not None
        version = required_version(request)
        if request.kind not in (pb.GetNeighborPathRequest.IN, pb.GetNeighborPathRequest.OUT):
            raise _invalid(f"kind: {request.kind} is neither IN nor OUT")
        neighbor = self._neighbor(request.addr)
        rib = self.speaker.rib
        paths: list[pb.Path] = []
        if request.kind == pb.GetNeighborPathRequest.IN:
            source = neighbor.source or neighbor.stale_source
            if source is not None:
                for path in rib.paths_from(source):
                    if path.prefix.version == version:
                        best = rib.lookup(path.prefix)
                        paths.append(path_message(path, best=bool(best) and best[0] == path))
        elif neighbor.adj_out is not None:
            for prefix, _, next_hop in neighbor.adj_out.routes():
                sent = rib.lookup(prefix)
                if prefix.version == version and sent:
                    paths.append(path_message(sent[0], best=True, next_hop=next_hop))
        await stream.send_message(pb.GetNeighborPathResponse(paths=paths))
