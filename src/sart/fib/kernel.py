"""Our routes in the kernel over rtnetlink (adapter): list, replace, delete.

"Ours" is one routing table and one protocol number (`ip route show table T proto P`): that is
how `sartd fib` finds, after a restart, what it installed before, and it never touches a route
of another protocol (a delete names our protocol, and the kernel matches it).

pyroute2's `AsyncIPRoute` runs on the daemon's own event loop: no thread, no second loop (the
synchronous `IPRoute` of pyroute2 0.9 runs an event loop of its own, so it could only be used
from a worker thread), and a dump of a large table arrives as an async iterator instead of one
list. A netlink call answers in microseconds; waiting for it on the loop costs less than a
thread hop per route.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Self

from netaddr import IPAddress, IPNetwork
from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from sart.errors import SartError
from sart.fib.plan import Route

_ESRCH = 3  # what the kernel answers a delete of a route that is not there
_FAMILIES = {4: socket.AF_INET, 6: socket.AF_INET6}


class KernelError(SartError):
    """The kernel refused a route change (`code` is its errno)."""

    def __init__(self, route: Route, action: str, code: int, reason: str) -> None:
        super().__init__(f"cannot {action} {route}: {reason} (errno {code})")
        self.route = route
        self.action = action
        self.code = code


def _route_attrs(route: Route) -> dict[str, Any]:
    return {
        "dst": str(route.destination),
        "family": _FAMILIES[route.destination.version],
        "table": route.table,
        "proto": route.protocol,
        "priority": route.metric,
    }


def _nexthop_gateway(hop: dict[str, Any]) -> str | None:
    for name, value in hop.get("attrs", ()):
        if name == "RTA_GATEWAY":
            return str(value)
    return None


def parse_route(message: Any) -> Route:
    """A route from an RTM_NEWROUTE message as pyroute2 decodes it."""
    version = 6 if message.get("family") == socket.AF_INET6 else 4
    length = message.get("dst_len") or 0
    dst = message.get("dst") or ("::" if version == 6 else "0.0.0.0")
    gateways: list[str] = []
    if message.get("gateway"):
        gateways.append(message.get("gateway"))
    for hop in message.get("multipath") or ():
        gateway = _nexthop_gateway(hop)
        if gateway is not None:
            gateways.append(gateway)
    return Route(
        destination=IPNetwork(f"{dst}/{length}"),
        gateways=tuple(IPAddress(g) for g in gateways),
        table=message.get("table"),
        protocol=message.get("proto"),
        metric=message.get("priority") or 0,
    )


class KernelRoutes:
    """The routes of one table and protocol, in this network namespace (or `netns`, a named
    one, for tests). Use as an async context manager, or `open()` and `close()`."""

    def __init__(self, table: int, protocol: int, *, netns: str | None = None) -> None:
        self.table = table
        self.protocol = protocol
        self.netns = netns
        self._ipr: AsyncIPRoute | None = None

    async def open(self) -> None:
        if self._ipr is None:
            ipr = AsyncIPRoute(netns=self.netns) if self.netns else AsyncIPRoute()
            await ipr.setup_endpoint()
            self._ipr = ipr

    def close(self) -> None:
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def _netlink(self) -> AsyncIPRoute:
        if self._ipr is None:
            raise RuntimeError("KernelRoutes is not open")
        return self._ipr

    async def routes(self, versions: Iterable[int] = (4, 6)) -> list[Route]:
        """Every route of our table and protocol, IPv4 then IPv6."""
        found = []
        for version in versions:
            dump = await self._netlink.route(
                "dump", family=_FAMILIES[version], table=self.table, proto=self.protocol
            )
            async for message in dump:
                if message.get("table") == self.table and message.get("proto") == self.protocol:
                    found.append(parse_route(message))
        return found

    async def replace(self, route: Route) -> None:
        """Install the route, or change the one at its destination and metric (idempotent)."""
        attrs = _route_attrs(route)
        if route.multipath:
            attrs["multipath"] = [{"gateway": str(g)} for g in route.gateways]
        elif route.gateways:
            attrs["gateway"] = str(route.gateways[0])
        try:
            await self._netlink.route("replace", **attrs)
        except NetlinkError as error:
            raise KernelError(route, "replace", error.code, str(error.args[-1])) from None

    async def delete(self, route: Route) -> None:
        """Remove the route of our protocol at its destination and metric; one that is
        already gone is not an error."""
        try:
            await self._netlink.route("del", **_route_attrs(route))
        except NetlinkError as error:
            if error.code == _ESRCH:
                return
            raise KernelError(route, "delete", error.code, str(error.args[-1])) from None
