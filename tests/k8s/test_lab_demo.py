"""The README's first command runs the local lab demo: it must keep working. Runs the demo
module as `scripts/demo` does (without the install step) and checks what it shows."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = [pytest.mark.k8s, pytest.mark.e2e]


def test_the_lab_demo_routes_a_service_and_pods_configured_through_a_cluster_bgp() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sart.testing.lab_demo"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "configured through a ClusterBGP" in out
    assert "tor-node-a-65000-10.255.1.1" in out and "tor-node-b-65000-10.255.2.1" in out
    assert out.count("Established") == 3  # the BGPPeers' status, written by the agents
    assert 'peer="tor-node-a-65000-10.255.1.1",status="Established"} 1.0' in out  # metrics
    assert "learned 203.0.113.1/32 from both nodes" in out
    assert out.count("nexthop via") == 2  # ECMP in the router's kernel
    assert "withdrawn from the router" in out
    # pods: an address on each node through sart-cni, blocks announced, routes installed by
    # sartd fib, and the pods reach each other across the router
    assert "gave demo/pod-node-a on node-a 10.1.0.1" in out
    assert "gave demo/pod-node-b on node-b 10.1.0.8" in out
    assert "10.1.0.8/29 via 10.255.1.1" in out and "10.1.0.0/29 via 10.255.2.1" in out
    assert "3 packets transmitted, 3 received, 0% packet loss" in out
    assert "everything the demo made is gone" in out
