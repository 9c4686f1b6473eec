"""The sart.speaker.v1.SpeakerApi service over a running `Speaker` (grpclib).

Handlers run on the speaker's event loop and read its state without awaiting in between, so
every answer is one consistent snapshot. Errors become gRPC statuses with a message that says
what was wrong: a malformed value INVALID_ARGUMENT, an unknown neighbor NOT_FOUND, a duplicate
ALREADY_EXISTS, a change the speaker cannot make now FAILED_PRECONDITION. A failed call
changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.server import Stream

from sart.api import convert
from sart.api._gen.sart.speaker.v1 import speaker_pb2 as pb
from sart.api._gen.sart.speaker.v1.speaker_grpc import SpeakerApiBase
from sart.bgp.config import check_keepalive
from sart.bgp.messages import AsPath, find
from sart.bgp.mrt import table_dump
from sart.bgp.prefixes import key_version
from sart.bgp.rib import Path
from sart.bgp.speaker import BestPathChanged, Neighbor, PathsSent, PeerStateChanged, Speaker
from sart.errors import BgpUsageError


def _invalid(error: convert.InvalidArgument) -> GRPCError:
    return GRPCError(Status.INVALID_ARGUMENT, str(error))


class SpeakerService(SpeakerApiBase):
    def __init__(self, speaker: Speaker) -> None:
        self.speaker = speaker

    def _neighbor(self, text: str) -> Neighbor:
        try:
            address = convert.address(text, "address")
        except convert.InvalidArgument as error:
            raise _invalid(error) from None
        neighbor = self.speaker.neighbors.get(address)
        if neighbor is None:
            raise GRPCError(Status.NOT_FOUND, f"no neighbor {address}")
        return neighbor

    def _state(self, neighbor: Neighbor) -> pb.NeighborState:
        received, sent = neighbor.messages()
        negotiated = neighbor.negotiated if neighbor.established else None
        source = neighbor.source
        message = pb.NeighborState(
            config=convert.neighbor_message(neighbor.config),
            state=convert.STATES[neighbor.state],
            uptime_seconds=self.speaker.uptime(neighbor) or 0.0,
            messages_received=received,
            messages_sent=sent,
            updates_received=neighbor.stats.updates_in,
            updates_sent=neighbor.stats.updates_out,
            prefixes_received=self.speaker.rib.count(source) if source is not None else 0,
            prefixes_sent=len(neighbor.adj_out) if neighbor.adj_out is not None else 0,
            last_error=neighbor.stats.last_error,
            has_password=bool(neighbor.config.password),
            password_digest=neighbor.password_digest,
            routes_ignored=neighbor.stats.routes_ignored,
            prefix_limit_warnings=neighbor.stats.prefix_limit_warnings,
            prefix_limit_exceeded=neighbor.stats.prefix_limit_exceeded,
        )
        if negotiated is not None:
            message.peer_router_id = str(negotiated.peer_id)
            message.negotiated_hold_time = negotiated.hold_time
            message.negotiated_families.extend(
                convert.FAMILY_OF_VERSION[4 if f.afi == 1 else 6]
                for f in sorted(negotiated.families, key=lambda f: f.afi)
            )
        return message

    # --- global ---------------------------------------------------------------------------

    async def Health(self, stream: Stream[pb.HealthRequest, pb.HealthResponse]) -> None:
        await stream.recv_message()
        await stream.send_message(pb.HealthResponse())

    async def GetBgpInfo(self, stream: Stream[pb.GetBgpInfoRequest, pb.GetBgpInfoResponse]) -> None:
        await stream.recv_message()
        speaker = self.speaker
        v4 = speaker.rib.count_version(4)
        await stream.send_message(
            pb.GetBgpInfoResponse(
                asn=speaker.config.asn,
                router_id=str(speaker.config.router_id),
                port=speaker.ports[0] if speaker.ports else speaker.config.port,
                neighbors=len(speaker.neighbors),
                established=sum(1 for n in speaker.neighbors.values() if n.established),
                rib_ipv4=v4,
                rib_ipv6=len(speaker.rib) - v4,
                local_paths=speaker.rib.count(speaker.local_source),
                multi_path=speaker.config.multi_path,
                uptime_seconds=time.monotonic() - speaker.started_at,
                end_of_rib_deferred=not speaker.initial_table.complete,
            )
        )

    async def EndOfInitialTable(
        self, stream: Stream[pb.EndOfInitialTableRequest, pb.EndOfInitialTableResponse]
    ) -> None:
        await stream.recv_message()
        released = self.speaker.end_of_initial_table()
        await stream.send_message(pb.EndOfInitialTableResponse(released=released))

    async def SetAs(self, stream: Stream[pb.SetAsRequest, pb.SetAsResponse]) -> None:
        request = await stream.recv_message()
        assert request is not None
        if not 1 <= request.asn <= 2**32 - 1:
            raise GRPCError(Status.INVALID_ARGUMENT, f"asn {request.asn} is outside 1..4294967295")
        try:
            self.speaker.set_identity(asn=request.asn)
        except BgpUsageError as error:
            raise GRPCError(Status.FAILED_PRECONDITION, str(error)) from None
        await stream.send_message(pb.SetAsResponse())

    async def SetRouterId(
        self, stream: Stream[pb.SetRouterIdRequest, pb.SetRouterIdResponse]
    ) -> None:
        request = await stream.recv_message()
        assert request is not None
        try:
            router_id = convert.address(request.router_id, "router_id")
        except convert.InvalidArgument as error:
            raise _invalid(error) from None
        if router_id.version != 4:
            raise GRPCError(Status.INVALID_ARGUMENT, f"router_id {router_id} is not IPv4")
        try:
            self.speaker.set_identity(router_id=router_id)
        except BgpUsageError as error:
            raise GRPCError(Status.FAILED_PRECONDITION, str(error)) from None
        await stream.send_message(pb.SetRouterIdResponse())

    async def SetMultiPath(
        self, stream: Stream[pb.SetMultiPathRequest, pb.SetMultiPathResponse]
    ) -> None:
        request = await stream.recv_message()
        assert request is not None
        self.speaker.set_multipath(request.enable, request.relax_as)
        await stream.send_message(pb.SetMultiPathResponse())

    # --- neighbors ------------------------------------------------------------------------

    async def ListNeighbors(
        self, stream: Stream[pb.ListNeighborsRequest, pb.ListNeighborsResponse]
    ) -> None:
        await stream.recv_message()
        neighbors = sorted(self.speaker.neighbors.values(), key=lambda n: n.address.sort_key())
        await stream.send_message(
            pb.ListNeighborsResponse(neighbors=[self._state(n) for n in neighbors])
        )

    async def GetNeighbor(
        self, stream: Stream[pb.GetNeighborRequest, pb.GetNeighborResponse]
    ) -> None:
        request = await stream.recv_message()
        assert request is not None
        neighbor = self._neighbor(request.address)
        await stream.send_message(pb.GetNeighborResponse(neighbor=self._state(neighbor)))

    async def AddNeighbor(
        self, stream: Stream[pb.AddNeighborRequest, pb.AddNeighborResponse]
    ) -> None:
        request = await stream.recv_message()
        assert request is not None
        if not request.HasField("neighbor"):
            raise GRPCError(Status.INVALID_ARGUMENT, "neighbor: missing")
        try:
            config = convert.neighbor_config(request.neighbor)
        except convert.InvalidArgument as error:
            raise _invalid(error) from None
        if config.keepalive_time is not None and config.hold_time is None:
            try:  # against the speaker's hold time, which the neighbor takes
                check_keepalive(config.keepalive_time, self.speaker.config.hold_time)
            except ValueError as error:
                raise GRPCError(Status.INVALID_ARGUMENT, f"neighbor: {error}") from None
        if config.address in self.speaker.neighbors:
            raise GRPCError(Status.ALREADY_EXISTS, f"neighbor {config.address} already exists")
        self.speaker.add_neighbor(config)
        await stream.send_message(pb.AddNeighborResponse())

    async def DeleteNeighbor(
        self, stream: Stream[pb.DeleteNeighborRequest, pb.DeleteNeighborResponse]
    ) -> None:
        request = await stream.recv_message()
        assert request is not None
        neighbor = self._neighbor(request.address)
        await self.speaker.remove_neighbor(neighbor.address)
        await stream.send_message(pb.DeleteNeighborResponse())

    async def SetNeighborAdmin(
        self, stream: Stream[pb.SetNeighborAdminRequest, pb.SetNeighborAdminResponse]
    ) -> None:
        request = await stream.recv_message()
        assert request is not None
        neighbor = self._neighbor(request.address)
        await self.speaker.set_admin_down(neighbor.address, request.down)
        await stream.send_message(pb.SetNeighborAdminResponse())

    # --- paths ----------------------------------------------------------------------------

    async def AddPaths(self, stream: Stream[pb.AddPathsRequest, pb.AddPathsResponse]) -> None:
        request = await stream.recv_message()
        assert request is not None
        try:
            prefixes = [convert.prefix(p, "prefixes") for p in request.prefixes]
            attributes = convert.path_attributes(request.attributes)
        except convert.InvalidArgument as error:
            raise _invalid(error) from None
        self.speaker.announce(prefixes, attributes)
        await stream.send_message(pb.AddPathsResponse(added=len(prefixes)))

    async def DeletePaths(
        self, stream: Stream[pb.DeletePathsRequest, pb.DeletePathsResponse]
    ) -> None:
        request = await stream.recv_message()
        assert request is not None
        try:
            prefixes = [convert.prefix(p, "prefixes") for p in request.prefixes]
        except convert.InvalidArgument as error:
            raise _invalid(error) from None
        before = self.speaker.rib.count(self.speaker.local_source)
        self.speaker.withdraw(prefixes)
        deleted = before - self.speaker.rib.count(self.speaker.local_source)
        await stream.send_message(pb.DeletePathsResponse(deleted=deleted))

    # --- RIBs -----------------------------------------------------------------------------

    async def GetRib(self, stream: Stream[pb.GetRibRequest, pb.GetRibResponse]) -> None:
        request = await stream.recv_message()
        assert request is not None
        rib, now = self.speaker.rib, time.monotonic()
        try:
            versions = tuple(convert.wanted_versions(request.family))
            if request.longest_match:
                addresses = [convert.address(a, "prefixes") for a in request.prefixes]
                entries = [rib.longest_match(a) for a in addresses]
            elif request.prefixes:
                wanted = [convert.prefix(p, "prefixes") for p in request.prefixes]
                entries = [rib.lookup(p) for p in wanted]
            else:
                entries = [paths for _, paths in rib]
        except convert.InvalidArgument as error:
            raise _invalid(error) from None
        paths = [
            convert.path_message(path, best=index == 0, now=now, stale=rib.is_stale(path))
            for entry in entries
            if entry and entry[0].prefix.version in versions
            for index, path in enumerate(entry)
        ]
        await stream.send_message(pb.GetRibResponse(paths=paths))

    async def GetNeighborRib(
        self, stream: Stream[pb.GetNeighborRibRequest, pb.GetNeighborRibResponse]
    ) -> None:
        request = await stream.recv_message()
        assert request is not None
        neighbor = self._neighbor(request.address)
        try:
            versions = tuple(convert.wanted_versions(request.family))
        except convert.InvalidArgument as error:
            raise _invalid(error) from None
        rib, now = self.speaker.rib, time.monotonic()
        paths: list[pb.Path] = []
        if request.direction == pb.RIB_DIRECTION_IN:
            source = neighbor.source or neighbor.stale_source
            if source is not None:
                for path in rib.paths_from(source):
                    if path.prefix.version in versions:
                        best = rib.lookup(path.prefix)
                        chosen = bool(best) and best[0] == path
                        stale = rib.is_stale(path)
                        paths.append(convert.path_message(path, best=chosen, now=now, stale=stale))
        elif neighbor.adj_out is not None:
            for prefix, attributes, next_hop in neighbor.adj_out.routes():
                if prefix.version in versions:
                    sent = rib.lookup(prefix)
                    if sent:
                        view = convert.path_message(sent[0], best=True, now=now, next_hop=next_hop)
                        exported = find(attributes, AsPath)
                        view.as_path = str(exported) if exported is not None else ""
                        paths.append(view)
        await stream.send_message(pb.GetNeighborRibResponse(paths=paths))

    async def DumpRib(self, stream: Stream[pb.DumpRibRequest, pb.DumpRibChunk]) -> None:
        request = await stream.recv_message()
        assert request is not None
        try:
            versions = tuple(convert.wanted_versions(request.family))
        except convert.InvalidArgument as error:
            raise _invalid(error) from None
        rib = self.speaker.rib
        entries: Iterable[tuple[int, tuple[Path, ...]]]
        if request.table == pb.RIB_TABLE_LOC:
            if request.neighbor:
                raise GRPCError(
                    Status.INVALID_ARGUMENT, "neighbor: only the Adj-RIBs-In are per neighbor"
                )
            entries, sources = rib.entries(), rib.sources()
        elif request.neighbor:
            neighbor = self._neighbor(request.neighbor)
            source = neighbor.source or neighbor.stale_source
            sources = [] if source is None else [source]
            own = () if source is None else rib.paths_from(source)
            entries = [(path.key, (path,)) for path in own]
        else:
            entries, sources = rib.candidate_entries(), rib.sources()
        # A snapshot, taken before the first await (paths never change, the RIB may): the
        # Loc-RIB's is a copy of its references, made tuples as the dump goes.
        if len(versions) == 1:
            entries = (entry for entry in entries if key_version(entry[0]) in versions)
        chunks = table_dump(
            entries,
            sources,
            collector_id=self.speaker.config.router_id,
            timestamp=int(time.time()),
            clock_offset=time.time() - time.monotonic(),  # Path.learned is monotonic
        )
        for chunk in chunks:
            await stream.send_message(pb.DumpRibChunk(data=chunk))

    # --- events ---------------------------------------------------------------------------

    async def WatchEvents(self, stream: Stream[pb.WatchEventsRequest, pb.Event]) -> None:
        await stream.recv_message()
        queue = self.speaker.subscribe()
        try:
            # The headers go out once the subscription exists: a client that waits for them
            # (SpeakerClient.events(registered=...)) and then reads the RIB misses no change.
            await stream.send_initial_metadata()
            while True:
                event = await queue.get()
                if isinstance(event, PeerStateChanged):
                    change = pb.Event.PeerStateChanged(
                        address=str(event.address),
                        state=convert.STATES[event.state],
                        reason=event.reason,
                    )
                    await stream.send_message(pb.Event(peer_state_changed=change))
                elif isinstance(event, BestPathChanged):
                    now = time.monotonic()
                    paths = [
                        convert.path_message(p, best=i == 0, now=now)
                        for i, p in enumerate(event.change.after)
                    ]
                    best = pb.Event.BestPathChanged(prefix=str(event.change.prefix), paths=paths)
                    await stream.send_message(pb.Event(best_path_changed=best))
                elif isinstance(event, PathsSent):
                    sent = pb.Event.PathsSent(
                        peer=str(event.address),
                        advertised=[str(p) for p in event.advertised],
                        withdrawn=[str(p) for p in event.withdrawn],
                    )
                    await stream.send_message(pb.Event(paths_sent=sent))
        finally:
            self.speaker.unsubscribe(queue)

    async def GetPathsSent(
        self, stream: Stream[pb.GetPathsSentRequest, pb.GetPathsSentResponse]
    ) -> None:
        request = await stream.recv_message()
        assert request is not None
        try:
            wanted = [convert.prefix(p, "prefixes") for p in request.prefixes] or None
        except convert.InvalidArgument as error:
            raise _invalid(error) from None
        found = self.speaker.own_paths_sent(wanted)
        paths = [
            pb.PathSent(prefix=str(prefix), peers=[str(a) for a in peers])
            for prefix, peers in sorted(found.items(), key=lambda item: item[0].sort_key())
        ]
        await stream.send_message(pb.GetPathsSentResponse(paths=paths))
