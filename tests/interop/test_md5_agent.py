"""Issue 13 against FRR 8: TCP-MD5 (RFC 2385) with the settings the node agent sends.

The neighbor is added through sartd's API with exactly what the agent computes for a BGPPeer
(`neighbor_settings` of a BGPPeer with passive, holdTime, keepaliveTime, ttl and an
authSecretRef, the Secret's data given as the agent reads it): with FRR's `neighbor password`
the same, the session reaches Established (sartd only accepts: passive); with another password
the kernel drops FRR's segments and the session never comes up; back to the right one, it does.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from netaddr import IPAddress

from sart.api.client import SpeakerClient
from sart.bgp.config import password_matches
from sart.k8s.models import BGPPeer, BGPPeerSpec, ObjectMeta, SecretKeyRef, SpeakerConfig
from sart.k8s.reconcile.agent import NeighborSettings, neighbor_settings
from sart.testing.netns import Link, Namespace
from sart.testing.peers import BgpConfig, Frr, Lab, neighbor

SART_AS, PEER_AS = 65130, 65230
PASSWORD = "interop-md5-s3cret"


def eventually(check: Callable[[], object], timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not in {timeout} s: {what or check}")
        time.sleep(0.2)


def call(endpoint: str, method: str, *args: Any, **kwargs: Any) -> Any:
    async def run() -> Any:
        async with SpeakerClient(endpoint) as client:
            return await getattr(client, method)(*args, **kwargs)

    return asyncio.run(run())


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


class Sartd:
    """`sartd bgp` in a namespace, its API on a unix socket (reachable from the test)."""

    def __init__(self, namespace: Namespace, link: Link, directory: Path) -> None:
        self.endpoint = f"unix:{directory / 'sartd.sock'}"
        command = [
            *(sys.executable, "-m", "sart.cli.sartd", "bgp", "--as", str(SART_AS)),
            *("--router-id", link.a.ipv4, "--metrics-address", ""),
            *("--api-address", self.endpoint, "--format", "json"),
        ]
        self.process = namespace.popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.log = ""
        eventually((directory / "sartd.sock").exists, what="sartd's API")

    def add(self, settings: NeighborSettings) -> None:
        call(self.endpoint, "add_neighbor", settings.address, settings.asn, **settings.options())

    def state(self, address: str) -> Any:
        return call(self.endpoint, "neighbor", address)

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.terminate()
            _, stderr = self.process.communicate(timeout=15)
            self.log = stderr.decode()
        return self.log


@pytest.fixture
def setup(lab: Lab, tmp_path: Path) -> Iterator[tuple[Sartd, Frr, Link]]:
    sart_ns, frr_ns = lab.namespace("sartd"), lab.namespace("frr")
    link = lab.link(sart_ns, frr_ns)
    frr = lab.start(
        Frr(
            frr_ns,
            BgpConfig(
                router_id=link.b.ipv4,
                local_as=PEER_AS,
                neighbors=(neighbor(link.a.ipv4, SART_AS, connect_retry=1),),
                routes=("10.61.1.0/24",),
            ),
        )
    )
    frr.vtysh(
        "configure terminal",
        f"router bgp {PEER_AS}",
        f"neighbor {link.a.ipv4} password {PASSWORD}",
    )
    sartd = Sartd(sart_ns, link, tmp_path)
    yield sartd, frr, link
    sartd.stop()


def test_frr_with_the_same_md5_password_comes_up_and_another_does_not(
    setup: tuple[Sartd, Frr, Link],
) -> None:
    sartd, frr, link = setup
    peer, ours = link.b.ipv4, link.a.ipv4  # FRR's address, sartd's (FRR's neighbor)
    right = agent_settings(peer, PASSWORD.encode())
    assert (right.passive, right.hold_time, right.keepalive_time, right.ttl) == (True, 9, 2, 1)
    sartd.add(right)
    state = sartd.state(peer)
    assert state.has_password and password_matches(PASSWORD, state.password_digest)
    frr.wait_state(ours, ("established",), timeout=30)
    eventually(lambda: sartd.state(peer).state == 6, what="sartd established")
    assert sartd.state(peer).negotiated_hold_time == 9
    eventually(
        lambda: "10.61.1.0/24" in {p.prefix for p in call(sartd.endpoint, "rib")},
        what="FRR's route in sartd's RIB",
    )

    # Another password (what the agent sends once the Secret changes): never up.
    call(sartd.endpoint, "delete_neighbor", peer)
    sartd.add(agent_settings(peer, b"not-the-password"))
    deadline = time.monotonic() + 12  # FRR retries every second; hold time 9
    while time.monotonic() < deadline:
        assert sartd.state(peer).state != 6, "up with the wrong password"
        assert frr.neighbor_state(ours) != "established"
        time.sleep(0.5)

    # The right one again: up.
    call(sartd.endpoint, "delete_neighbor", peer)
    sartd.add(right)
    frr.wait_state(ours, ("established",), timeout=30)
    assert PASSWORD not in sartd.stop()  # never in its log
