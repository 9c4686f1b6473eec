"""Wireshark's tshark (Debian's) as the independent reader of a BMP stream: capture a
collector's traffic in a namespace, or wrap bytes into a capture, then dissect it into the
BMP messages tshark sees and the problems it reports (malformed packets, expert errors)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from sart.testing.netns import LabError, Namespace

TSHARK = "tshark"
WARNING = 0x00600000  # expert info severity (epan/proto.h PI_WARN); errors are above


@attrs.frozen
class BmpMessage:
    """One BMP message as tshark dissected it: its type and every field below it, by field
    name, the values in the order tshark shows them."""

    kind: int  # bmp.type
    fields: dict[str, list[str]]

    def values(self, name: str) -> list[str]:
        return self.fields.get(name, [])

    def value(self, name: str) -> str:
        """The single value of a field; LabError when it is absent or repeated."""
        found = self.values(name)
        if len(found) != 1:
            raise LabError(f"BMP message type {self.kind}: {name} is {found}, want one value")
        return found[0]

    @property
    def prefixes(self) -> list[str]:
        """The prefixes the BGP message announces (NLRI, MP_REACH_NLRI), as 'address/length'."""
        announced = self.values("bgp.nlri_prefix") + self.values("bgp.mp_reach_nlri_ipv6_prefix")
        return self._with_lengths(announced, len(self.values("bgp.withdrawn_prefix")))

    @property
    def withdrawn(self) -> list[str]:
        """The IPv4 prefixes the BGP message withdraws, as 'address/length'."""
        return self._with_lengths(self.values("bgp.withdrawn_prefix"), 0)

    def _with_lengths(self, addresses: list[str], skip: int) -> list[str]:
        # tshark names every prefix length alike, in wire order: withdrawn routes first.
        lengths = self.values("bgp.prefix_length")[skip:]
        return [f"{a}/{n}" for a, n in zip(addresses, lengths, strict=False)]


@attrs.frozen
class Dissection:
    messages: list[BmpMessage]
    problems: list[str]  # malformed packets, expert warnings and errors, as tshark words them


def _leaves(value: Any, key: str, out: dict[str, list[str]]) -> None:
    if isinstance(value, dict):
        for name, inner in value.items():
            _leaves(inner, name, out)
    elif isinstance(value, list):
        for inner in value:
            _leaves(inner, key, out)
    else:
        out.setdefault(key, []).append(str(value))


def _problems(value: Any, out: list[str]) -> None:
    """Malformed packets, and expert infos of warning severity or worse (not the chat and
    notes that describe a normal connection)."""
    if isinstance(value, dict):
        severity = value.get("_ws.expert.severity")
        if severity is not None and int(severity) >= WARNING:
            out.append(str(value.get("_ws.expert.message", value)))
        for name, inner in value.items():
            if name == "_ws.malformed":
                out.append(f"malformed: {json.dumps(inner)}")
            _problems(inner, out)
    elif isinstance(value, list):
        for inner in value:
            _problems(inner, out)


def dissect(pcap: Path, port: int, *, asn_length: int | None = None) -> Dissection:
    """Every BMP message of a capture whose TCP port `port` carries BMP. `asn_length` (2 or
    4) fixes how wide tshark reads the ASNs of AS_PATHs: by default it guesses from each
    path (tshark 4.0's BMP dissector does not read the per-peer header's A flag)."""
    command = [TSHARK, "-r", str(pcap), "-d", f"tcp.port=={port},bmp"]
    if asn_length is not None:
        command += ["-o", f"bgp.asn_len:{asn_length}"]
    result = subprocess.run(
        [*command, "-T", "json", "--no-duplicate-keys"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if result.returncode != 0:
        raise LabError(f"tshark -r {pcap} failed: {result.stderr.strip()}")
    messages: list[BmpMessage] = []
    problems: list[str] = []
    for frame in json.loads(result.stdout or "[]"):
        layers = frame["_source"]["layers"]
        _problems(layers, problems)
        found = layers.get("bmp", [])
        for layer in found if isinstance(found, list) else [found]:
            fields: dict[str, list[str]] = {}
            _leaves(layer, "", fields)
            messages.append(BmpMessage(int(fields["bmp.type"][0]), fields))
    return Dissection(messages, problems)


def write_pcap(messages: Sequence[bytes], pcap: Path, port: int) -> None:
    """A capture of one TCP stream to `port` carrying these messages, one per segment
    (text2pcap, from Wireshark's tools)."""
    text = pcap.with_suffix(".txt")
    with text.open("w") as out:
        for message in messages:
            for offset in range(0, len(message), 16):
                octets = " ".join(f"{b:02x}" for b in message[offset : offset + 16])
                out.write(f"{offset:06x} {octets}\n")
            out.write("\n")
    subprocess.run(
        ["text2pcap", "-q", "-T", f"40000,{port}", str(text), str(pcap)],
        check=True,
        capture_output=True,
        timeout=60,
    )


class Capture:
    """tshark capturing TCP port `port` on an interface of a namespace into `pcap`, from
    __enter__ (once it says it captures) until __exit__.

    tshark writes the capture to a pipe, which it flushes after every packet (a file it
    would buffer), and a thread of ours copies it to `pcap`: `wait_for` can then tell when a
    packet is in."""

    def __init__(self, namespace: Namespace, interface: str, port: int, pcap: Path) -> None:
        self.namespace = namespace
        self.interface = interface
        self.port = port
        self.pcap = pcap
        self._process: subprocess.Popen[bytes] | None = None
        self._copier: threading.Thread | None = None
        self._log = pcap.with_suffix(".log")

    def __enter__(self) -> Capture:
        command = [TSHARK, "-i", self.interface, "-f", f"tcp port {self.port}", "-w", "-"]
        with self._log.open("wb") as log:
            self._process = self.namespace.popen(command, stdout=subprocess.PIPE, stderr=log)
        self._copier = threading.Thread(target=self._copy, name="tshark-copy", daemon=True)
        self._copier.start()
        deadline = time.monotonic() + 30
        while b"Capturing on" not in self._log.read_bytes():
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise LabError(f"tshark did not start: {self._log.read_text()}")
            time.sleep(0.05)
        return self

    def _copy(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        pipe = self._process.stdout.fileno()
        with self.pcap.open("wb") as out:
            while chunk := os.read(pipe, 65536):  # what has come, not a full buffer
                out.write(chunk)
                out.flush()

    def wait_for(self, display_filter: str, timeout: float = 30.0) -> None:
        """Until a packet the display filter matches is in the file (and so every packet
        captured before it)."""
        deadline = time.monotonic() + timeout
        command = [TSHARK, "-r", str(self.pcap), "-Y", display_filter]
        while True:
            found = subprocess.run(command, capture_output=True, check=False, timeout=60)
            if found.stdout.strip():
                return
            if time.monotonic() > deadline:
                raise LabError(f"no packet matching {display_filter!r} captured in {timeout} s")
            time.sleep(0.1)

    def __exit__(self, *exc: object) -> None:
        process = self._process
        if process is None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if self._copier is not None:
            self._copier.join(timeout=30)
