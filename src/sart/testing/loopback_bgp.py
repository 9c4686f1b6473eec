"""A real `sartd bgp` process and a BGP peer that feeds it, on loopback addresses (all of
127.0.0.0/8 is local on Linux), for tests and benchmarks that go through the daemon, its API
and the `sart` CLI as an operator would."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Self

from netaddr import IPAddress

from sart.bgp.codes import Afi, Safi
from sart.bgp.fsm import Config, State
from sart.bgp.messages import FourOctetAsCapability, MultiprotocolCapability, Open, Update
from sart.bgp.session import Session
from sart.testing.peers import wait_for


def free_port(address: str) -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        port: int = sock.getsockname()[1]
        return port


class SartdBgp:
    """`sartd bgp` with `config` (the YAML keys, as a dict) and `flags`, listening for BGP on
    `address` (a free port) and for its API on a unix socket in `directory`."""

    def __init__(
        self, directory: Path, address: str, config: dict[str, Any], flags: Iterable[str] = ()
    ) -> None:
        self.port = free_port(address)
        self.api = f"unix:{directory / 'api.sock'}"
        file = directory / "bgp.yaml"
        file.write_text(json.dumps({**config, "listen_addresses": [address]}))
        command = [
            sys.executable, "-m", "sart.cli.sartd", "bgp", "-f", str(file), "--port",
            str(self.port), "--api-address", self.api, "--metrics-address", "", *flags,
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        wait_for(
            lambda: self.sart("bgp", "global", "get", check=False).returncode == 0,
            timeout=30,
            what="sartd bgp to answer",
        )

    def sart(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """The `sart` CLI against this daemon."""
        command = [sys.executable, "-m", "sart.cli.sart", *args, "--endpoint", self.api]
        return subprocess.run(command, capture_output=True, text=True, check=check, timeout=600)

    def prefixes(self) -> tuple[int, int]:
        """(IPv4, IPv6) prefixes in the Loc-RIB."""
        info = json.loads(self.sart("bgp", "global", "get", "--format", "json").stdout)
        return int(info["rib_ipv4"]), int(info["rib_ipv6"])

    def stop(self) -> None:
        self.process.terminate()
        self.process.communicate(timeout=30)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Feeder:
    """An established session from `source` to `target`:`port`, IPv4 and IPv6 unicast,
    4-octet ASNs."""

    def __init__(
        self,
        target: str,
        port: int,
        *,
        source: str,
        asn: int,
        router_id: str = "10.0.0.1",
        hold_time: int = 240,
    ) -> None:
        local = Open(
            my_as=asn if asn <= 0xFFFF else 23456,  # AS_TRANS for a 4-octet AS (RFC 6793)
            hold_time=hold_time,
            bgp_id=IPAddress(router_id),
            capabilities=(
                MultiprotocolCapability(Afi.IPV4, Safi.UNICAST),
                MultiprotocolCapability(Afi.IPV6, Safi.UNICAST),
                FourOctetAsCapability(asn),
            ),
        )
        self.session = Session(Config(local=local))
        self.sock = socket.create_connection((target, port), timeout=30, source_address=(source, 0))
        now = time.monotonic()
        self.session.start(now)
        self.session.connection_made(now)
        self.sock.sendall(self.session.data_to_send())
        while self.session.state is not State.ESTABLISHED:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError(f"{target} closed the connection during the handshake")
            self.session.receive_data(data, time.monotonic())
            self.sock.sendall(self.session.data_to_send())
        self.sock.settimeout(None)  # a large table takes the speaker a while to read

    def send(self, updates: Iterable[Update]) -> None:
        now = time.monotonic()
        for update in updates:
            self.session.send(update, now)
        self.sock.sendall(self.session.data_to_send())

    def send_raw(self, data: bytes) -> None:
        """Encoded UPDATEs (the codec's output, prepared beforehand)."""
        self.sock.sendall(data)

    def close(self) -> None:
        self.sock.close()
