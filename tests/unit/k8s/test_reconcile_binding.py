"""sart.k8s.reconcile.binding: which LoadBalancer addresses the agent binds, and which of an
interface's addresses it may remove (only its own), on plain values."""

from __future__ import annotations

import pytest
from netaddr import IPNetwork

from sart.k8s.models import (
    AddressType,
    BGPAdvertisement,
    BGPAdvertisementSpec,
    ObjectMeta,
    Protocol,
)
from sart.k8s.reconcile.binding import (
    ADDRESS_PROTOCOL,
    BindingPlan,
    InterfaceAddress,
    address_label,
    bound_addresses,
    is_ours,
    plan_binding,
)

NODE = "node-a"


def advertisement(
    cidr: str,
    nodes: tuple[str, ...] | None = (NODE,),
    type_: AddressType = AddressType.SERVICE,
) -> BGPAdvertisement:
    network = IPNetwork(cidr)
    return BGPAdvertisement(
        metadata=ObjectMeta(name=cidr.replace("/", "-").replace(":", "-"), namespace="default"),
        spec=BGPAdvertisementSpec(
            cidr=network,
            type=type_,
            protocol=Protocol.IPV4 if network.version == 4 else Protocol.IPV6,
            nodes=nodes,
        ),
    )


def nets(*cidrs: str) -> tuple[IPNetwork, ...]:
    return tuple(IPNetwork(c) for c in cidrs)


def test_bound_are_the_service_addresses_this_node_announces() -> None:
    found = bound_addresses(
        NODE,
        [
            advertisement("10.0.1.1/32"),
            advertisement("fd00:100::1/128"),
            advertisement("10.0.1.2/32", nodes=None),  # every node
            advertisement("10.0.1.3/32", nodes=("node-b",)),  # another node's
            advertisement("10.0.2.0/28"),  # a pool's covering prefix: not one address
            advertisement("10.244.0.0/32", type_=AddressType.POD),  # a pod block
        ],
    )
    assert found == frozenset(nets("10.0.1.1/32", "fd00:100::1/128", "10.0.1.2/32"))


def test_ours_by_protocol_either_family_or_by_ipv4_label() -> None:
    assert is_ours(InterfaceAddress(IPNetwork("fd00::1/128"), ADDRESS_PROTOCOL), "lo")
    assert is_ours(InterfaceAddress(IPNetwork("10.0.1.1/32"), 0, "lo:sart"), "lo")
    assert not is_ours(InterfaceAddress(IPNetwork("10.0.1.1/32"), 0, "lo"), "lo")
    assert not is_ours(InterfaceAddress(IPNetwork("::1/128"), 1), "lo")  # the kernel's (lo)
    assert not is_ours(InterfaceAddress(IPNetwork("10.0.1.1/32"), 0, "eth0:sart"), "lo")


def test_label_fits_the_kernel_limit() -> None:
    assert address_label("lo") == "lo:sart"
    assert address_label("kube-ipvs0") == "kube-ipvs0:sart"
    assert address_label("a-long-ifname") is None


LO = (
    InterfaceAddress(IPNetwork("127.0.0.1/8"), 0, "lo"),
    InterfaceAddress(IPNetwork("::1/128"), 1),
)


@pytest.mark.parametrize(
    ("want", "present", "expected"),
    [
        pytest.param(
            nets("10.0.1.1/32", "fd00:100::1/128"),
            LO,
            BindingPlan(add=nets("10.0.1.1/32", "fd00:100::1/128")),
            id="first-start-adds-both-families",
        ),
        pytest.param(
            nets("10.0.1.1/32"),
            (*LO, InterfaceAddress(IPNetwork("10.0.1.1/32"), ADDRESS_PROTOCOL, "lo:sart")),
            BindingPlan(),
            id="in-place-nothing-to-do",
        ),
        pytest.param(
            (),
            (
                *LO,
                InterfaceAddress(IPNetwork("10.0.1.1/32"), ADDRESS_PROTOCOL, "lo:sart"),
                InterfaceAddress(IPNetwork("fd00:100::1/128"), ADDRESS_PROTOCOL),
            ),
            BindingPlan(remove=nets("10.0.1.1/32", "fd00:100::1/128")),
            id="service-deleted-removes-ours",
        ),
        pytest.param(
            nets("10.0.1.2/32"),
            (
                *LO,
                InterfaceAddress(IPNetwork("10.0.1.9/32"), 0, "lo:sart"),  # older kernel: label
                InterfaceAddress(IPNetwork("fd00:100::9/128"), ADDRESS_PROTOCOL),
            ),
            BindingPlan(add=nets("10.0.1.2/32"), remove=nets("10.0.1.9/32", "fd00:100::9/128")),
            id="restart-removes-stale-adds-new",
        ),
        pytest.param(
            nets("10.0.1.1/32", "fd00:100::1/128"),
            (
                *LO,
                InterfaceAddress(IPNetwork("10.0.1.1/32"), 0, "lo"),  # an operator's
                InterfaceAddress(IPNetwork("10.0.1.5/32"), 0, "lo"),  # also theirs
                InterfaceAddress(IPNetwork("fd00:100::1/128"), 0),
            ),
            BindingPlan(),
            id="others-addresses-never-added-over-nor-removed",
        ),
    ],
)
def test_plan_binding(
    want: tuple[IPNetwork, ...], present: tuple[InterfaceAddress, ...], expected: BindingPlan
) -> None:
    assert plan_binding(want, present, "lo") == expected


def test_plan_is_idempotent_once_applied() -> None:
    want = nets("10.0.1.1/32", "fd00:100::1/128")
    first = plan_binding(want, LO, "lo")
    applied = (
        *LO,
        *(
            InterfaceAddress(a, ADDRESS_PROTOCOL, "lo:sart" if a.version == 4 else "")
            for a in first.add
        ),
    )
    assert not plan_binding(want, applied, "lo")
