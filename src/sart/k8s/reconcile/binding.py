"""Which LoadBalancer addresses the node binds to an interface (`sartd agent
--bind-addresses`), and how to tell ours from everyone else's: pure.

In: the node's name, the BGPAdvertisements the agent holds and the addresses the interface has
(`InterfaceAddress`, as netlink shows them). Out: `plan_binding` gives the addresses to add and
the ones to remove.

- Bound: every ``type: service`` advertisement listing this node (or no node) whose prefix is
  one address (/32 or /128), i.e. a LoadBalancer address this node announces. A pool's
  covering prefix (`aggregationLength`) is not one address and is not bound.
- Ours: an address carrying `ADDRESS_PROTOCOL` in IFA_PROTO (Linux 6.1 and later keep a
  protocol per address, both families, as routes have), or an IPv4 address labelled
  ``<interface>:sart`` (the label is what `ip addr` shows, and what an older kernel keeps).
  A restarted agent finds what it bound from the kernel alone: no file to drift from it.
- Never touched: an address that is not ours (the interface's own, kube-proxy's, an operator's),
  even one we want: it is there already and stays its owner's.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs
from netaddr import IPNetwork

from sart.k8s.models import AddressType, BGPAdvertisement

ADDRESS_PROTOCOL = 115  # IFA_PROTO of the addresses we bind ('s'; sart's pod routes' too)
LABEL_SUFFIX = ":sart"
IFNAME_MAX = 15  # IFNAMSIZ - 1, also the longest IPv4 address label


def address_label(interface: str) -> str | None:
    """The IPv4 label our addresses get on `interface` (the kernel wants the interface's
    name in front), or None when ``<name>:sart`` would be too long."""
    label = interface + LABEL_SUFFIX
    return label if len(label) <= IFNAME_MAX else None


@attrs.frozen
class InterfaceAddress:
    """An address as the interface holds it: the host prefix, its IFA_PROTO (0 when none)
    and its label (IPv4 only; "" otherwise)."""

    address: IPNetwork
    protocol: int = 0
    label: str = ""


def is_ours(found: InterfaceAddress, interface: str, protocol: int = ADDRESS_PROTOCOL) -> bool:
    if found.protocol == protocol:
        return True
    label = address_label(interface)
    return found.address.version == 4 and label is not None and found.label == label


def bound_addresses(node: str, advertisements: Iterable[BGPAdvertisement]) -> frozenset[IPNetwork]:
    """The LoadBalancer addresses this node announces, as host prefixes."""
    found = set()
    for advertisement in advertisements:
        spec = advertisement.spec
        if spec.type is not AddressType.SERVICE:
            continue
        if spec.nodes is not None and node not in spec.nodes:
            continue
        cidr = IPNetwork(spec.cidr)
        if cidr.prefixlen == (32 if cidr.version == 4 else 128):
            found.add(cidr.cidr)
    return frozenset(found)


@attrs.frozen
class BindingPlan:
    add: tuple[IPNetwork, ...] = ()
    remove: tuple[IPNetwork, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.add or self.remove)


def _order(addresses: Iterable[IPNetwork]) -> tuple[IPNetwork, ...]:
    return tuple(sorted(addresses, key=lambda a: (a.version, a.value)))


def plan_binding(
    want: Iterable[IPNetwork],
    present: Iterable[InterfaceAddress],
    interface: str,
    protocol: int = ADDRESS_PROTOCOL,
) -> BindingPlan:
    """What to add and remove so that our addresses on `interface` are exactly `want`
    (less those someone else holds there already)."""
    wanted = {IPNetwork(a).cidr for a in want}
    ours: set[IPNetwork] = set()
    theirs: set[IPNetwork] = set()
    for found in present:
        (ours if is_ours(found, interface, protocol) else theirs).add(found.address.cidr)
    return BindingPlan(add=_order(wanted - ours - theirs), remove=_order(ours - wanted))
