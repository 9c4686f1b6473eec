"""Issue 13 against FRR 8: TCP-MD5 (RFC 2385) with the settings the node agent sends.

The neighbor is added through sartd's API with exactly what the agent computes for a BGPPeer
(`neighbor_settings` of a BGPPeer with passive, holdTime, keepaliveTime, ttl and an
authSecretRef, the Secret's data given as the agent reads it): with FRR's `neighbor password`
the same, the session reaches Established (sartd only accepts: passive); with another password
the kernel drops FRR's segments and the session never comes up; back to the right one, it does.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from netaddr import IPAddress

from sart.bgp.config import password_matches
from sart.k8s.models import BGPPeer, BGPPeerSpec, ObjectMeta, SecretKeyRef, SpeakerConfig
from sart.k8s.reconcile.agent import NeighborSettings, neighbor_settings
from sart.testing.netns import Link
from sart.testing.peers import Frr, Lab
from sartd_process import Sartd
from waiting import eventually

SART_AS, PEER_AS = 65130, 65230
PASSWORD = "interop-md5-s3cret"


def agent_settings(address: str, password: bytes) -> NeighborSettings:
    """What the agent gives the speaker for this BGPPeer, its Secret holding `password`."""
    peer = BGPPeer(
        metadata=ObjectMeta(name="frr", generation=1),
        spec=BGPPeerSpec(
            asn=PEER_AS, addr=IPAddress(address), node_bgp_ref="node",
            speaker=SpeakerConfig(path="unix:/run/sart/bgp.sock"),
            hold_time=9, keepalive_time=2, passive=True, ttl=1,
            auth_secret_ref=SecretKeyRef(name="bgp-auth"),
        ),
    )  # fmt: skip
    settings, problems = neighbor_settings(peer, {"bgp-auth": {"password": password}})
    assert problems == []
    return settings


def add(sartd: Sartd, settings: NeighborSettings) -> None:
    sartd.call("add_neighbor", settings.address, settings.asn, **settings.options())


@pytest.fixture
def setup(lab: Lab, tmp_path: Path) -> Iterator[tuple[Sartd, Frr, Link]]:
    sart_ns, link, frr = lab.frr_beside_sart(
        PEER_AS, SART_AS, routes=("10.61.1.0/24",), connect_retry=1
    )
    frr.vtysh(
        "configure terminal",
        f"router bgp {PEER_AS}",
        f"neighbor {link.a.ipv4} password {PASSWORD}",
    )
    sartd = Sartd(sart_ns, SART_AS, link.a.ipv4, tmp_path)
    yield sartd, frr, link
    sartd.stop()


def test_frr_with_the_same_md5_password_comes_up_and_another_does_not(
    setup: tuple[Sartd, Frr, Link],
) -> None:
    sartd, frr, link = setup
    peer, ours = link.b.ipv4, link.a.ipv4  # FRR's address, sartd's (FRR's neighbor)
    right = agent_settings(peer, PASSWORD.encode())
    assert (right.passive, right.hold_time, right.keepalive_time, right.ttl) == (True, 9, 2, 1)
    add(sartd, right)
    state = sartd.call("neighbor", peer)
    assert state.has_password and password_matches(PASSWORD, state.password_digest)
    frr.wait_state(ours, ("established",), timeout=30)
    eventually(lambda: sartd.call("neighbor", peer).state == 6, what="sartd established")
    assert sartd.call("neighbor", peer).negotiated_hold_time == 9
    eventually(
        lambda: "10.61.1.0/24" in {p.prefix for p in sartd.call("rib")},
        what="FRR's route in sartd's RIB",
    )

    # Another password (what the agent sends once the Secret changes): never up.
    sartd.call("delete_neighbor", peer)
    add(sartd, agent_settings(peer, b"not-the-password"))
    deadline = time.monotonic() + 12  # FRR retries every second; hold time 9
    while time.monotonic() < deadline:
        assert sartd.call("neighbor", peer).state != 6, "up with the wrong password"
        assert frr.neighbor_state(ours) != "established"
        time.sleep(0.5)

    # The right one again: up.
    sartd.call("delete_neighbor", peer)
    add(sartd, right)
    frr.wait_state(ours, ("established",), timeout=30)
    assert PASSWORD not in sartd.stop()  # never in its log
