"""The node agent's plan and statuses on plain model values: no cluster, no speaker."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from netaddr import IPAddress, IPNetwork

from sart.api import convert
from sart.api._gen.sart.speaker.v1 import speaker_pb2 as pb
from sart.bgp.config import password_digest
from sart.k8s.models import (
    AddressPool,
    AddressPoolSpec,
    AddressType,
    Bfd,
    BGPAdvertisement,
    BGPAdvertisementSpec,
    BGPPeer,
    BGPPeerConditionStatus,
    BGPPeerSpec,
    ConditionStatus,
    NodeBGP,
    NodeBGPConditionReason,
    NodeBGPConditionStatus,
    NodeBGPSpec,
    ObjectMeta,
    Protocol,
    SecretKeyRef,
    SpeakerConfig,
)
from sart.k8s.reconcile.agent import (
    AgentObserved,
    NeighborSettings,
    PeerEvent,
    SpeakerView,
    cluster_shaped,
    find_condition,
    neighbor_settings,
    node_condition,
    plan,
    record_configured,
    record_node_condition,
    record_state,
    state_event,
    wanted_paths,
)
from sart.k8s.runtime.agent import neighbor_view

NODE = "n1"
SPEAKER = SpeakerConfig(path="unix:/run/sart/bgp.sock")
State = BGPPeerConditionStatus


def peer(name: str, addr: str, asn: int = 65000, node: str = NODE, **spec: Any) -> BGPPeer:
    meta = ObjectMeta(name=name, uid=f"uid-{name}", generation=1,
                      creation_timestamp=spec.pop("created", "2026-01-01T00:00:00Z"),
                      deletion_timestamp=spec.pop("deleting", None))  # fmt: skip
    return BGPPeer(
        metadata=meta,
        spec=BGPPeerSpec(asn=asn, addr=IPAddress(addr), node_bgp_ref=node, speaker=SPEAKER, **spec),
    )


def node_bgp(asn: int = 65010, router_id: str = "10.255.0.1", **speaker: Any) -> NodeBGP:
    return NodeBGP(
        metadata=ObjectMeta(name=NODE, uid="uid-node", generation=1),
        spec=NodeBGPSpec(
            asn=asn, router_id=IPAddress(router_id), speaker=attrs.evolve(SPEAKER, **speaker)
        ),
    )


def advertisement(cidr: str, nodes: tuple[str, ...] | None = (NODE,)) -> BGPAdvertisement:
    network = IPNetwork(cidr)
    return BGPAdvertisement(
        metadata=ObjectMeta(name=cidr.replace("/", "-"), namespace="default"),
        spec=BGPAdvertisementSpec(
            cidr=network,
            type=AddressType.SERVICE,
            protocol=Protocol.IPV4 if network.version == 4 else Protocol.IPV6,
            nodes=nodes,
        ),
    )


def pool(cidr: str, type_: AddressType = AddressType.SERVICE, block: int | None = None) -> Any:
    return AddressPool(
        metadata=ObjectMeta(name=cidr),
        spec=AddressPoolSpec(cidr=IPNetwork(cidr), type=type_, block_size=block),
    )


def ours(address: str, bgp_peer: str, asn: int = 65000, **settings: Any) -> NeighborSettings:
    """A neighbor the agent added for a BGPPeer, as the speaker reports it."""
    return NeighborSettings(address=address, asn=asn, name=f"bgppeer/{bgp_peer}", **settings)


def speaker(*neighbors: NeighborSettings, paths: tuple[str, ...] = (), **info: Any) -> SpeakerView:
    info = {"asn": 65010, "router_id": "10.255.0.1", **info}
    return SpeakerView(neighbors=neighbors, local_paths=frozenset(paths), **info)


def observe(view: SpeakerView, *peers: BGPPeer, **rest: Any) -> AgentObserved:
    return AgentObserved(node=NODE, node_bgp=rest.pop("node_bgp", node_bgp()), peers=peers,
                         speaker=view, **rest)  # fmt: skip


# --- the speaker's identity -----------------------------------------------------------------


def test_the_node_bgp_gives_the_speaker_its_as_router_id_and_multipath() -> None:
    todo = plan(observe(speaker(asn=65099, router_id="10.9.9.9"),
                        node_bgp=node_bgp(multipath=True)))  # fmt: skip
    assert (todo.set_asn, todo.set_router_id, todo.set_multipath) == (65010, "10.255.0.1", True)
    assert todo.delete_neighbors == todo.add_neighbors == ()  # no neighbor stood in the way
    # Already so: nothing to call.
    done = speaker(multipath=True)
    assert not plan(observe(done, node_bgp=node_bgp(multipath=True)))
    # multipath absent from the NodeBGP: the speaker's own setting is left alone
    assert plan(observe(speaker(multipath=True))).set_multipath is None


def test_without_a_node_bgp_the_identity_is_left_alone() -> None:
    todo = plan(observe(speaker(asn=65099), peer("a", "10.0.0.1"), node_bgp=None))
    assert (todo.set_asn, todo.set_router_id) == (None, None)
    assert [n.address for n in todo.add_neighbors] == ["10.0.0.1"]  # peers still served


def test_a_new_identity_removes_the_neighbors_sets_it_and_adds_them_back() -> None:
    """The speaker refuses SetAs while it has neighbors (FAILED_PRECONDITION): remove every
    one, set, add them back, the file's with the settings the speaker reported."""
    file_neighbor = NeighborSettings(address="10.0.0.9", asn=65009, name="tor", passive=True,
                                     ttl=2, families=("ipv4",), graceful_restart=False)  # fmt: skip
    view = speaker(ours("10.0.0.1", "a"), file_neighbor, asn=65099)
    todo = plan(observe(view, peer("a", "10.0.0.1")))
    assert todo.delete_neighbors == ("10.0.0.1", "10.0.0.9")
    assert todo.set_asn == 65010 and todo.set_router_id is None
    assert todo.add_neighbors == (ours("10.0.0.1", "a"), file_neighbor)
    assert todo.kept_neighbors == ("10.0.0.9",)


def test_a_file_neighbor_removed_for_a_new_identity_is_put_back_after_a_failure() -> None:
    """The agent removed it, then a call failed: the next pass still puts it back."""
    tor = NeighborSettings(address="10.0.0.9", asn=65009, name="tor")
    todo = plan(observe(speaker(), removed=(tor,)))
    assert todo.add_neighbors == (tor,) and todo.delete_neighbors == ()
    assert todo.kept_neighbors == ("10.0.0.9",)
    # Back already, or its address taken by a BGPPeer: nothing to put back.
    assert not plan(observe(speaker(tor), removed=(tor,)))
    taken = plan(observe(speaker(), peer("t", "10.0.0.9"), removed=(tor,)))
    assert taken.add_neighbors == (ours("10.0.0.9", "t"),)


def test_a_file_neighbor_with_a_password_blocks_a_new_identity() -> None:
    """Its password never comes back from the speaker: it could not be added again."""
    locked = NeighborSettings(address="10.0.0.9", asn=65009, name="tor", has_password=True)
    todo = plan(observe(speaker(locked, asn=65099), peer("a", "10.0.0.1")))
    assert todo.set_asn is None and todo.delete_neighbors == ()
    assert "10.0.0.9" in todo.identity_blocked and "TCP-MD5" in todo.identity_blocked
    assert [n.address for n in todo.add_neighbors] == ["10.0.0.1"]


# --- peers ------------------------------------------------------------------------------------


def test_every_bgppeer_field_the_speaker_takes_reaches_it() -> None:
    settings, problems = neighbor_settings(
        peer("a", "10.0.0.1", hold_time=9, capabilities=("ipv6-unicast", "route-refresh"))
    )
    assert settings == NeighborSettings(
        address="10.0.0.1", asn=65000, name="bgppeer/a", hold_time=9, families=("ipv6",),
        graceful_restart=False,  # a list given is the list: graceful-restart not in it
    )  # fmt: skip
    assert problems == []
    assert settings.options() == {
        "name": "bgppeer/a", "port": 179, "passive": False, "ttl": 0, "local_address": "",
        "families": ["ipv6"], "graceful_restart": False, "admin_down": False, "next_hops": [],
        "hold_time": 9,
    }  # fmt: skip
    # No capabilities: the speaker's defaults (both families, graceful restart honoured).
    plain, _ = neighbor_settings(peer("b", "10.0.0.2"))
    assert (plain.families, plain.graceful_restart, plain.hold_time) == (
        ("ipv4", "ipv6"), True, None)  # fmt: skip
    assert "hold_time" not in plain.options()


@pytest.mark.parametrize(
    ("hold", "keepalive", "expected", "problem"),
    [
        (None, 10, (None, 10), None),  # alone: the speaker's hold time (it checks it fits)
        (90, 10, (90, 10), None),  # its own setting, not hold / 3
        (9, 3, (9, 3), None),
        (9, 9, (9, None), "KeepaliveTimeNotUsed"),  # not below the hold time (RFC 4271 4.4)
        (9, 20, (9, None), "KeepaliveTimeNotUsed"),
        (0, 10, (0, None), "KeepaliveTimeNotUsed"),  # hold 0: no keepalives at all
        (90, 0, (90, None), "KeepaliveTimeNotUsed"),  # 0 is no interval
        (None, None, (None, None), None),
    ],
)
def test_keepalive_time_is_its_own_setting(
    hold: int | None,
    keepalive: int | None,
    expected: tuple[int | None, int | None],
    problem: str | None,
) -> None:
    settings, problems = neighbor_settings(
        peer("a", "10.0.0.1", hold_time=hold, keepalive_time=keepalive)
    )
    assert (settings.hold_time, settings.keepalive_time) == expected
    assert [p.reason for p in problems] == ([problem] if problem else [])
    options = settings.options()
    assert options.get("keepalive_time") == expected[1]
    assert ("keepalive_time" in options) == (expected[1] is not None)


def test_passive_and_ttl_reach_the_speaker() -> None:
    settings, problems = neighbor_settings(peer("a", "10.0.0.1", passive=True, ttl=3))
    assert (settings.passive, settings.ttl, problems) == (True, 3, [])
    assert (settings.options()["passive"], settings.options()["ttl"]) == (True, 3)
    plain, _ = neighbor_settings(peer("b", "10.0.0.2"))
    assert (plain.passive, plain.ttl) == (False, 0)  # 0: the speaker's 1 (eBGP) or 255 (iBGP)
    # Changed on the BGPPeer: the neighbor is added again with it.
    view = speaker(ours("10.0.0.1", "a"))
    todo = plan(observe(view, peer("a", "10.0.0.1", passive=True, ttl=3)))
    assert todo.delete_neighbors == ("10.0.0.1",)
    assert todo.add_neighbors == (ours("10.0.0.1", "a", passive=True, ttl=3),)
    assert not plan(observe(speaker(ours("10.0.0.1", "a", passive=True, ttl=3)), *[
        peer("a", "10.0.0.1", passive=True, ttl=3)]))  # fmt: skip


def test_bfd_reaches_the_speaker_and_a_change_re_adds_the_neighbor() -> None:
    bfd = Bfd(min_rx_ms=100, min_tx_ms=150, multiplier=4)
    settings, problems = neighbor_settings(peer("a", "10.0.0.1", bfd=bfd))
    assert (settings.bfd, problems) == ((100, 150, 4), [])
    assert settings.options()["bfd"] == {"min_rx_ms": 100, "min_tx_ms": 150, "multiplier": 4}
    plain, _ = neighbor_settings(peer("b", "10.0.0.2"))
    assert plain.bfd is None and "bfd" not in plain.options()
    # The speaker holds it as asked: nothing to do (no delete-and-add loop).
    assert not plan(observe(speaker(ours("10.0.0.1", "a", bfd=(100, 150, 4))),
                            peer("a", "10.0.0.1", bfd=bfd)))  # fmt: skip
    # Changed, added or removed on the BGPPeer: the neighbor is added again with it.
    for held in (None, (100, 150, 3)):
        todo = plan(observe(speaker(ours("10.0.0.1", "a", bfd=held)),
                            peer("a", "10.0.0.1", bfd=bfd)))  # fmt: skip
        assert todo.delete_neighbors == ("10.0.0.1",)
        assert todo.add_neighbors == (ours("10.0.0.1", "a", bfd=(100, 150, 4)),)
    todo = plan(observe(speaker(ours("10.0.0.1", "a", bfd=(100, 150, 4))),
                        peer("a", "10.0.0.1")))  # fmt: skip
    assert todo.add_neighbors == (ours("10.0.0.1", "a"),)


@pytest.mark.parametrize("bfd", [None, Bfd(), Bfd(min_rx_ms=50, min_tx_ms=20, multiplier=255)])
def test_bfd_as_the_speaker_reports_it_back_is_the_same_session(bfd: Bfd | None) -> None:
    """Through the API conversion both ways and neighbor_view, as the runtime reads it."""
    settings, _ = neighbor_settings(peer("a", "10.0.0.1", bfd=bfd))
    options = settings.options()
    families = [convert.FAMILY_OF_VERSION[4 if f == "ipv4" else 6] for f in options.pop("families")]
    message = pb.Neighbor(address=settings.address, asn=settings.asn, families=families, **options)
    config = convert.neighbor_config(message)
    assert (config.bfd is None) == (bfd is None)
    listed = neighbor_view(pb.NeighborState(config=convert.neighbor_message(config)))
    assert listed.bfd == settings.bfd
    assert listed.same_session(settings)


SECRET = SecretKeyRef(name="bgp-auth")
SECRETS = {"bgp-auth": {"password": b"s3cret", "other": b"0ther"}}


def test_the_password_comes_from_the_secret_and_is_never_shown() -> None:
    settings, problems = neighbor_settings(peer("a", "10.0.0.1", auth_secret_ref=SECRET), SECRETS)
    assert (settings.password, problems) == ("s3cret", [])
    assert settings.options()["password"] == "s3cret"
    assert "s3cret" not in repr(settings)  # so never in a log
    observed = observe(speaker(), peer("a", "10.0.0.1", auth_secret_ref=SECRET), secrets=SECRETS)
    assert "s3cret" not in repr(observed) and "s3cret" not in repr(plan(observed))
    other, _ = neighbor_settings(
        peer("a", "10.0.0.1", auth_secret_ref=SecretKeyRef(name="bgp-auth", key="other")), SECRETS
    )
    assert other.password == "0ther"


@pytest.mark.parametrize(
    ("ref", "secrets", "says"),
    [
        (SecretKeyRef(name="gone"), SECRETS, "Secret 'gone' not found"),
        (SecretKeyRef(name="bgp-auth", key="nope"), SECRETS, "has no key 'nope'"),
        (SECRET, {"bgp-auth": {"password": b""}}, "1-80 bytes"),
        (SECRET, {"bgp-auth": {"password": b"x" * 81}}, "1-80 bytes"),
        (SECRET, {"bgp-auth": {"password": b"\xff\xfe"}}, "not UTF-8"),
    ],
)
def test_a_secret_that_cannot_be_used_is_a_problem(
    ref: SecretKeyRef, secrets: dict[str, dict[str, bytes]], says: str
) -> None:
    settings, problems = neighbor_settings(peer("a", "10.0.0.1", auth_secret_ref=ref), secrets)
    assert settings.password == ""
    assert [(p.peer, p.reason) for p in problems] == [("a", "AuthSecretNotUsable")]
    assert says in problems[0].message
    # Never a session without the password asked for: not added ...
    todo = plan(observe(speaker(), peer("a", "10.0.0.1", auth_secret_ref=ref), secrets=secrets))
    assert todo.add_neighbors == todo.delete_neighbors == ()
    assert [(p.peer, p.reason) for p in todo.unconfigured] == [("a", "AuthSecretNotUsable")]
    # ... and one the speaker has is left as it is (its session goes on with its password).
    held = ours("10.0.0.1", "a", has_password=True, password_digest=password_digest("old"))
    todo = plan(observe(speaker(held), peer("a", "10.0.0.1", auth_secret_ref=ref), secrets=secrets))
    assert todo.add_neighbors == todo.delete_neighbors == ()
    # That neighbor cannot be added again: a new AS waits (said why).
    todo = plan(observe(speaker(held, asn=65099), peer("a", "10.0.0.1", auth_secret_ref=ref),
                        secrets=secrets))  # fmt: skip
    assert todo.set_asn is None and "10.0.0.1" in todo.identity_blocked


def test_the_speaker_s_password_is_compared_by_its_digest() -> None:
    """The speaker never returns the password: its salted digest tells whether it holds the
    one the Secret has, so an agent (even a restarted one) re-adds only on a change."""
    wanted = peer("a", "10.0.0.1", auth_secret_ref=SECRET)
    same = ours("10.0.0.1", "a", has_password=True, password_digest=password_digest("s3cret"))
    assert not plan(observe(speaker(same), wanted, secrets=SECRETS))
    changed = ours("10.0.0.1", "a", has_password=True, password_digest=password_digest("old"))
    none = ours("10.0.0.1", "a")
    for view in (changed, none):
        todo = plan(observe(speaker(view), wanted, secrets=SECRETS))
        assert todo.delete_neighbors == ("10.0.0.1",)
        assert [n.password for n in todo.add_neighbors] == ["s3cret"]
    # The Secret reference removed: the neighbor is added again without one.
    todo = plan(observe(speaker(same), peer("a", "10.0.0.1"), secrets=SECRETS))
    assert todo.delete_neighbors == ("10.0.0.1",) and todo.add_neighbors == (none,)


def test_an_unknown_capability_is_a_warning_not_a_failure() -> None:
    settings, problems = neighbor_settings(
        peer("a", "10.0.0.1", capabilities=("graceful-restart", "add-path", "IPv4-Unicast"))
    )
    assert settings.families == ("ipv4",) and settings.graceful_restart
    assert [(p.peer, p.reason) for p in problems] == [("a", "UnknownCapability")]
    assert "add-path" in problems[0].message
    todo = plan(observe(speaker(), peer("a", "10.0.0.1", capabilities=("add-path",))))
    assert [n.address for n in todo.add_neighbors] == ["10.0.0.1"]  # configured all the same
    assert [p.reason for p in todo.problems] == ["UnknownCapability"]


def test_peers_of_this_node_are_added_changed_and_removed() -> None:
    view = speaker(
        ours("10.0.0.1", "a"),  # as wanted
        ours("10.0.0.2", "b", hold_time=90),  # its BGPPeer now says 30
        ours("10.0.0.3", "c"),  # its BGPPeer is gone
        ours("10.0.0.5", "e"),  # its BGPPeer is being deleted
    )
    peers = (
        peer("a", "10.0.0.1"),
        peer("b", "10.0.0.2", hold_time=30),
        peer("d", "10.0.0.4", asn=65004),  # new
        peer("e", "10.0.0.5", deleting="2026-01-02T00:00:00Z"),
        peer("x", "10.0.0.6", node="n2"),  # another node's
    )
    todo = plan(observe(view, *peers))
    assert todo.delete_neighbors == ("10.0.0.2", "10.0.0.3", "10.0.0.5")
    assert todo.add_neighbors == (
        ours("10.0.0.2", "b", hold_time=30),  # a changed setting: removed and added again
        ours("10.0.0.4", "d", asn=65004),
    )
    assert todo.peers == {"10.0.0.1": "a", "10.0.0.2": "b", "10.0.0.4": "d"}


def test_two_bgppeers_for_one_address() -> None:
    older = peer("old", "10.0.0.1", created="2026-01-01T00:00:00Z")
    newer = peer("new", "10.0.0.1", created="2026-01-02T00:00:00Z")
    todo = plan(observe(speaker(), newer, older))
    assert [n.name for n in todo.add_neighbors] == ["bgppeer/old"]
    assert [(p.peer, p.reason) for p in todo.problems] == [("new", "DuplicatePeer")]


# --- the speaker's own configuration ---------------------------------------------------------


def test_the_speaker_file_s_neighbors_are_kept_unless_a_bgppeer_names_them() -> None:
    tor = NeighborSettings(address="10.0.0.8", asn=65008, name="tor")
    spine = NeighborSettings(address="10.0.0.9", asn=65009, name="spine")
    todo = plan(observe(speaker(tor, spine), peer("s", "10.0.0.9", asn=65009)))
    assert todo.delete_neighbors == ("10.0.0.9",)  # the BGPPeer wins its address
    assert todo.add_neighbors == (ours("10.0.0.9", "s", asn=65009),)
    assert todo.replaced == ("10.0.0.9",)
    assert todo.kept_neighbors == ("10.0.0.8",)


def test_paths_are_the_cluster_s_or_the_file_s() -> None:
    view = speaker(
        paths=(
            "10.0.1.5/32",  # advertised for this node: kept
            "10.0.1.6/32",  # an address of a service pool, no longer advertised: withdrawn
            "10.0.1.0/24",  # the pool's aggregate, from the file: kept
            "10.1.0.8/29",  # a block of a pod pool, no longer advertised: withdrawn
            "192.0.2.0/24",  # the file's: kept
            "198.51.100.7/32",  # added by this agent, its pool gone meanwhile: withdrawn
        )
    )
    todo = plan(
        observe(
            view,
            advertisements=(advertisement("10.0.1.5/32"), advertisement("10.0.1.7/32", None),
                            advertisement("10.0.1.8/32", ("n2",))),
            pools=(pool("10.0.1.0/24"), pool("10.1.0.0/24", AddressType.POD, 29)),
            added_paths=frozenset({"198.51.100.7/32"}),
        )
    )  # fmt: skip
    assert todo.add_paths == ("10.0.1.7/32",)  # no node list: every node
    assert todo.delete_paths == ("10.0.1.6/32", "10.1.0.8/29", "198.51.100.7/32")
    assert todo.kept_paths == ("10.0.1.0/24", "192.0.2.0/24")


def test_the_shape_of_cluster_prefixes() -> None:
    pools = (pool("10.0.1.0/24"), pool("10.1.0.0/24", AddressType.POD, 29),
             pool("10.2.0.0/28", AddressType.POD), pool("fd00::/64"))  # fmt: skip
    assert cluster_shaped("10.0.1.9/32", pools)
    assert not cluster_shaped("10.0.1.0/25", pools)
    assert cluster_shaped("10.1.0.16/29", pools) and not cluster_shaped("10.1.0.16/30", pools)
    assert cluster_shaped("10.2.0.0/28", pools)  # a pod pool of one block
    assert cluster_shaped("fd00::5/128", pools) and not cluster_shaped("fd01::5/128", pools)
    assert wanted_paths(NODE, [advertisement("10.0.1.1/32", ())]) == frozenset()  # no node


# --- statuses ---------------------------------------------------------------------------------


def test_the_state_history_is_appended_on_change_and_bounded() -> None:
    status = record_state(None, State.ACTIVE, "configured", now="t1", generation=1)
    assert [(c.status, c.reason) for c in status.conditions or ()] == [
        (State.ACTIVE, "configured")]  # fmt: skip
    assert record_state(status, State.ACTIVE, "again", now="t2", generation=1) == status
    up = record_state(status, State.ESTABLISHED, "", now="t3", generation=1)
    down = record_state(up, State.IDLE, "hold timer expired", now="t4", generation=1)
    assert [c.status for c in down.conditions or ()] == [State.ACTIVE, State.ESTABLISHED,
                                                         State.IDLE]  # fmt: skip
    assert (status.backoff, up.backoff, down.backoff) == (0, 0, 1)  # lost once established
    long = down
    for index in range(40):
        long = record_state(long, (State.ACTIVE, State.CONNECT)[index % 2], "", now="t",
                            limit=16)  # fmt: skip
    assert len(long.conditions or ()) == 16 and (long.conditions or ())[-1].status is State.CONNECT


def test_the_established_condition() -> None:
    status = record_state(None, State.CONNECT, "configured", now="t1", generation=3)
    condition = find_condition(status, "Established")
    assert condition is not None
    assert (condition.status, condition.reason, condition.message) == (
        ConditionStatus.FALSE, "Connect", "configured")  # fmt: skip
    assert (condition.last_transition_time, condition.observed_generation) == ("t1", 3)
    # Another down state: still False, so the transition time stays.
    active = find_condition(record_state(status, State.ACTIVE, "", now="t2"), "Established")
    assert active is not None and active.last_transition_time == "t1"
    assert active.reason == "Active"
    up = find_condition(record_state(status, State.ESTABLISHED, "", now="t3"), "Established")
    assert up is not None and (up.status, up.last_transition_time) == (ConditionStatus.TRUE, "t3")


def test_the_configured_condition_sits_beside_the_established_one() -> None:
    status = record_state(None, State.ESTABLISHED, "", now="t1")
    status = record_configured(status, True, "Configured", "", now="t2", generation=2)
    assert [c.type for c in status.standard_conditions or ()] == ["Established", "Configured"]
    again = record_configured(status, True, "Configured", "", now="t5", generation=2)
    assert again == status  # nothing new: nothing to write
    refused = record_configured(status, False, "Refused", "bad hold time", now="t6",
                                generation=3)  # fmt: skip
    condition = find_condition(refused, "Configured")
    assert condition is not None
    assert (condition.status, condition.last_transition_time, condition.observed_generation) == (
        ConditionStatus.FALSE, "t6", 3)  # fmt: skip


def test_events_on_reaching_and_leaving_established() -> None:
    assert state_event(State.ACTIVE, State.ESTABLISHED, "10.0.0.1", "") == PeerEvent(
        "Normal", "Established", "BGP session with 10.0.0.1 established")  # fmt: skip
    assert state_event(State.ESTABLISHED, State.IDLE, "10.0.0.1", "hold timer expired") == (
        PeerEvent("Warning", "SessionDown",
                  "BGP session with 10.0.0.1 is Idle: hold timer expired"))  # fmt: skip
    assert state_event(State.ACTIVE, State.CONNECT, "10.0.0.1", "") is None
    assert state_event(State.ESTABLISHED, State.ESTABLISHED, "10.0.0.1", "") is None


def test_node_bgp_conditions() -> None:
    wanted = node_bgp()
    available = node_condition(wanted, 65010, "10.255.0.1")
    assert (available.status, available.reason) == (
        NodeBGPConditionStatus.AVAILABLE, NodeBGPConditionReason.CONFIGURED)  # fmt: skip
    unavailable = (
        NodeBGPConditionStatus.UNAVAILABLE,
        NodeBGPConditionReason.INVALID_CONFIGURATION,
    )
    for asn, router_id in ((65099, "10.255.0.1"), (65010, "10.9.9.9"), (None, None)):
        condition = node_condition(wanted, asn, router_id)
        assert (condition.status, condition.reason) == unavailable
    status = record_node_condition(None, available)
    assert record_node_condition(status, available) == status  # no change: nothing new
    down = record_node_condition(status, node_condition(wanted, None, None))
    assert [c.status for c in down.conditions or ()] == [
        NodeBGPConditionStatus.AVAILABLE, NodeBGPConditionStatus.UNAVAILABLE]  # fmt: skip
    long = down
    for _ in range(20):
        long = record_node_condition(long, node_condition(wanted, 65010, "10.255.0.1"), limit=4)
        long = record_node_condition(long, node_condition(wanted, None, None), limit=4)
    assert len(long.conditions or ()) == 4
