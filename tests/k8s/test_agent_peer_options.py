"""A BGPPeer's session options through the agent to a real `sartd bgp` (issue 13): passive,
keepaliveTime beside holdTime, ttl, and the TCP-MD5 password of authSecretRef, read from a
Secret of the agent's namespace. Against the real apiserver; the node's speaker and a router
(another `sartd bgp`, configured by its file with the same password) peer on loopback, so the
session comes up only if the kernel signs and checks every segment with that password."""

from __future__ import annotations

import base64
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml
from kubernetes_asyncio.client import ApiClient, CoreV1Api
from kubernetes_asyncio.client.exceptions import ApiException
from test_agent import (  # the node speaker, the objects and the helpers of the agent's tests
    NODE_ADDRESS,
    NODE_AS,
    PEER_ADDRESS,
    PEER_AS,
    Objects,
    Sartd,
    events_about,
    eventually,
    free_port,
    history,
    node_bgp_spec,
    objects,
    running,
    speaker_state,
    standard,
)

from sart.bgp.config import password_matches
from sart.k8s.runtime.agent import NodeAgent
from sart.testing.controlplane import unique_name
from sart.testing.rbac import NAMESPACE, RBAC, account_configuration, apply_shipped_rbac

pytestmark = [pytest.mark.k8s, pytest.mark.asyncio]
__all__ = ["objects"]  # the fixture, used by name below
PASSWORD, NEW_PASSWORD = "s3cret-md5", "n3w-md5-password"


@pytest.fixture
def node_speaker(tmp_path: Path) -> Iterator[tuple[Sartd, int]]:
    """The node's speaker, no neighbor of its own. Yields it and its BGP port."""
    port = free_port(NODE_ADDRESS)
    speaker = Sartd(tmp_path, "node", {
        "asn": 65099, "router_id": "10.255.41.99", "port": port,
        "listen_addresses": [NODE_ADDRESS], "connect_retry_time": 0.5,
    })  # fmt: skip
    try:
        yield speaker, port
    finally:
        speaker.stop()


def router_config(node_port: int, password: str) -> dict[str, Any]:
    """The router: dials the node's speaker from its own address, with a TCP-MD5 password."""
    return {
        "asn": PEER_AS, "router_id": "10.255.41.2", "port": 0,
        "listen_addresses": [PEER_ADDRESS], "connect_retry_time": 0.5,
        "neighbors": [{"address": NODE_ADDRESS, "asn": NODE_AS, "port": node_port,
                       "local_address": PEER_ADDRESS, "password": password, "hold_time": 9}],
    }  # fmt: skip


class Secrets:
    """Secrets of one namespace, deleted at the end."""

    def __init__(self, api: ApiClient, namespace: str) -> None:
        self.core = CoreV1Api(api)
        self.namespace = namespace
        self.made: list[str] = []

    async def put(self, name: str, data: dict[str, str]) -> None:
        encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
        body = {"metadata": {"name": name}, "data": encoded}
        try:
            await self.core.create_namespaced_secret(self.namespace, body)
            self.made.append(name)
        except ApiException as error:
            if error.status != 409:
                raise
            await self.core.replace_namespaced_secret(name, self.namespace, body)

    async def delete_all(self) -> None:
        for name in self.made:
            with contextlib.suppress(ApiException):
                await self.core.delete_namespaced_secret(name, self.namespace)


@pytest_asyncio.fixture
async def secrets(k8s: ApiClient, namespace: str) -> AsyncIterator[Secrets]:
    made = Secrets(k8s, namespace)
    try:
        yield made
    finally:
        await made.delete_all()


async def neighbor(endpoint: str, address: str = PEER_ADDRESS) -> Any:
    _, neighbors, _ = await speaker_state(endpoint)
    return neighbors.get(address)


async def last_state(objects: Objects, name: str) -> str:
    states = history(await objects.get("bgppeers", name))
    return states[-1][0] if states else ""


async def test_every_session_option_reaches_the_speaker_and_md5_sessions_come_up(
    k8s: ApiClient,
    objects: Objects,
    secrets: Secrets,
    namespace: str,
    node_speaker: tuple[Sartd, int],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """passive, holdTime, keepaliveTime, ttl and the Secret's password reach the speaker; the
    router, which has the same password, reaches Established (the node's side only accepts:
    passive). The agent does not re-add what the speaker holds (the password compared by the
    speaker's digest), even when it starts again. A new password in the Secret re-adds the
    neighbor: the router with the old one stays out, with the new one it is back. No
    password is ever logged, by the agent or the speaker."""
    caplog.set_level(logging.DEBUG)
    speaker, port = node_speaker
    secret = unique_name("bgp-auth")
    await secrets.put(secret, {"password": PASSWORD})
    node = unique_name("node")
    await objects.create("nodebgps", "NodeBGP", node, node_bgp_spec(speaker.endpoint))
    name = unique_name("peer")
    await objects.create("bgppeers", "BGPPeer", name, {
        "asn": PEER_AS, "addr": PEER_ADDRESS, "nodeBGPRef": node,
        "speaker": {"path": speaker.endpoint},
        "holdTime": 9, "keepaliveTime": 2, "passive": True, "ttl": 2,
        "authSecretRef": {"name": secret},
    })  # fmt: skip
    router = None
    try:
        agent = NodeAgent(k8s, node, speaker.endpoint, namespace=namespace)
        async with running(agent):
            added = await eventually(lambda: neighbor(speaker.endpoint))
            config = added.config
            assert config.name == f"bgppeer/{name}"
            assert (config.passive, config.hold_time, config.keepalive_time, config.ttl) == (
                True, 9, 2, 2)  # fmt: skip
            assert added.has_password and password_matches(PASSWORD, added.password_digest)
            assert config.password == ""  # never returned
            assert await last_state(objects, name) == "Active"  # passive: waits, never dials

            router = Sartd(tmp_path / "router", "router", router_config(port, PASSWORD))
            await eventually(lambda: _equals(last_state(objects, name), "Established"))
            up = await neighbor(speaker.endpoint)
            checked = time.monotonic()
            assert up.negotiated_hold_time == 9
            found = await objects.get("bgppeers", name)
            assert standard(found, "Configured")["status"] == "True"

            # Nothing to change: another sync (and one by a new agent) re-adds nothing.
            before = history(found)
            await agent.sync()
        again = NodeAgent(k8s, node, speaker.endpoint, namespace=namespace)
        async with running(again):
            await eventually(lambda: _at_least(again.syncs, 1))
            await again.sync()
        still = await neighbor(speaker.endpoint)
        assert still.state == up.state  # the same session all along:
        since = time.monotonic() - still.uptime_seconds
        assert abs(since - (checked - up.uptime_seconds)) < 1.0  # up since the same moment
        found = await objects.get("bgppeers", name)
        assert (history(found), found["status"]["backoff"]) == (before, 0)

        # A new password: the neighbor is added again with it; the router's old one fails.
        agent = NodeAgent(k8s, node, speaker.endpoint, namespace=namespace)
        async with running(agent):
            await secrets.put(secret, {"password": NEW_PASSWORD})

            async def new_password() -> bool:
                found = await neighbor(speaker.endpoint)
                return found is not None and password_matches(NEW_PASSWORD, found.password_digest)

            await eventually(new_password)
            await eventually(lambda: _not_equals(last_state(objects, name), "Established"))
            router.stop()
            router = Sartd(tmp_path / "router2", "router", router_config(port, NEW_PASSWORD))
            await eventually(lambda: _equals(last_state(objects, name), "Established"))
    finally:
        if router is not None:
            router.stop()
    for text in (PASSWORD, NEW_PASSWORD):
        assert not [r for r in caplog.records if text in str(r.__dict__)]
        assert text not in speaker.log.read_text()


async def test_a_missing_secret_is_a_warning_and_the_shipped_rbac_reads_it(
    k8s: ApiClient, objects: Objects, node_speaker: tuple[Sartd, int]
) -> None:
    """With the shipped RBAC (Secrets of sart-system only, through a Role): a BGPPeer whose
    Secret is missing is not given to the speaker (never a session without the password
    asked for), gets a Warning Event and Configured False; once the Secret exists, the
    neighbor is added with its password and Configured turns True."""
    speaker, _ = node_speaker
    await apply_shipped_rbac(k8s)
    secrets = Secrets(k8s, NAMESPACE)
    secret = unique_name("bgp-auth")
    node = unique_name("node")
    await objects.create("nodebgps", "NodeBGP", node, node_bgp_spec(speaker.endpoint))
    name = unique_name("peer")
    await objects.create("bgppeers", "BGPPeer", name, {
        "asn": PEER_AS, "addr": PEER_ADDRESS, "nodeBGPRef": node,
        "speaker": {"path": speaker.endpoint},
        "authSecretRef": {"name": secret, "key": "md5"},
    })  # fmt: skip
    configuration = await account_configuration(k8s, "sart-agent")
    try:
        async with ApiClient(configuration) as restricted:
            agent = NodeAgent(restricted, node, speaker.endpoint, namespace=NAMESPACE)
            async with running(agent):

                async def refused() -> dict[str, Any] | None:
                    found = await objects.get("bgppeers", name)
                    configured = standard(found, "Configured")
                    return configured if configured.get("status") == "False" else None

                configured = await eventually(refused)
                assert configured["reason"] == "AuthSecretNotUsable"
                assert secret in configured["message"]
                warnings = await eventually(lambda: events_about(k8s, name))
                assert ("Warning", "AuthSecretNotUsable") in [(t, r) for t, r, _ in warnings]
                assert await neighbor(speaker.endpoint) is None

                await secrets.put(secret, {"md5": PASSWORD})
                added = await eventually(lambda: neighbor(speaker.endpoint))
                assert password_matches(PASSWORD, added.password_digest)

                async def accepted() -> bool:
                    found = await objects.get("bgppeers", name)
                    return standard(found, "Configured").get("status") == "True"

                await eventually(accepted)
    finally:
        await secrets.delete_all()


async def _equals(value: Any, wanted: Any) -> bool:
    return bool(await value == wanted)


async def _not_equals(value: Any, wanted: Any) -> bool:
    return bool(await value != wanted)


async def _at_least(value: int, wanted: int) -> bool:
    return value >= wanted


async def test_the_shipped_role_is_namespaced() -> None:
    """The agent reads Secrets through a Role in sart-system, not its ClusterRole."""
    documents = [d for path in RBAC for d in yaml.safe_load_all(path.read_text())]
    cluster_rules = [
        rule
        for d in documents
        if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "sart-agent"
        for rule in d["rules"]
    ]
    assert not [r for r in cluster_rules if "secrets" in r["resources"]]
    agent_roles = {  # the Roles bound to the agent's ServiceAccount
        d["roleRef"]["name"]
        for d in documents
        if d["kind"] == "RoleBinding"
        and any(subject["name"] == "sart-agent" for subject in d["subjects"])
    }
    roles = [
        d
        for d in documents
        if d["kind"] == "Role"
        and d["metadata"]["name"] in agent_roles
        and "secrets" in str(d["rules"])
    ]
    assert [(r["metadata"]["namespace"], r["rules"][0]["verbs"]) for r in roles] == [
        (NAMESPACE, ["get", "list", "watch"])
    ]
