"""One read's UPDATEs applied at once (`Rib.apply_updates`, what the speaker does) leave the
RIB as applying them one by one does, and report each prefix's net change once."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import given
from netaddr import IPAddress, IPNetwork

from sart.bgp.messages import AsPath, LocalPref, NextHop, Origin, Update
from sart.bgp.rib import Rib, Source

SOURCE = Source(IPAddress("10.0.0.2"), 65002, IPAddress("10.0.0.2"), internal=True)
OTHER = Source(IPAddress("10.0.0.3"), 65003, IPAddress("10.0.0.3"), internal=True)
PREFIXES = [IPNetwork(f"198.51.100.{n}/32") for n in range(4)]
UPDATES = st.builds(
    lambda withdrawn, nlri, pref, length: Update(
        withdrawn=tuple(withdrawn),
        attributes=(
            Origin(0),
            AsPath.from_asns(*([65002] * length)),
            NextHop(IPAddress("10.0.0.2")),
            LocalPref(pref),
        ),
        nlri=tuple(nlri),
    ),
    st.lists(st.sampled_from(PREFIXES), max_size=3),
    st.lists(st.sampled_from(PREFIXES), min_size=1, max_size=3),
    st.sampled_from([100, 200]),
    st.integers(1, 3),
)


def _rib(seed: list[Update]) -> Rib:
    rib = Rib(multipath=True)
    for update in seed:
        rib.apply_update(OTHER, update)
    return rib


@given(st.lists(UPDATES, max_size=3), st.lists(UPDATES, max_size=6))
def test_a_batch_is_the_updates_one_by_one(seed: list[Update], batch: list[Update]) -> None:
    one_by_one, at_once = _rib(seed), _rib(seed)
    before = {p: at_once.lookup(p) for p in PREFIXES}
    for update in batch:
        one_by_one.apply_update(SOURCE, update)
    changes = at_once.apply_updates(SOURCE, batch)
    after = {p: at_once.lookup(p) for p in PREFIXES}
    assert after == {p: one_by_one.lookup(p) for p in PREFIXES}
    assert {c.prefix: (c.before, c.after) for c in changes} == {
        p: (before[p], after[p]) for p in PREFIXES if before[p] != after[p]
    }
    assert len(changes) == len({c.key for c in changes})
    assert at_once.count(SOURCE) == one_by_one.count(SOURCE)
