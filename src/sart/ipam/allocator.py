"""Several named pools behind one door, with all-or-nothing requests.

A Service asks for addresses the way the original sart's annotations say: from named pools
(`sart.terassyi.net/addresspool: a,b`, one address from each, e.g. an IPv4 and an IPv6 pool),
as specific addresses (`sart.terassyi.net/loadBalancerIPs`), or from the auto-assign pool when
it names neither. A request either gets everything it asks for or changes nothing.
"""

from __future__ import annotations

import attrs
from netaddr import IPAddress

from sart.errors import IpamError, NotAllocated, OutOfRange
from sart.ipam.pool import Pool, parse_address


@attrs.frozen
class Request:
    """What to allocate: `addresses` if given, else one address from each of `pools`, else one
    from the auto-assign pool."""

    pools: tuple[str, ...] = ()
    addresses: tuple[IPAddress, ...] = ()


class Allocator:
    """Named pools; at most one of them is the auto-assign pool."""

    def __init__(self) -> None:
        self._pools: dict[str, Pool] = {}
        self.auto_assign: str | None = None

    def add_pool(self, name: str, pool: Pool, *, auto_assign: bool = False) -> None:
        if name in self._pools:
            raise IpamError(f"pool {name!r} exists already")
        for other_name, other in self._pools.items():
            if other.cidr.version == pool.cidr.version and (
                pool.cidr in other.cidr or other.cidr in pool.cidr
            ):
                raise IpamError(
                    f"pool {name!r} ({pool.cidr}) overlaps {other_name!r} ({other.cidr})"
                )
        if auto_assign and self.auto_assign is not None:
            raise IpamError(f"{self.auto_assign!r} is the auto-assign pool already")
        self._pools[name] = pool
        if auto_assign:
            self.auto_assign = name

    def remove_pool(self, name: str) -> Pool:
        pool = self.pool(name)
        if pool.used:
            raise IpamError(f"pool {name!r} still has {pool.used} addresses allocated")
        del self._pools[name]
        if self.auto_assign == name:
            self.auto_assign = None
        return pool

    def pool(self, name: str) -> Pool:
        try:
            return self._pools[name]
        except KeyError:
            raise IpamError(
                f"no pool named {name!r} (pools: {', '.join(self._pools) or 'none'})"
            ) from None

    def pool_of(self, address: IPAddress | str) -> str:
        """The name of the pool that holds the address."""
        ip = parse_address(address)
        for name, pool in self._pools.items():
            if ip.version == pool.cidr.version and ip in pool.cidr:
                return name
        raise OutOfRange(f"{ip} is in no pool")

    def allocate(self, request: Request) -> tuple[IPAddress, ...]:
        """The addresses the request asks for, all of them, or an IpamError and no change."""
        if request.addresses:
            steps = [(self.pool_of(a), a) for a in request.addresses]
        elif request.pools:
            steps = [(name, None) for name in request.pools]
        elif self.auto_assign is not None:
            steps = [(self.auto_assign, None)]
        else:
            raise IpamError("the request names no pool and there is no auto-assign pool")
        done: list[tuple[Pool, IPAddress]] = []
        try:
            for name, address in steps:
                pool = self.pool(name)
                done.append((pool, pool.allocate(address)))
        except IpamError:
            for pool, allocated in reversed(done):
                pool.release(allocated)
            raise
        return tuple(allocated for _, allocated in done)

    def release(self, addresses: tuple[IPAddress, ...]) -> None:
        """Release addresses; checks them all first, so an error changes nothing."""
        if len(set(addresses)) != len(addresses):
            raise NotAllocated(f"an address is released twice in {addresses}")
        pools = [self.pool(self.pool_of(a)) for a in addresses]
        for pool, address in zip(pools, addresses, strict=True):
            if address not in pool:
                pool.release(address)  # raises NotAllocated with the pool's words
        for pool, address in zip(pools, addresses, strict=True):
            pool.release(address)
