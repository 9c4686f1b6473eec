"""`SpeakerClient`: the speaker's API from Python, without touching gRPC stubs.

    async with SpeakerClient("localhost:5000") as speaker:
        await speaker.add_paths(["203.0.113.10/32"], communities=["65000:100"])
        for path in await speaker.rib():
            print(path.prefix, path.next_hop, path.as_path)

Calls return the sart.speaker.v1 protobuf messages (typed). A call the speaker refuses raises
`ApiError` with the gRPC status and the speaker's message; a speaker that cannot be reached
raises `SpeakerUnreachable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterable, Iterator
from types import TracebackType
from typing import Any, Self

from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError, StreamTerminatedError

from sart.api._gen.sart.speaker.v1 import speaker_pb2 as pb
from sart.api._gen.sart.speaker.v1.speaker_grpc import SpeakerApiStub
from sart.errors import SartError

DEFAULT_ENDPOINT = "localhost:5000"
FAMILY_NAMES = {
    None: pb.FAMILY_UNSPECIFIED,
    "ipv4": pb.FAMILY_IPV4_UNICAST,
    "ipv6": pb.FAMILY_IPV6_UNICAST,
}
ORIGIN_NAMES = {"igp": pb.ORIGIN_IGP, "egp": pb.ORIGIN_EGP, "incomplete": pb.ORIGIN_INCOMPLETE}


class ApiError(SartError):
    def __init__(self, status: Status, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class SpeakerUnreachable(ApiError):
    pass


def parse_endpoint(endpoint: str) -> tuple[str, int]:
    """'host:port', '[v6]:port' or 'host' (port 5000)."""
    host, _, port = endpoint.rpartition(":")
    if not host or (endpoint.count(":") > 1 and not endpoint.startswith("[")):
        host, port = endpoint, "5000"
    host = host.strip("[]")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"endpoint {endpoint!r}: want HOST:PORT")
    return host, int(port)


UNIX_PREFIX = "unix:"


def unix_socket_path(endpoint: str) -> str | None:
    """The socket path of a 'unix:/run/sart/bgp.sock' endpoint, None for HOST:PORT. A unix
    socket reaches the speaker across network namespaces and only from this host."""
    return endpoint[len(UNIX_PREFIX) :] if endpoint.startswith(UNIX_PREFIX) else None


class SpeakerClient:
    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, *, timeout: float = 10.0) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        path = unix_socket_path(endpoint)
        if path is not None:
            self._channel = Channel(path=path)
        else:
            self._channel = Channel(*parse_endpoint(endpoint))
        self._stub = SpeakerApiStub(self._channel)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    async def _call(self, method: Any, request: Any) -> Any:
        try:
            return await method(request, timeout=self.timeout)
        except GRPCError as error:
            raise ApiError(error.status, error.message or error.status.name) from None
        except (ConnectionError, OSError, socket.gaierror, StreamTerminatedError) as error:
            raise SpeakerUnreachable(
                Status.UNAVAILABLE, f"cannot reach the speaker at {self.endpoint}: {error}"
            ) from None
        except TimeoutError:
            raise SpeakerUnreachable(
                Status.DEADLINE_EXCEEDED, f"the speaker at {self.endpoint} did not answer"
            ) from None

    @contextlib.contextmanager
    def _stream_errors(self) -> Iterator[None]:
        """A streaming call's failures as `_call` reports them."""
        try:
            yield
        except GRPCError as error:
            raise ApiError(error.status, error.message or error.status.name) from None
        except (ConnectionError, OSError) as error:
            raise SpeakerUnreachable(
                Status.UNAVAILABLE, f"cannot reach the speaker at {self.endpoint}: {error}"
            ) from None

    # --- global ---------------------------------------------------------------------------

    async def health(self) -> None:
        await self._call(self._stub.Health, pb.HealthRequest())

    async def info(self) -> pb.GetBgpInfoResponse:
        response: pb.GetBgpInfoResponse = await self._call(
            self._stub.GetBgpInfo, pb.GetBgpInfoRequest()
        )
        return response

    async def end_of_initial_table(self) -> bool:
        """Tell a restarted speaker its table is complete (End-of-RIB may go out); whether
        it was holding End-of-RIB."""
        response = await self._call(self._stub.EndOfInitialTable, pb.EndOfInitialTableRequest())
        return bool(response.released)

    async def set_as(self, asn: int) -> None:
        await self._call(self._stub.SetAs, pb.SetAsRequest(asn=asn))

    async def set_router_id(self, router_id: str) -> None:
        await self._call(self._stub.SetRouterId, pb.SetRouterIdRequest(router_id=router_id))

    async def set_multipath(self, enable: bool, *, relax_as: bool = False) -> None:
        request = pb.SetMultiPathRequest(enable=enable, relax_as=relax_as)
        await self._call(self._stub.SetMultiPath, request)

    # --- neighbors ------------------------------------------------------------------------

    async def neighbors(self) -> list[pb.NeighborState]:
        response = await self._call(self._stub.ListNeighbors, pb.ListNeighborsRequest())
        return list(response.neighbors)

    async def neighbor(self, address: str) -> pb.NeighborState:
        response = await self._call(self._stub.GetNeighbor, pb.GetNeighborRequest(address=address))
        state: pb.NeighborState = response.neighbor
        return state

    async def add_neighbor(self, address: str, asn: int, **options: Any) -> None:
        """Options are the fields of sart.speaker.v1.Neighbor: name, port, passive, hold_time,
        keepalive_time, password, ttl, local_address, families (["ipv4", "ipv6"]),
        admin_down, graceful_restart, next_hops, max_prefixes..."""
        families = [FAMILY_NAMES[f] for f in options.pop("families", ())]
        neighbor = pb.Neighbor(address=address, asn=asn, families=families, **options)
        await self._call(self._stub.AddNeighbor, pb.AddNeighborRequest(neighbor=neighbor))

    async def delete_neighbor(self, address: str) -> None:
        request = pb.DeleteNeighborRequest(address=address)
        await self._call(self._stub.DeleteNeighbor, request)

    async def set_admin_down(self, address: str, down: bool) -> None:
        request = pb.SetNeighborAdminRequest(address=address, down=down)
        await self._call(self._stub.SetNeighborAdmin, request)

    # --- paths and RIBs -------------------------------------------------------------------

    async def add_paths(
        self,
        prefixes: Iterable[str],
        *,
        origin: str = "igp",
        local_pref: int | None = None,
        med: int | None = None,
        communities: Iterable[str] = (),
        next_hop: str = "",
        large_communities: Iterable[str] = (),
    ) -> int:
        attributes = pb.PathAttributes(
            origin=ORIGIN_NAMES[origin],
            communities=list(communities),
            next_hop=next_hop,
            large_communities=list(large_communities),
        )
        if local_pref is not None:
            attributes.local_pref = local_pref
        if med is not None:
            attributes.med = med
        request = pb.AddPathsRequest(prefixes=list(prefixes), attributes=attributes)
        response = await self._call(self._stub.AddPaths, request)
        return int(response.added)

    async def delete_paths(self, prefixes: Iterable[str]) -> int:
        request = pb.DeletePathsRequest(prefixes=list(prefixes))
        response = await self._call(self._stub.DeletePaths, request)
        return int(response.deleted)

    async def rib(
        self,
        family: str | None = None,
        prefixes: Iterable[str] = (),
        *,
        longest_match: bool = False,
    ) -> list[pb.Path]:
        request = pb.GetRibRequest(
            family=FAMILY_NAMES[family], prefixes=list(prefixes), longest_match=longest_match
        )
        response = await self._call(self._stub.GetRib, request)
        return list(response.paths)

    async def neighbor_rib(
        self, address: str, direction: str = "in", family: str | None = None
    ) -> list[pb.Path]:
        request = pb.GetNeighborRibRequest(
            address=address,
            direction=pb.RIB_DIRECTION_OUT if direction == "out" else pb.RIB_DIRECTION_IN,
            family=FAMILY_NAMES[family],
        )
        response = await self._call(self._stub.GetNeighborRib, request)
        return list(response.paths)

    async def dump_rib(
        self, table: str = "loc", family: str | None = None, neighbor: str = ""
    ) -> AsyncIterator[bytes]:
        """The Loc-RIB (`table` "loc") or the Adj-RIBs-In ("in", of one `neighbor` or of
        all) as an MRT file (RFC 6396 TABLE_DUMP_V2), in chunks to write in turn."""
        request = pb.DumpRibRequest(
            table=pb.RIB_TABLE_ADJ_IN if table == "in" else pb.RIB_TABLE_LOC,
            family=FAMILY_NAMES[family],
            neighbor=neighbor,
        )
        with self._stream_errors():
            async with self._stub.DumpRib.open() as stream:
                await stream.send_message(request, end=True)
                async for chunk in stream:
                    yield chunk.data

    async def paths_sent(self, prefixes: Iterable[str] = ()) -> dict[str, list[str]]:
        """Prefix -> the neighbors a path of ours to it has been sent to (their current
        sessions): of `prefixes`, or of every path the speaker originates. The state that
        the events' `paths_sent` change."""
        request = pb.GetPathsSentRequest(prefixes=list(prefixes))
        response = await self._call(self._stub.GetPathsSent, request)
        return {path.prefix: list(path.peers) for path in response.paths}

    async def events(self, registered: asyncio.Event | None = None) -> AsyncIterator[pb.Event]:
        """Peer state and best path changes, and our own paths sent (`paths_sent`), until the
        caller stops iterating. `registered` is set once the speaker has subscribed this
        stream: a reading of its state made after that (neighbors, the RIB, `paths_sent()`)
        is older than every event that follows."""
        with self._stream_errors():
            async with self._stub.WatchEvents.open() as stream:
                await stream.send_message(pb.WatchEventsRequest(), end=True)
                await stream.recv_initial_metadata()
                if registered is not None:
                    registered.set()
                async for event in stream:
                    yield event
