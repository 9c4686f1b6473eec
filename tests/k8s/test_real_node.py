"""sart on two real nodes with BGP (issue 17), as a user installs it: the shipped manifests with
the CNI component applied with kubectl, sartd and sart-controller as real pods from the image
on two kubelets with containerd (sart.testing.node), an FRR router linked to both, peered by
the DaemonSet's speakers through a ClusterBGP, a BGPPeerTemplate and node labels. The scenario
and its checks are sart.testing.real_cluster's (also `scripts/demo --full`): sart-cni installed
and called by containerd on both nodes, both sessions Established (BGPPeers and FRR), each
node's pod block on the router and on the other node, a pod on node-a reaching a pod on node-b
through the router, the original's CNI e2e (a pod created anew gets the lower
address it had, a pod naming a second pod pool, or in a namespace naming it, gets an address of
that pool's block, routed and reached from the other node, each pod block's BGPAdvertisement
Advertised to its node's peer),
the LoadBalancer address on the router with both nodes as next hops,
HTTP from the router through kube-proxy on both nodes, a Local Service announced from its
endpoint's node alone, and no container restarted. Then the original sart's e2e scenarios on
top: externalTrafficPolicy changed both ways, Services naming their pool, their address, two
pools, a pool changed (the old address withdrawn), and node-b's speaker and agent killed and
the controller pods deleted while the router keeps fetching from the Local Service (the route
never leaves the router, the answers go on), and a new pod on node-b after that gets a free
address and reaches node-a's pod.

It replaced the one-node test it grew from: it covers all of that one, and a single two-node
run costs less CPU than both. The stages' times, each node's memory and CPU time, and how busy
the machine was go to the test summary.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from sart.testing.node import missing_prerequisites
from sart.testing.real_cluster import RealCluster, run_scenario

pytestmark = [pytest.mark.k8s, pytest.mark.e2e]


@pytest.fixture(scope="module")
def cluster() -> Iterator[RealCluster]:
    missing = missing_prerequisites()
    if missing:
        pytest.skip(f"real nodes cannot run here: {'; '.join(missing)}")
    with RealCluster() as built:
        yield built


def test_sart_on_two_real_nodes_routes_pods_and_a_load_balancer_through_a_router(
    cluster: RealCluster, k8s_report: Callable[[str], None]
) -> None:
    try:
        run_scenario(cluster)
    finally:  # how far it got, how long each stage took, memory and CPU
        for line in cluster.summary():
            k8s_report(f"real nodes: {line}")
