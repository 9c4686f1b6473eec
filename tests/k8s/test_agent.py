"""The node agent against the real apiserver and real `sartd bgp` processes (their API on a unix
socket, as on a node): the speaker takes its AS and router ID from the NodeBGP, a BGPPeer's
settings reach it, the BGPPeer's status follows the session from the speaker's events, the
NodeBGP reports whether its speaker is configured, and what the speaker's own file configured
survives the agent.

Two speakers peer on loopback: the node's (its neighbors given by the agent) listens on a port
of its own, the peer connects to it from its own address (127.0.0.0/8 is all local)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml
from kubernetes_asyncio.client import (
    ApiClient,
    CoreV1Api,
    CustomObjectsApi,
)
from kubernetes_asyncio.client.exceptions import ApiException

from sart.api.client import SpeakerClient
from sart.k8s.models import GROUP, VERSION
from sart.k8s.runtime.agent import NodeAgent
from sart.testing.controlplane import unique_name
from sart.testing.crds import apply_crds
from sart.testing.proxy import TcpProxy
from sart.testing.rbac import account_configuration, apply_shipped_rbac
from waiting import until

pytestmark = [pytest.mark.k8s, pytest.mark.asyncio]
MERGE = {"_content_type": "application/merge-patch+json"}
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"
NODE_ADDRESS, PEER_ADDRESS, FILE_PEER = "127.0.41.1", "127.0.41.2", "127.0.41.9"
NODE_AS, PEER_AS, FILE_AS = 65010, 65020, 65009
FILE_PATH = "192.0.2.0/24"


async def eventually(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    return await until(check, timeout, 0.05)


def free_port(address: str) -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


class Sartd:
    """A `sartd bgp` process configured by a file, its API on a unix socket."""

    def __init__(self, directory: Path, name: str, config: dict[str, Any]) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.socket = directory / f"{name}.sock"
        self.endpoint = f"unix:{self.socket}"
        self.config = directory / f"{name}.yaml"
        self.config.write_text(yaml.safe_dump(config))
        self.log = directory / f"{name}.log"
        self.start()

    def start(self) -> None:
        self.socket.unlink(missing_ok=True)
        with self.log.open("a") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "sart.cli.sartd", "bgp", "-f", str(self.config),
                 "--api-address", self.endpoint, "--metrics-address", ""],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while not self.socket.exists():  # serving once its socket is there
            assert self.process.poll() is None, f"sartd bgp exited: {self.log.read_text()}"
            assert time.monotonic() < deadline, "sartd bgp did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=15)


@pytest.fixture
def node_speaker(tmp_path: Path) -> Iterator[tuple[Sartd, int]]:
    """The node's speaker as its own file makes it: another AS and router ID than the
    NodeBGP's, a neighbor and a path of its own. Yields it and its BGP port."""
    port = free_port(NODE_ADDRESS)
    speaker = Sartd(tmp_path, "node", {
        "asn": 65099, "router_id": "10.255.41.99", "port": port,
        "listen_addresses": [NODE_ADDRESS], "connect_retry_time": 0.5,
        "neighbors": [{"address": FILE_PEER, "asn": FILE_AS, "name": "tor", "passive": True}],
        "paths": [{"prefixes": [FILE_PATH]}],
    })  # fmt: skip
    try:
        yield speaker, port
    finally:
        speaker.stop()


def peer_speaker(directory: Path, node_port: int) -> Sartd:
    """A router for the node: it connects to the node's speaker, from its own address."""
    return Sartd(directory, "peer", {
        "asn": PEER_AS, "router_id": "10.255.41.2", "port": 0,
        "listen_addresses": [PEER_ADDRESS], "connect_retry_time": 0.5,
        "neighbors": [{"address": NODE_ADDRESS, "asn": NODE_AS, "port": node_port,
                       "local_address": PEER_ADDRESS}],
    })  # fmt: skip


def node_bgp_spec(endpoint: str, **speaker: Any) -> dict[str, Any]:
    return {"asn": NODE_AS, "routerId": "10.255.41.1", "speaker": {"path": endpoint, **speaker}}


class Objects:
    """Our cluster-scoped objects, deleted at the end."""

    def __init__(self, api: ApiClient) -> None:
        self.custom = CustomObjectsApi(api)
        self.made: list[tuple[str, str]] = []

    async def create(self, plural: str, kind: str, name: str, spec: dict[str, Any]) -> None:
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": {"name": name},
                "spec": spec}  # fmt: skip
        await self.custom.create_cluster_custom_object(GROUP, VERSION, plural, body)
        self.made.append((plural, name))

    async def get(self, plural: str, name: str) -> dict[str, Any]:
        found: dict[str, Any] = await self.custom.get_cluster_custom_object(
            GROUP, VERSION, plural, name
        )
        return found

    async def patch(self, plural: str, name: str, spec: dict[str, Any]) -> None:
        await self.custom.patch_cluster_custom_object(
            GROUP, VERSION, plural, name, {"spec": spec}, **MERGE
        )

    async def delete_all(self) -> None:
        for plural, name in reversed(self.made):
            with contextlib.suppress(ApiException):
                await self.custom.delete_cluster_custom_object(GROUP, VERSION, plural, name)


@pytest_asyncio.fixture
async def objects(k8s: ApiClient) -> AsyncIterator[Objects]:
    await apply_crds(k8s)
    made = Objects(k8s)
    try:
        yield made
    finally:
        await made.delete_all()


@contextlib.asynccontextmanager
async def running(agent: NodeAgent) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(agent.run())
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert task.cancelled(), f"the agent died: {task.exception()!r}"


async def speaker_state(endpoint: str) -> tuple[Any, dict[str, Any], set[str]]:
    async with SpeakerClient(endpoint) as client:
        info = await client.info()
        neighbors = {n.config.address: n for n in await client.neighbors()}
        paths = {p.prefix for p in await client.rib() if p.source == "local"}
    return info, neighbors, paths


def history(obj: dict[str, Any]) -> list[tuple[str, str]]:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return [(c["status"], c["reason"]) for c in conditions]


def standard(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    for condition in (obj.get("status") or {}).get("standardConditions") or []:
        if condition["type"] == kind:
            return dict(condition)
    return {}


async def events_about(k8s: ApiClient, name: str) -> list[tuple[str, str, str]]:
    found = await CoreV1Api(k8s).list_namespaced_event(
        "default", field_selector=f"involvedObject.name={name}"
    )
    return [(e.type, e.reason, e.message) for e in found.items]


async def printed_status(k8s: ApiClient, name: str) -> str:
    """The STATUS column of `kubectl get bgppeers <name>`."""
    table = await k8s.call_api(
        f"/apis/{GROUP}/{VERSION}/bgppeers/{name}", "GET",
        header_params={"Accept": TABLE}, response_types_map={200: "object"},
        auth_settings=["BearerToken"], _return_http_data_only=True,
    )  # fmt: skip
    columns = [c["name"] for c in table["columnDefinitions"]]
    return str(table["rows"][0]["cells"][columns.index("STATUS")])


async def test_the_speaker_is_configured_from_the_node_bgp_and_keeps_its_own_entries(
    k8s: ApiClient, objects: Objects, node_speaker: tuple[Sartd, int], namespace: str
) -> None:
    """The NodeBGP's AS, router ID and multipath reach the speaker: its own neighbor is
    removed for that and put back; its own path stays while the cluster's come and go; the
    NodeBGP reports Available."""
    speaker, _ = node_speaker
    node = unique_name("node")
    await objects.create(
        "nodebgps", "NodeBGP", node, node_bgp_spec(speaker.endpoint, multipath=True)
    )
    custom = CustomObjectsApi(k8s)
    agent = NodeAgent(k8s, node, speaker.endpoint)
    async with running(agent):
        await eventually(lambda: _equals(last_condition(objects, node), "Available"))
        info, neighbors, paths = await speaker_state(speaker.endpoint)
        assert (info.asn, info.router_id, info.multi_path) == (NODE_AS, "10.255.41.1", True)
        tor = neighbors[FILE_PEER].config  # removed for SetAs, then added back as it was
        assert (tor.name, tor.asn, tor.passive) == ("tor", FILE_AS, True)
        assert FILE_PATH in paths
        assert history(await objects.get("nodebgps", node)) == [("Available", "Configured")]

        # The cluster's paths come and go; the file's stays.
        advertisement = {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "BGPAdvertisement",
            "metadata": {"name": "web"},
            "spec": {"cidr": "10.141.0.7/32", "type": "service", "protocol": "ipv4",
                     "nodes": [node]},
        }  # fmt: skip
        await custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, "bgpadvertisements", advertisement
        )
        await eventually(lambda: _local_paths(speaker.endpoint, {"10.141.0.7/32", FILE_PATH}))
        await custom.delete_namespaced_custom_object(
            GROUP, VERSION, namespace, "bgpadvertisements", "web"
        )
        await eventually(lambda: _local_paths(speaker.endpoint, {FILE_PATH}))
        _, neighbors, _ = await speaker_state(speaker.endpoint)
        assert FILE_PEER in neighbors


async def last_condition(objects: Objects, node: str) -> str:
    conditions = history(await objects.get("nodebgps", node))
    return conditions[-1][0] if conditions else ""


async def test_the_node_bgp_s_speaker_path_wins_and_the_flag_stands_in(
    k8s: ApiClient, objects: Objects, node_speaker: tuple[Sartd, int], tmp_path: Path
) -> None:
    """Two speakers: the NodeBGP's speaker.path names one, the agent's --endpoint the other.
    The NodeBGP's is configured, the other left alone. With neither reachable the NodeBGP is
    Unavailable; with only the flag's, that one is configured and a Warning says so."""
    speaker, _ = node_speaker
    other = Sartd(tmp_path / "other", "other", {
        "asn": 65098, "router_id": "10.255.41.98", "port": 0,
        "listen_addresses": ["127.0.41.98"]})  # fmt: skip
    node = unique_name("node")
    await objects.create("nodebgps", "NodeBGP", node, node_bgp_spec(speaker.endpoint))
    agent = NodeAgent(k8s, node, other.endpoint)
    try:
        async with running(agent):
            await eventually(lambda: _equals(last_condition(objects, node), "Available"))
            info, _, _ = await speaker_state(speaker.endpoint)
            assert info.asn == NODE_AS
            info, _, _ = await speaker_state(other.endpoint)
            assert info.asn == 65098  # the flag's speaker: not touched

            other.stop()
            missing = f"unix:{speaker.socket}.missing"
            await objects.patch("nodebgps", node, {"speaker": {"path": missing}})
            await eventually(lambda: _equals(last_condition(objects, node), "Unavailable"))
            warnings = await eventually(lambda: events_about(k8s, node))
            assert any("cannot reach the speaker" in message for _, _, message in warnings)

            other.start()
            await eventually(lambda: _equals(last_condition(objects, node), "Available"))
            info, _, _ = await speaker_state(other.endpoint)
            assert info.asn == NODE_AS  # configured through the flag's endpoint
            assert await _has_event(k8s, node, ("Warning", "SpeakerPathUnreachable"))
            assert agent.reached == other.endpoint
    finally:
        other.stop()


async def _equals(value: Any, wanted: Any) -> bool:
    return bool(await value == wanted)


async def _local_paths(endpoint: str, wanted: set[str]) -> bool:
    _, _, paths = await speaker_state(endpoint)
    return paths == wanted


async def test_bgppeer_settings_and_status_follow_the_session(
    k8s: ApiClient, objects: Objects, node_speaker: tuple[Sartd, int], tmp_path: Path
) -> None:
    """A BGPPeer's hold time and capabilities reach the speaker (an unknown capability is a
    Warning, not a failure); its status history shows Established once the peer connects,
    and a later state once the peer is stopped, with an Event each time; backoff counts the
    loss; `kubectl get bgppeers` prints the state. A changed hold time re-adds the peer."""
    speaker, port = node_speaker
    node = unique_name("node")
    await objects.create("nodebgps", "NodeBGP", node, node_bgp_spec(speaker.endpoint))
    name = unique_name("peer")
    await objects.create("bgppeers", "BGPPeer", name, {
        "asn": PEER_AS, "addr": PEER_ADDRESS, "nodeBGPRef": node, "holdTime": 9,
        "capabilities": ["ipv4-unicast", "add-path"], "speaker": {"path": speaker.endpoint},
    })  # fmt: skip
    agent = NodeAgent(k8s, node, speaker.endpoint)
    peer = None
    async with running(agent):
        try:

            async def configured() -> Any:
                _, neighbors, _ = await speaker_state(speaker.endpoint)
                return neighbors.get(PEER_ADDRESS)

            neighbor = await eventually(configured)
            assert neighbor.config.name == f"bgppeer/{name}"
            assert (neighbor.config.hold_time, neighbor.config.asn) == (9, PEER_AS)
            assert list(neighbor.config.families) == [1]  # IPv4 unicast only
            warnings = await eventually(lambda: events_about(k8s, name))
            assert ("Warning", "UnknownCapability") in [(t, r) for t, r, _ in warnings]

            peer = peer_speaker(tmp_path / "peer", port)

            async def established() -> dict[str, Any] | None:
                found = await objects.get("bgppeers", name)
                states = history(found)
                return found if states and states[-1][0] == "Established" else None

            found = await eventually(established)
            assert standard(found, "Established")["status"] == "True"
            configured_condition = standard(found, "Configured")
            assert configured_condition["status"] == "True"
            assert "add-path" in configured_condition["message"]
            assert configured_condition["observedGeneration"] == found["metadata"]["generation"]
            assert await printed_status(k8s, name) == "Established"
            _, neighbors, _ = await speaker_state(speaker.endpoint)
            assert neighbors[PEER_ADDRESS].negotiated_hold_time == 9
            await eventually(lambda: _has_event(k8s, name, ("Normal", "Established")))

            peer.stop()  # the router goes away

            async def lost() -> dict[str, Any] | None:
                found = await objects.get("bgppeers", name)
                states = [s for s, _ in history(found)]
                after = states[states.index("Established") + 1 :] if "Established" in states else []
                return found if after else None

            found = await eventually(lost)
            states = history(found)
            down = states[[s for s, _ in states].index("Established") + 1]
            assert down[0] in ("Idle", "Active", "Connect") and down[1]  # with the reason
            assert found["status"]["backoff"] == 1
            assert standard(found, "Established")["status"] == "False"
            assert await printed_status(k8s, name) != "Established"
            await eventually(lambda: _has_event(k8s, name, ("Warning", "SessionDown")))
            assert len(states) <= 16

            # A changed setting re-adds the neighbor.
            await objects.patch("bgppeers", name, {"holdTime": 30})

            async def readded() -> bool:
                neighbor = await configured()
                return neighbor is not None and neighbor.config.hold_time == 30

            await eventually(readded)
        finally:
            if peer is not None:
                peer.stop()
    writes = agent.status_writes
    assert writes > 0


async def _has_event(k8s: ApiClient, name: str, wanted: tuple[str, str]) -> bool:
    return wanted in [(t, r) for t, r, _ in await events_about(k8s, name)]


async def test_a_restarted_speaker_is_configured_again(
    k8s: ApiClient, objects: Objects, node_speaker: tuple[Sartd, int]
) -> None:
    """The speaker stops: its event stream breaks, the BGPPeer's state turns Unknown and the
    NodeBGP Unavailable. It starts again from its file: the agent, told by the stream opening
    again (no polling), gives it back the NodeBGP's AS and its peer."""
    speaker, _ = node_speaker
    node = unique_name("node")
    await objects.create("nodebgps", "NodeBGP", node, node_bgp_spec(speaker.endpoint))
    name = unique_name("peer")
    await objects.create("bgppeers", "BGPPeer", name, {
        "asn": PEER_AS, "addr": PEER_ADDRESS, "nodeBGPRef": node,
        "speaker": {"path": speaker.endpoint}})  # fmt: skip
    agent = NodeAgent(k8s, node, speaker.endpoint)

    async def node_bgp_state() -> str:
        conditions = history(await objects.get("nodebgps", node))
        return conditions[-1][0] if conditions else ""

    async def peer_state() -> str:
        conditions = history(await objects.get("bgppeers", name))
        return conditions[-1][0] if conditions else ""

    async def configured() -> bool:
        info, neighbors, _ = await speaker_state(speaker.endpoint)
        return info.asn == NODE_AS and PEER_ADDRESS in neighbors and FILE_PEER in neighbors

    async with running(agent):
        await eventually(lambda: _equals(node_bgp_state(), "Available"))
        await eventually(configured)
        await eventually(lambda: _in(peer_state(), ("Active", "Connect")))
        opened = agent.stream_opened
        speaker.stop()
        await eventually(lambda: _equals(peer_state(), "Unknown"))
        await eventually(lambda: _equals(node_bgp_state(), "Unavailable"))
        speaker.start()
        await eventually(lambda: agent.stream_opened > opened)
        await eventually(configured)
        await eventually(lambda: _equals(node_bgp_state(), "Available"))
        await eventually(lambda: _in(peer_state(), ("Active", "Connect")))
        states = [s for s, _ in history(await objects.get("nodebgps", node))]
        assert states[-3:] == ["Available", "Unavailable", "Available"]


async def _in(value: Any, wanted: tuple[str, ...]) -> bool:
    return await value in wanted


async def test_status_reaches_the_apiserver_after_an_outage_and_is_never_written_twice(
    k8s: ApiClient,
    proxied: ApiClient,
    proxy: TcpProxy,
    objects: Objects,
    node_speaker: tuple[Sartd, int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The agent reaches the apiserver through a proxy that refuses it while the speaker
    stops: its status writes fail and back off, and land once the apiserver is reachable
    again. A change that alters no status (a label) writes nothing and reads no speaker."""
    speaker, _ = node_speaker
    node = unique_name("node")
    await objects.create("nodebgps", "NodeBGP", node, node_bgp_spec(speaker.endpoint))
    name = unique_name("peer")
    await objects.create("bgppeers", "BGPPeer", name, {
        "asn": PEER_AS, "addr": PEER_ADDRESS, "nodeBGPRef": node,
        "speaker": {"path": speaker.endpoint}})  # fmt: skip
    agent = NodeAgent(proxied, node, speaker.endpoint)

    async def last(plural: str, obj: str) -> str:
        conditions = history(await objects.get(plural, obj))
        return conditions[-1][0] if conditions else ""

    async with running(agent):
        await eventually(lambda: _equals(last("nodebgps", node), "Available"))
        await eventually(lambda: _in(last("bgppeers", name), ("Active", "Connect")))
        await eventually(lambda: _configured(objects, name))
        writes, syncs = agent.status_writes, agent.syncs
        await objects.custom.patch_cluster_custom_object(
            GROUP, VERSION, "bgppeers", name, {"metadata": {"labels": {"seen": "yes"}}}, **MERGE
        )
        await eventually(lambda: agent.peers[name].metadata.labels.get("seen") == "yes")
        assert (agent.status_writes, agent.syncs) == (writes, syncs)

        proxy.refuse()
        proxy.cut()
        speaker.stop()  # now the status must change, and cannot be written
        await eventually(lambda: agent.statuses[("bgppeers", name)].current
                         != agent.statuses[("bgppeers", name)].written)  # fmt: skip
        assert await last("bgppeers", name) in ("Active", "Connect")
        proxy.accept()
        await eventually(lambda: _equals(last("bgppeers", name), "Unknown"))
        await eventually(lambda: _equals(last("nodebgps", node), "Unavailable"))
    assert "status write failed, retrying" in [r.message for r in caplog.records]


async def _configured(objects: Objects, name: str) -> bool:
    return bool(standard(await objects.get("bgppeers", name), "Configured"))


async def test_the_agent_runs_with_exactly_the_shipped_rbac(
    k8s: ApiClient, objects: Objects, node_speaker: tuple[Sartd, int]
) -> None:
    """manifests/deploy/rbac.yaml's sart-agent account may do all the agent does:
    watch its kinds, write NodeBGP and BGPPeer status, record Events."""
    speaker, _ = node_speaker
    await apply_shipped_rbac(k8s)
    configuration = await account_configuration(k8s, "sart-agent")
    node = unique_name("rbac-node")
    await objects.create("nodebgps", "NodeBGP", node, node_bgp_spec(speaker.endpoint))
    name = unique_name("rbac-peer")
    await objects.create("bgppeers", "BGPPeer", name, {
        "asn": PEER_AS, "addr": PEER_ADDRESS, "nodeBGPRef": node,
        "capabilities": ["no-such-capability"], "speaker": {"path": speaker.endpoint}})  # fmt: skip
    async with ApiClient(configuration) as restricted:
        agent = NodeAgent(restricted, node, speaker.endpoint)
        async with running(agent):

            async def reported() -> bool:
                node_bgp = await objects.get("nodebgps", node)
                peer = await objects.get("bgppeers", name)
                return bool(history(node_bgp) and history(peer))

            await eventually(reported)
            await eventually(lambda: _has_event(k8s, name, ("Warning", "UnknownCapability")))
            assert agent.events.written > 0
