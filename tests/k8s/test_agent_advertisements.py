"""BGPAdvertisement status.peers against the real apiserver, two nodes' real `sartd bgp`
speakers and a real router (a third sartd) on loopback: each node's agent writes its own
BGPPeer's entry from the speaker's PathsSent events once the UPDATE went out, the router's RIB
agrees, a session that goes down turns the entry NotAdvertised, a node that stops announcing
writes Withdraw, and the two agents never overwrite each other's entries (nor anyone's)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio.client import ApiClient, CustomObjectsApi
from kubernetes_asyncio.client.exceptions import ApiException
from test_agent import (  # the speakers, the objects and the helpers of the agent's tests
    MERGE,
    Objects,
    Sartd,
    eventually,
    free_port,
    objects,
    running,
)

from sart.api.client import SpeakerClient
from sart.k8s.models import GROUP, VERSION
from sart.k8s.runtime.agent import NodeAgent
from sart.testing.controlplane import unique_name

pytestmark = [pytest.mark.k8s, pytest.mark.asyncio]
__all__ = ["objects"]  # the fixture, used by name
NODE_AS, ROUTER_AS = 65010, 65020
ROUTER = "127.0.43.2"
NODES = {"one": "127.0.43.1", "two": "127.0.43.3"}
CIDR = "10.143.0.7/32"


async def advertised_by(router: Sartd) -> set[str]:
    """The nodes the router has a path to CIDR from (their Adj-RIB-In: the Loc-RIB shows the
    best path only)."""
    found = set()
    async with SpeakerClient(router.endpoint) as client:
        for address in NODES.values():
            if CIDR in {p.prefix for p in await client.neighbor_rib(address, "in")}:
                found.add(address)
    return found


@contextlib.asynccontextmanager
async def agents(k8s: ApiClient, nodes: dict[str, Sartd]) -> AsyncIterator[list[NodeAgent]]:
    made = [NodeAgent(k8s, node, speaker.endpoint) for node, speaker in nodes.items()]
    async with contextlib.AsyncExitStack() as stack:
        for agent in made:
            await stack.enter_async_context(running(agent))
        yield made


async def test_each_node_writes_its_peers_entries_from_what_its_speaker_sent(
    k8s: ApiClient, objects: Objects, namespace: str, tmp_path: Path
) -> None:
    custom = CustomObjectsApi(k8s)
    names = {key: unique_name(f"node-{key}") for key in NODES}
    speakers: dict[str, Sartd] = {}
    ports = {}
    router = None
    try:
        for index, (key, address) in enumerate(NODES.items()):
            ports[key] = free_port(address)
            speakers[names[key]] = Sartd(tmp_path / key, key, {
                "asn": 65099, "router_id": f"10.255.43.{index + 1}", "port": ports[key],
                "listen_addresses": [address], "connect_retry_time": 0.5})  # fmt: skip
        peers = {key: unique_name(f"peer-{key}") for key in NODES}
        for index, key in enumerate(NODES):
            node, speaker = names[key], speakers[names[key]]
            await objects.create("nodebgps", "NodeBGP", node, {
                "asn": NODE_AS, "routerId": f"10.255.43.{index + 1}",
                "speaker": {"path": speaker.endpoint}})  # fmt: skip
            await objects.create("bgppeers", "BGPPeer", peers[key], {
                "asn": ROUTER_AS, "addr": ROUTER, "nodeBGPRef": node,
                "speaker": {"path": speaker.endpoint}})  # fmt: skip
        # Another node's entry, written before: neither agent may touch it.
        advertisement = {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "BGPAdvertisement",
            "metadata": {"name": "web"},
            "spec": {"cidr": CIDR, "type": "service", "protocol": "ipv4"},
        }  # fmt: skip
        await custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, "bgpadvertisements", advertisement
        )
        await custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, "bgpadvertisements", "web",
            {"status": {"peers": {"elsewhere": "Advertised"}}}, **MERGE,
        )  # fmt: skip

        async def status() -> dict[str, str]:
            found = await custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, "bgpadvertisements", "web"
            )
            return dict((found.get("status") or {}).get("peers") or {})

        async def status_is(wanted: dict[str, str]) -> bool:
            return await status() == {"elsewhere": "Advertised", **wanted}

        async with agents(k8s, speakers) as (one, two):
            # No router yet: each node's peer is there, nothing sent.
            both_not = {peers["one"]: "NotAdvertised", peers["two"]: "NotAdvertised"}
            await eventually(lambda: status_is(both_not))

            router = Sartd(tmp_path / "router", "router", {
                "asn": ROUTER_AS, "router_id": "10.255.43.9", "port": 0,
                "listen_addresses": [ROUTER], "connect_retry_time": 0.5,
                "neighbors": [{"address": NODES[key], "asn": NODE_AS, "port": ports[key],
                               "local_address": ROUTER} for key in NODES],
            })  # fmt: skip
            both = {peers["one"]: "Advertised", peers["two"]: "Advertised"}
            await eventually(lambda: status_is(both))
            # The UPDATEs were in the kernel when the entries were written: the router has both.
            await eventually(lambda: _equals(advertised_by(router), set(NODES.values())), 5)
            writes = one.advertisement_writes + two.advertisement_writes
            assert writes <= 4  # NotAdvertised, then Advertised: one patch each per burst

            # A change that alters no entry writes nothing.
            await custom.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, "bgpadvertisements", "web",
                {"metadata": {"labels": {"seen": "yes"}}}, **MERGE,
            )  # fmt: skip
            await eventually(lambda: one.advertisements[f"{namespace}/web"].metadata.labels)
            assert one.advertisement_writes + two.advertisement_writes == writes

            # The router takes node two's session down: only its entry changes.
            async with SpeakerClient(router.endpoint) as client:
                await client.set_admin_down(NODES["two"], True)
                down = {peers["one"]: "Advertised", peers["two"]: "NotAdvertised"}
                await eventually(lambda: status_is(down))
                assert await advertised_by(router) == {NODES["one"]}
                await client.set_admin_down(NODES["two"], False)
            await eventually(lambda: status_is(both))

            # Node two no longer announces it: its speaker withdraws it, the entry says so.
            await custom.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, "bgpadvertisements", "web",
                {"spec": {"nodes": [names["one"]]}}, **MERGE,
            )  # fmt: skip
            withdrawn = {peers["one"]: "Advertised", peers["two"]: "Withdraw"}
            await eventually(lambda: status_is(withdrawn))
            await eventually(lambda: _equals(advertised_by(router), {NODES["one"]}))

            # The BGPPeer of node one goes: its entry with it (node two's stays).
            await custom.delete_cluster_custom_object(GROUP, VERSION, "bgppeers", peers["one"])
            await eventually(lambda: status_is({peers["two"]: "Withdraw"}))

            # The Service goes (its advertisement with it): the router loses the route.
            await objects.create("bgppeers", "BGPPeer", peers["one"], {
                "asn": ROUTER_AS, "addr": ROUTER, "nodeBGPRef": names["one"],
                "speaker": {"path": speakers[names["one"]].endpoint}})  # fmt: skip
            await eventually(lambda: _equals(advertised_by(router), {NODES["one"]}))
            await custom.delete_namespaced_custom_object(
                GROUP, VERSION, namespace, "bgpadvertisements", "web"
            )
            await eventually(lambda: _equals(advertised_by(router), set()))
            with pytest.raises(ApiException):
                await status()
    finally:
        for speaker in (*speakers.values(), router):
            if speaker is not None:
                speaker.stop()


async def _equals(value: Any, wanted: Any) -> bool:
    return bool(await value == wanted)
