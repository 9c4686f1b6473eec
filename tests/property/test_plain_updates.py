"""A PlainUpdate (what a session made with plain_updates delivers) changes the RIB exactly as
the Update it stands for: the same Changes, the same paths kept, the same routes ignored, for
internal and external sources, paths through our own AS and unusable next hops included."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import assume, given
from netaddr import IPAddress, IPNetwork

from sart.bgp.context import SessionContext
from sart.bgp.messages import (
    AsPath,
    ClusterList,
    Communities,
    LocalPref,
    MultiExitDisc,
    NextHop,
    Origin,
    PathAttribute,
    PlainUpdate,
    Update,
)
from sart.bgp.rib import Ignored, Rib, Source
from sart.bgp.wire import decode_framed, encode_message

CTX = SessionContext(four_octet_as=True)
LOCAL_AS = 65000
OURS = IPAddress("10.0.0.1")  # the session's own address: a next hop that is never used
EXTERNAL = Source(IPAddress("10.0.0.2"), 65002, IPAddress("10.0.0.2"))
INTERNAL = Source(IPAddress("10.0.0.3"), LOCAL_AS, IPAddress("10.0.0.3"), internal=True)
OTHER = Source(IPAddress("10.0.0.4"), 65004, IPAddress("10.0.0.4"))
PREFIXES = [IPNetwork(f"198.51.100.{n * 8}/29") for n in range(4)] + [IPNetwork("0.0.0.0/0")]


@st.composite
def updates(draw: st.DrawFn) -> Update:
    """UPDATEs a PlainUpdate can carry, with optional and internal-only attributes, AS paths
    through our AS and next hops that cannot be used among them."""
    asns = draw(st.lists(st.sampled_from([LOCAL_AS, 65002, 65010, 65020]), min_size=1))
    hop = draw(st.sampled_from(["10.0.0.2", "10.0.0.9", str(OURS), "127.0.0.1", "224.0.0.5"]))
    attributes: list[PathAttribute] = [
        Origin(draw(st.integers(0, 2))),
        AsPath.from_asns(*asns),
        NextHop(IPAddress(hop)),
    ]
    optional = [
        MultiExitDisc(draw(st.integers(0, 20))),
        LocalPref(draw(st.sampled_from([100, 200]))),
        Communities((draw(st.integers(0, 2**32 - 1)),)),
        ClusterList((IPAddress("10.0.0.7"),)),
    ]
    attributes += draw(st.lists(st.sampled_from(optional), unique_by=type))
    nlri = draw(st.lists(st.sampled_from(PREFIXES), min_size=1, max_size=3, unique=True))
    return Update(attributes=tuple(attributes), nlri=tuple(nlri))


def plain(update: Update) -> PlainUpdate:
    decoded = decode_framed(encode_message(update, CTX), CTX, plain=True)
    assert isinstance(decoded, PlainUpdate)
    assert decoded.update() == update
    return decoded


def applied(
    rib: Rib, source: Source, batch: list[Update] | list[PlainUpdate]
) -> tuple[object, ...]:
    ignored: list[Ignored] = []
    changes = rib.apply_updates(source, batch, 5.0, local_addresses=(OURS,), ignored=ignored)
    return tuple(changes), tuple(ignored)


@given(
    st.lists(updates(), max_size=3),
    st.lists(st.tuples(st.sampled_from([EXTERNAL, INTERNAL]), st.lists(updates(), max_size=4))),
    st.booleans(),
)
def test_a_plain_update_changes_the_rib_as_its_update_does(
    seed: list[Update], batches: list[tuple[Source, list[Update]]], multipath: bool
) -> None:
    full, fast = (Rib(local_asn=LOCAL_AS, multipath=multipath) for _ in range(2))
    assume(any(batch for _, batch in batches))
    for rib in (full, fast):
        rib.apply_updates(OTHER, seed)
    for source, batch in batches:
        assert applied(fast, source, [plain(u) for u in batch]) == applied(full, source, batch)
        assert list(fast) == list(full)
        for source_ in (EXTERNAL, INTERNAL, OTHER):
            assert set(fast.paths_from(source_)) == set(full.paths_from(source_))
