"""The agent reads back what it gave the speaker as the same settings: otherwise every sync
would remove and add its neighbors again, restarting their sessions. The round trip is the
speaker API's own conversions (sart.api.convert), with no speaker running."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from sart.api import convert
from sart.api._gen.sart.speaker.v1 import speaker_pb2 as pb
from sart.api.client import FAMILY_NAMES
from sart.k8s.reconcile.agent import NeighborSettings
from sart.k8s.runtime.agent import neighbor_view


def through_the_speaker(settings: NeighborSettings, password: str = "") -> NeighborSettings:
    """AddNeighbor with `settings.options()` as SpeakerClient sends it, then ListNeighbors."""
    options: dict[str, Any] = settings.options()
    families = [FAMILY_NAMES[f] for f in options.pop("families")]
    sent = pb.Neighbor(address=settings.address, asn=settings.asn, families=families,
                       password=password, **options)  # fmt: skip
    config = convert.neighbor_config(sent)
    shown = pb.NeighborState(config=convert.neighbor_message(config), has_password=bool(password))
    return neighbor_view(shown)


@pytest.mark.parametrize(
    "settings",
    [
        NeighborSettings(address="10.0.0.1", asn=65000, name="bgppeer/a"),
        NeighborSettings(address="10.0.0.1", asn=65000, name="bgppeer/a", hold_time=0),
        NeighborSettings(
            address="10.0.0.1",
            asn=65000,
            name="bgppeer/a",
            hold_time=9,
            families=("ipv4",),
            graceful_restart=False,
        ),
        NeighborSettings(address="fd00::1", asn=4200000000, name="bgppeer/b", families=("ipv6",)),
        # What a speaker's file may hold, put back after an AS change:
        NeighborSettings(
            address="10.0.0.9",
            asn=65009,
            name="tor",
            port=1179,
            passive=True,
            ttl=2,
            local_address="10.0.0.2",
            admin_down=True,
            next_hops=("10.0.0.2", "fd00::2"),
        ),
    ],
)
def test_a_neighbor_reads_back_as_given(settings: NeighborSettings) -> None:
    assert through_the_speaker(settings) == settings


def test_a_password_is_seen_but_never_read_back() -> None:
    settings = NeighborSettings(address="10.0.0.9", asn=65009, name="tor")
    shown = through_the_speaker(settings, password="secret")
    assert shown.has_password and shown.same_session(settings)
    assert shown == attrs.evolve(settings, has_password=True)
