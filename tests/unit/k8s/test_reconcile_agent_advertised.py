"""BGPAdvertisement status.peers from what the speaker reported (pure): each node's agent
changes only its own BGPPeers' entries."""

from __future__ import annotations

import pytest

from sart.k8s.models import AdvertiseStatus
from sart.k8s.reconcile.agent import PeerAdvertising, advertised_state, advertisement_patch

CIDR = "10.141.0.7/32"
ADVERTISED, WITHDRAW, NOT_ADVERTISED = (
    AdvertiseStatus.ADVERTISED,
    AdvertiseStatus.WITHDRAW,
    AdvertiseStatus.NOT_ADVERTISED,
)
UP = PeerAdvertising(established=True)
DOWN = PeerAdvertising(established=False)
SENT = PeerAdvertising(established=True, sent=frozenset({CIDR}))
WITHDRAWN = PeerAdvertising(established=True, withdrawn=frozenset({CIDR}))


@pytest.mark.parametrize(
    ("announced", "session", "before", "after"),
    [
        (True, SENT, None, ADVERTISED),  # the speaker sent it
        (True, UP, None, NOT_ADVERTISED),  # up, not sent (yet, or kept from the peer)
        (True, DOWN, ADVERTISED, NOT_ADVERTISED),  # the session ended: the peer dropped it
        (True, WITHDRAWN, ADVERTISED, WITHDRAW),  # the withdrawal went out
        (False, WITHDRAWN, ADVERTISED, WITHDRAW),
        (False, UP, WITHDRAW, WITHDRAW),  # kept while that session lasts (an agent restart)
        (False, DOWN, WITHDRAW, NOT_ADVERTISED),
        (False, UP, None, None),  # another node's advertisement: no entry of ours
        (False, DOWN, NOT_ADVERTISED, NOT_ADVERTISED),  # had one: it stays
        (True, SENT, WITHDRAW, ADVERTISED),  # announced again
    ],
)
def test_one_peer_s_entry(
    announced: bool,
    session: PeerAdvertising,
    before: AdvertiseStatus | None,
    after: AdvertiseStatus | None,
) -> None:
    assert advertised_state(CIDR, announced, session, before) is after


def test_the_patch_names_only_this_node_s_entries_that_change() -> None:
    stored = {"node1-spine": ADVERTISED, "node2-spine": ADVERTISED, "node1-old": ADVERTISED}
    sessions = {"node1-spine": SENT, "node1-spine2": UP}
    assert advertisement_patch(CIDR, True, sessions, stored) == {"node1-spine2": NOT_ADVERTISED}
    # A BGPPeer of this node deleted: its entry goes; another node's is never touched.
    patch = advertisement_patch(CIDR, True, sessions, stored, gone={"node1-old", "node2-x"})
    assert patch == {"node1-spine2": NOT_ADVERTISED, "node1-old": None}
    assert advertisement_patch(CIDR, True, {"node1-spine": SENT}, stored) == {}  # as stored


def test_a_peer_going_down_turns_every_entry_of_it_not_advertised() -> None:
    stored = {"a": ADVERTISED, "b": ADVERTISED}
    patch = advertisement_patch(CIDR, True, {"a": DOWN, "b": SENT}, stored)
    assert patch == {"a": NOT_ADVERTISED}
