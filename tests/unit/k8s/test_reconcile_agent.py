"""The node agent's plan on plain dicts."""

from __future__ import annotations

from typing import Any

from sart.k8s.reconcile.agent import PeerWanted, plan, wanted_paths, wanted_peers


def peer(name: str, node: str, addr: str, asn: int) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"nodeBGPRef": node, "addr": addr, "asn": asn}}


def advertisement(cidr: str, nodes: list[str] | None) -> dict[str, Any]:
    return {"metadata": {"name": cidr}, "spec": {"cidr": cidr, "nodes": nodes}}


def test_what_this_node_wants() -> None:
    peers = [peer("a", "n1", "10.0.0.1", 65000), peer("b", "n2", "10.0.0.2", 65000)]
    assert wanted_peers("n1", peers) == {"10.0.0.1": PeerWanted("10.0.0.1", 65000, "a")}
    ads = [
        advertisement("10.1.0.1/32", ["n1", "n2"]),
        advertisement("10.1.0.2/32", ["n2"]),
        advertisement("10.244.0.0/28", None),  # no list: every node
        advertisement("10.1.0.3/32", []),  # an empty list: no node (Local with no endpoint)
    ]
    assert wanted_paths("n1", ads) == {"10.1.0.1/32", "10.244.0.0/28"}


def test_plan_adds_removes_and_replaces() -> None:
    wanted = {"10.0.0.1": PeerWanted("10.0.0.1", 65000), "10.0.0.3": PeerWanted("10.0.0.3", 65003)}
    todo = plan(wanted, {"10.1.0.1/32"}, {"10.0.0.1": 65099, "10.0.0.2": 65000}, {"10.1.0.9/32"})
    assert todo.delete_peers == ("10.0.0.1", "10.0.0.2")  # .1's AS changed: deleted, added again
    assert [p.address for p in todo.add_peers] == ["10.0.0.1", "10.0.0.3"]
    assert (todo.add_paths, todo.delete_paths) == (("10.1.0.1/32",), ("10.1.0.9/32",))
    assert not plan(wanted, set(), {"10.0.0.1": 65000, "10.0.0.3": 65003}, set())
