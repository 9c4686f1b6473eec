"""A real `sartd bgp` process driven by the `sart` CLI and by SpeakerClient, as an operator and
the node agent would. Metrics are read over HTTP."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.empty_pb2 import Empty

from sart.api._gen.sart.speaker.v1 import speaker_pb2 as ours
from sart.api._gen.sart.v1 import original_bgp_pb2 as original
from sart.api.client import ApiError, SpeakerClient, SpeakerUnreachable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Daemon:
    def __init__(self, tmp_path: Path) -> None:
        self.api = f"127.0.0.1:{free_port()}"
        self.metrics = free_port()
        config = tmp_path / "bgp.yaml"
        config.write_text(
            "asn: 65010\nrouter_id: 10.0.0.10\npaths:\n  - prefixes: [10.10.0.0/24]\n"
        )
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "sart.cli.sartd", "bgp", "-f", str(config),
                "--port", "0", "--api-address", self.api,
                "--metrics-address", f"127.0.0.1:{self.metrics}", "--format", "json",
            ],
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while self.sart("bgp", "global", "get", check=False).returncode != 0:
            assert self.process.poll() is None, self.process.communicate()[1]
            assert time.monotonic() < deadline, "sartd did not answer"
            time.sleep(0.1)

    def sart(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "sart.cli.sart", *args, "--endpoint", self.api]
        return subprocess.run(command, capture_output=True, text=True, check=check, timeout=30)

    def scrape(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics}/metrics") as reply:
            text: str = reply.read().decode()
        return text

    def stop(self) -> str:
        self.process.terminate()
        _, stderr = self.process.communicate(timeout=15)
        return stderr


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    made = Daemon(tmp_path)
    yield made
    if made.process.poll() is None:
        made.stop()


def test_cli_drives_a_real_daemon(daemon: Daemon) -> None:
    info = json.loads(daemon.sart("bgp", "global", "get", "--format", "json").stdout)
    assert (info["asn"], info["router_id"], info["local_paths"]) == (65010, "10.0.0.10", "1")
    daemon.sart("bgp", "global", "rib", "add", "10.11.0.0/24", "2001:db8:11::/48",
                "--community", "65010:7", "--med", "3", "--origin", "egp")  # fmt: skip
    table = daemon.sart("bgp", "global", "rib", "get").stdout
    assert "10.11.0.0/24" in table and "MED 3, Communities 65010:7" in table
    rows = json.loads(
        daemon.sart("bgp", "global", "rib", "get", "-a", "ipv6", "--format", "json").stdout
    )
    assert [(r["prefix"], r["origin"]) for r in rows] == [("2001:db8:11::/48", "ORIGIN_EGP")]
    daemon.sart("bgp", "global", "rib", "del", "10.11.0.0/24")
    assert "10.11.0.0/24" not in daemon.sart("bgp", "global", "rib", "get").stdout
    daemon.sart("bgp", "neighbor", "add", "127.0.0.77", "65077", "--passive", "--name", "tor")
    listing = daemon.sart("bgp", "neighbor", "list").stdout
    assert "127.0.0.77" in listing and "Active" in listing
    transitions = 'sart_bgp_fsm_transitions_total{peer="127.0.0.77",state="Active"}'
    assert transitions in daemon.scrape()
    daemon.sart("bgp", "neighbor", "disable", "127.0.0.77")
    assert "admin down" in daemon.sart("bgp", "neighbor", "get", "127.0.0.77").stdout
    daemon.sart("bgp", "neighbor", "del", "127.0.0.77")
    daemon.sart("bgp", "neighbor", "add", "127.0.0.78", "65078", "--passive", "--bfd", "150,200,4")
    shown = daemon.sart("bgp", "neighbor", "get", "127.0.0.78").stdout
    assert "BFD: min rx 150 ms, min tx 200 ms, multiplier 4" in shown
    daemon.sart("bgp", "neighbor", "del", "127.0.0.78")
    assert "127.0.0.77" not in daemon.sart("bgp", "neighbor", "list").stdout
    metrics = daemon.scrape()
    assert 'sart_bgp_rib_prefixes{family="ipv6-unicast"} 1.0' in metrics
    assert "sart_bgp_local_paths 2.0" in metrics
    assert 'peer="127.0.0.77"' not in metrics  # a removed neighbor's series go with it
    stderr = daemon.stop()
    assert daemon.process.returncode == 0 and '"message": "speaker stopped"' in stderr


def test_cli_errors_and_exit_codes(daemon: Daemon) -> None:
    refused = daemon.sart("bgp", "neighbor", "get", "127.0.0.5", check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip() == "sart: NOT_FOUND: no neighbor 127.0.0.5"
    bad = daemon.sart("bgp", "global", "rib", "add", "10.0.0.1/8", check=False)
    assert bad.returncode == 1 and "host bits set (did you mean 10.0.0.0/8?)" in bad.stderr
    usage = daemon.sart("bgp", "neighbor", "add", "127.0.0.5", "x", check=False)
    assert usage.returncode == 2 and "'x' is not a valid integer" in usage.stderr
    bfd = daemon.sart("bgp", "neighbor", "add", "127.0.0.5", "1", "--bfd", "300,300", check=False)
    assert bfd.returncode == 2 and "RX,TX,MULT" in bfd.stderr
    assert daemon.sart("bgp", "global", "get").returncode == 0  # the daemon is fine
    daemon.stop()
    gone = daemon.sart("bgp", "global", "get", check=False)
    assert gone.returncode == 3 and "cannot reach the speaker" in gone.stderr


def test_client_class(daemon: Daemon) -> None:
    async def drive() -> None:
        async with SpeakerClient(daemon.api) as client:
            await client.health()
            assert await client.add_paths(["10.12.0.0/24"], local_pref=50) == 1
            paths = await client.rib(prefixes=["10.12.0.7"], longest_match=True)
            assert [(p.prefix, p.local_pref) for p in paths] == [("10.12.0.0/24", 50)]
            with pytest.raises(ApiError) as refused:
                await client.delete_neighbor("127.0.0.6")
            assert refused.value.status.name == "NOT_FOUND"
        async with SpeakerClient("127.0.0.1:1") as nobody:
            with pytest.raises(SpeakerUnreachable):
                await nobody.health()

    asyncio.run(drive())


def test_bad_config_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "bgp.yaml"
    config.write_text("asn: 65010\nrouter_id: 10.0.0.10\nneighbors: [{address: 10.0.0.1}]\n")
    result = subprocess.run(
        [sys.executable, "-m", "sart.cli.sartd", "bgp", "-f", str(config)],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "required field missing @" in result.stderr and "neighbors[0].asn" in result.stderr


def test_the_original_api_beside_ours(daemon: Daemon) -> None:
    """The original sart's clients are tonic (Rust); grpcio's client reads statuses the same way,
    so it stands in for them here: the original's calls on a real daemon, and one of ours under
    the original's name answered UNIMPLEMENTED."""
    with grpc.insecure_channel(daemon.api) as channel:

        def call(method: str, request: Any, reply: Any) -> Any:
            unary = channel.unary_unary(
                f"/sart.v1.BgpApi/{method}",
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=reply.FromString,
            )
            return unary(request, timeout=10)

        assert call("Health", original.HealthRequest(), Empty) == Empty()
        info = call("GetBgpInfo", original.GetBgpInfoRequest(), original.GetBgpInfoResponse).info
        assert (info.asn, info.router_id) == (65010, "10.0.0.10")
        peer = original.Peer(asn=65077, address="127.0.0.77", name="tor", passive_open=True)
        call("AddPeer", original.AddPeerRequest(peer=peer), Empty)
        peers = call("ListNeighbor", original.ListNeighborRequest(), original.ListNeighborResponse)
        assert [(p.address, p.name, p.state) for p in peers.peers] == [
            ("127.0.0.77", "tor", original.Peer.ACTIVE)
        ]
        v4 = original.AddressFamily(afi=original.AddressFamily.AFI_IP4, safi=1)
        call("AddPath", original.AddPathRequest(family=v4, prefixes=["10.20.0.0/24"]),
             original.AddPathResponse)  # fmt: skip
        paths = call("GetPath", original.GetPathRequest(family=v4), original.GetPathResponse)
        assert sorted(p.nlri for p in paths.paths) == ["10.10.0.0/24", "10.20.0.0/24"]
        with pytest.raises(grpc.RpcError) as refused:
            call("AddNeighbor", ours.AddNeighborRequest(), ours.AddNeighborResponse)
        assert refused.value.code() is grpc.StatusCode.UNIMPLEMENTED
    # The same speaker, through our own API: the peer and the path are there.
    listing = daemon.sart("bgp", "neighbor", "list").stdout
    assert "127.0.0.77" in listing
    assert "10.20.0.0/24" in daemon.sart("bgp", "global", "rib", "get").stdout
