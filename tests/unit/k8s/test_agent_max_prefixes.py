"""A BGPPeer's maxPrefixes reaches the speaker's neighbor, and the neighbor the speaker reports
back compares equal (no delete-and-add loop)."""

from __future__ import annotations

from netaddr import IPAddress

from sart.api import convert
from sart.api._gen.sart.speaker.v1 import speaker_pb2 as pb
from sart.bgp.config import NeighborConfig
from sart.k8s.convert import make_converter
from sart.k8s.models import BGPPeer, BGPPeerSpec, MaxPrefixes, ObjectMeta, SpeakerConfig
from sart.k8s.reconcile.agent import neighbor_settings
from sart.k8s.runtime.agent import neighbor_view


def _peer(max_prefixes: MaxPrefixes | None) -> BGPPeer:
    return BGPPeer(
        metadata=ObjectMeta(name="tor"),
        spec=BGPPeerSpec(
            asn=65010,
            addr=IPAddress("10.0.0.3"),
            node_bgp_ref="n1",
            speaker=SpeakerConfig(path="unix:/run/sart/bgp.sock"),
            max_prefixes=max_prefixes,
        ),
    )


def _round_trip(peer: BGPPeer) -> NeighborConfig:
    """What the agent asks for, added through the API and listed back, is what it asked for."""
    settings, problems = neighbor_settings(peer)
    assert problems == []
    options = settings.options()
    families = [convert.FAMILY_OF_VERSION[4 if f == "ipv4" else 6] for f in options.pop("families")]
    message = pb.Neighbor(address=settings.address, asn=settings.asn, families=families, **options)
    config = convert.neighbor_config(message)
    listed = neighbor_view(pb.NeighborState(config=convert.neighbor_message(config)))
    assert listed.same_session(settings)
    return config


def test_max_prefixes_reaches_the_speaker() -> None:
    peer = _peer(MaxPrefixes(limit=100, warning_percent=80, restart_seconds=30))
    settings, _ = neighbor_settings(peer)
    assert (
        settings.max_prefixes,
        settings.max_prefixes_warning,
        settings.max_prefixes_restart,
    ) == (
        100,
        80,
        30,
    )
    config = _round_trip(peer)
    assert config.prefix_limit is not None
    assert (config.prefix_limit.limit, config.prefix_limit.restart_time) == (100, 30.0)


def test_no_max_prefixes_no_limit() -> None:
    config = _round_trip(_peer(None))
    assert config.prefix_limit is None


def test_the_crd_field_in_json() -> None:
    converter = make_converter()
    spec = converter.structure(
        {
            "asn": 65010,
            "addr": "10.0.0.3",
            "nodeBGPRef": "n1",
            "speaker": {"path": "unix:/run/sart/bgp.sock"},
            "maxPrefixes": {"limit": 10, "restartSeconds": 2},
        },
        BGPPeerSpec,
    )
    assert spec.max_prefixes == MaxPrefixes(limit=10, warning_percent=75, restart_seconds=2)
