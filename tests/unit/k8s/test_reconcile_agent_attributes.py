"""The agent gives the speaker each advertisement's path attributes (spec.attrs)."""

from __future__ import annotations

from netaddr import IPNetwork

from sart.k8s.attributes import Attributes
from sart.k8s.models import (
    AddressPool,
    AddressPoolSpec,
    AddressType,
    BGPAdvertisement,
    BGPAdvertisementSpec,
    ObjectMeta,
    Protocol,
)
from sart.k8s.reconcile.agent import (
    AgentObserved,
    SpeakerView,
    cluster_shaped,
    plan,
    wanted_attributes,
)

NODE = "n1"
TAGS = ("community=65000:100", "large-community=65000:1:2", "med=10")


def advertisement(cidr: str, attrs: tuple[str, ...] = (), name: str = "") -> BGPAdvertisement:
    return BGPAdvertisement(
        metadata=ObjectMeta(name=name or cidr.replace("/", "-"), namespace="default"),
        spec=BGPAdvertisementSpec(
            cidr=IPNetwork(cidr),
            type=AddressType.SERVICE,
            protocol=Protocol.IPV4,
            attributes=attrs or None,
            nodes=(NODE,),
        ),
    )


def observe(view: SpeakerView, *advertisements: BGPAdvertisement) -> AgentObserved:
    return AgentObserved(node=NODE, node_bgp=None, advertisements=advertisements, speaker=view)


def speaker(paths: dict[str, Attributes]) -> SpeakerView:
    return SpeakerView(
        asn=65010, router_id="10.255.0.1", local_paths=frozenset(paths), path_attributes=paths
    )


def test_new_paths_carry_their_attributes() -> None:
    todo = plan(
        observe(speaker({}), advertisement("10.0.1.5/32", TAGS), advertisement("10.0.1.6/32"))
    )
    assert todo.add_paths == ("10.0.1.5/32", "10.0.1.6/32")
    assert todo.path_attributes == {"10.0.1.5/32": Attributes.from_attrs(TAGS)}


def test_a_path_held_with_other_attributes_is_added_again_and_one_as_wanted_is_not() -> None:
    wanted = Attributes.from_attrs(TAGS)
    view = speaker({"10.0.1.5/32": wanted, "10.0.1.6/32": wanted, "10.0.1.7/32": Attributes()})
    todo = plan(
        observe(
            view,
            advertisement("10.0.1.5/32", TAGS),  # as held: nothing to do
            advertisement("10.0.1.6/32", ("community=65000:100",)),  # changed
            advertisement("10.0.1.7/32", ("local-pref=50",)),  # attributes added
        )
    )
    assert todo.add_paths == ("10.0.1.6/32", "10.0.1.7/32") and todo.delete_paths == ()
    assert todo.path_attributes["10.0.1.7/32"] == Attributes(local_pref=50)
    # attributes removed: added again with none
    bare = plan(observe(speaker({"10.0.1.5/32": wanted}), advertisement("10.0.1.5/32")))
    assert bare.add_paths == ("10.0.1.5/32",) and bare.path_attributes == {}
    assert not plan(observe(speaker({"10.0.1.5/32": Attributes()}), advertisement("10.0.1.5/32")))


def test_two_advertisements_of_one_prefix_merge() -> None:
    found = wanted_attributes(
        NODE,
        [
            advertisement("10.0.1.5/32", ("community=65000:1", "med=1"), name="a"),
            advertisement("10.0.1.5/32", ("community=65000:2", "med=2"), name="b"),
        ],
    )
    assert found["10.0.1.5/32"] == Attributes.of(communities=["65000:1", "65000:2"], med=2)


def test_covering_prefixes_of_an_aggregating_pool_are_the_cluster_s() -> None:
    spec = AddressPoolSpec(cidr=IPNetwork("10.0.5.0/24"), type=AddressType.SERVICE,
                           aggregation_length=28)  # fmt: skip
    pools = [AddressPool(metadata=ObjectMeta(name="agg"), spec=spec)]
    assert cluster_shaped("10.0.5.16/28", pools) and cluster_shaped("10.0.5.7/32", pools)
    assert not cluster_shaped("10.0.5.0/26", pools)
