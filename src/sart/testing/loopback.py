"""Speakers on loopback for tests and benchmarks: 127.0.0.0/8 is all local on Linux, so each
speaker gets an address of its own and its router id follows from it (127.0.0.21 ->
10.255.0.21)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from netaddr import IPAddress

from sart.bgp.config import SpeakerConfig
from sart.bgp.speaker import Speaker


def speaker_config(address: IPAddress, asn: int, **kwargs: Any) -> SpeakerConfig:
    """A speaker listening on `address` only, on a free port, dialling again after 0.5 s."""
    return SpeakerConfig(
        asn=asn,
        router_id=IPAddress(f"10.255.0.{address.words[-1]}"),
        port=0,
        listen_addresses=(address,),
        connect_retry_time=0.5,
        **kwargs,
    )


@contextlib.asynccontextmanager
async def started(*configs: SpeakerConfig) -> AsyncIterator[list[Speaker]]:
    """Speakers started, and stopped at the end."""
    speakers = [Speaker(config) for config in configs]
    for speaker in speakers:
        await speaker.start()
    try:
        yield speakers
    finally:
        for speaker in speakers:
            await speaker.stop()
