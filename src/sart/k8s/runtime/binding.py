"""`sartd agent --bind-addresses`: the LoadBalancer addresses this node announces, put on an
interface (`lo` by default) over rtnetlink, and taken off when they are withdrawn (adapter; the
decisions are `sart.k8s.reconcile.binding`'s).

Each address goes on as a host prefix (/32, /128) carrying IFA_PROTO `ADDRESS_PROTOCOL`, IPv4
ones also labelled ``<interface>:sart``: a restarted agent tells its addresses from the
interface's others by those alone, and removes the stale ones at its first pass. pyroute2's
`AsyncIPRoute` runs on the agent's own loop, as `sart.fib.kernel`'s does.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable
from typing import Any

from netaddr import IPNetwork
from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from sart.errors import SartError
from sart.k8s.reconcile.binding import (
    ADDRESS_PROTOCOL,
    BindingPlan,
    InterfaceAddress,
    address_label,
    plan_binding,
)
from sart.k8s.runtime.outcome import Backoff

log = logging.getLogger("sart.agent.binding")

DEFAULT_INTERFACE = "lo"
_FAMILIES = {4: socket.AF_INET, 6: socket.AF_INET6}


class BindingError(SartError):
    """The interface is not there, or the kernel refused an address change."""


def interface_address(message: Any) -> InterfaceAddress:
    """An address from an RTM_NEWADDR message as pyroute2 decodes it."""
    ip = message.get("IFA_LOCAL") or message.get("IFA_ADDRESS")
    return InterfaceAddress(
        IPNetwork(f"{ip}/{message['prefixlen']}"),
        message.get("IFA_PROTO") or 0,
        message.get("IFA_LABEL") or "",
    )


class AddressBinding:
    """Our addresses on one interface of this network namespace (or `netns`, for tests)."""

    def __init__(
        self,
        interface: str = DEFAULT_INTERFACE,
        *,
        protocol: int = ADDRESS_PROTOCOL,
        netns: str | None = None,
    ) -> None:
        self.interface = interface
        self.protocol = protocol
        self.netns = netns
        self.applied = 0  # passes that changed something (tests wait on these)
        self._ipr: AsyncIPRoute | None = None

    async def _netlink(self) -> AsyncIPRoute:
        if self._ipr is None:
            ipr = AsyncIPRoute(netns=self.netns) if self.netns else AsyncIPRoute()
            await ipr.setup_endpoint()
            self._ipr = ipr
        return self._ipr

    def close(self) -> None:
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None

    async def _index(self, ipr: AsyncIPRoute) -> int:
        found = await ipr.link_lookup(ifname=self.interface)
        if not found:
            raise BindingError(f"interface {self.interface!r} is not there")
        index: int = found[0]
        return index

    async def present(self) -> list[InterfaceAddress]:
        ipr = await self._netlink()
        index = await self._index(ipr)
        found = []
        for family in _FAMILIES.values():
            async for message in await ipr.addr("dump", family=family, index=index):
                if message.get("index") == index:
                    found.append(interface_address(message))
        return found

    async def apply(self, want: frozenset[IPNetwork]) -> BindingPlan:
        """Make our addresses on the interface exactly `want`; what was done."""
        ipr = await self._netlink()
        index = await self._index(ipr)
        todo = plan_binding(want, await self.present(), self.interface, self.protocol)
        for address in todo.add:
            options: dict[str, Any] = {"proto": self.protocol}
            label = address_label(self.interface)
            if address.version == 4 and label is not None:
                options["label"] = label
            await self._change(ipr, "add", index, address, options, ignore=errno.EEXIST)
        for address in todo.remove:
            await self._change(ipr, "del", index, address, {}, ignore=errno.EADDRNOTAVAIL)
        if todo:
            self.applied += 1
            log.info(
                "LoadBalancer addresses bound",
                extra={"interface": self.interface, "added": [str(a) for a in todo.add],
                       "removed": [str(a) for a in todo.remove]},
            )  # fmt: skip
        return todo

    async def _change(
        self,
        ipr: AsyncIPRoute,
        action: str,
        index: int,
        address: IPNetwork,
        options: dict[str, Any],
        *,
        ignore: int,
    ) -> None:
        try:
            await ipr.addr(
                action,
                index=index,
                address=str(address.ip),
                prefixlen=address.prefixlen,
                family=_FAMILIES[address.version],
                **options,
            )
        except NetlinkError as error:
            if error.code != ignore:
                what = f"{action} {address} on {self.interface}"
                raise BindingError(
                    f"cannot {what}: {error.args[-1]} (errno {error.code})"
                ) from None

    async def follow(
        self, wanted: Callable[[], frozenset[IPNetwork] | None], wake: asyncio.Event
    ) -> None:
        """Apply `wanted()` each time `wake` is set (None: not known yet, wait); a failure is
        logged and tried again with backoff (0.2 s doubling to 10 s)."""
        backoff = Backoff(base=0.2, cap=10.0)
        try:
            while True:
                await wake.wait()
                wake.clear()
                want = wanted()
                if want is None:
                    continue
                try:
                    await self.apply(want)
                except (BindingError, NetlinkError, OSError) as error:
                    delay = backoff.next()
                    log.error(
                        "LoadBalancer addresses not bound, retrying",
                        extra={"interface": self.interface, "error": str(error),
                               "retry_in": round(delay, 2)},
                    )  # fmt: skip
                    self.close()
                    await asyncio.sleep(delay)
                    wake.set()
                else:
                    backoff.reset()
        finally:
            self.close()
