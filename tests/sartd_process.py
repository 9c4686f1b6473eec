"""A real `sartd bgp` process in a lab namespace, next to a router, for interop tests that drive
it as an operator would: its API on a unix socket the test reaches from outside the namespace,
through the `sart` CLI (`cli`) or gRPC (`call`)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from sart.api.client import SpeakerClient
from sart.testing.netns import Namespace
from waiting import eventually


class Sartd:
    """`sartd bgp --as ASN --router-id ROUTER_ID` in `namespace`, its API at
    `directory`/sartd.sock, its log (JSON lines) kept for `stop()`."""

    def __init__(self, namespace: Namespace, asn: int, router_id: str, directory: Path) -> None:
        self.endpoint = f"unix:{directory / 'sartd.sock'}"
        command = [
            *(sys.executable, "-m", "sart.cli.sartd", "bgp", "--as", str(asn)),
            *("--router-id", router_id, "--metrics-address", ""),
            *("--api-address", self.endpoint, "--format", "json"),
        ]
        self.process = namespace.popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.log: str | None = None
        eventually((directory / "sartd.sock").exists, what="sartd's API")

    def cli(self, *args: str) -> str:
        """Run `sart ARGS` against this sartd; its output."""
        proc = subprocess.run(
            [sys.executable, "-m", "sart.cli.sart", *args],
            check=False,
            env={**os.environ, "SART_ENDPOINT": self.endpoint},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, f"sart {' '.join(args)}: {proc.stdout}{proc.stderr}"
        return proc.stdout

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call `method` of the gRPC client (`sart.api.client.SpeakerClient`)."""

        async def run() -> Any:
            async with SpeakerClient(self.endpoint) as client:
                return await getattr(client, method)(*args, **kwargs)

        return asyncio.run(run())

    def neighbor(self, address: str) -> dict[str, Any]:
        """`sart bgp neighbor get ADDRESS --format json`."""
        state: dict[str, Any] = json.loads(
            self.cli("bgp", "neighbor", "get", address, "--format", "json")
        )
        return state

    def established(self, address: str) -> bool:
        return self.neighbor(address)["state"] == "SESSION_STATE_ESTABLISHED"

    def rib(self) -> list[str]:
        """The prefixes of the Loc-RIB, as `sart bgp global rib get` lists them."""
        rib = json.loads(self.cli("bgp", "global", "rib", "get", "--format", "json"))
        return [p["prefix"] for p in rib]

    def stop(self) -> str:
        """Stop it (once); its log."""
        if self.log is None:
            self.process.terminate()
            _, stderr = self.process.communicate(timeout=15)
            self.log = stderr.decode()
        return self.log
