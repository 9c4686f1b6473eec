"""The Rib against a dict of paths: after any announce / withdraw / drop sequence, the Loc-RIB
holds, per prefix, exactly the best of the paths the model holds, and every reported change
matches what the Loc-RIB became."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from netaddr import IPAddress, IPNetwork

from sart.bgp.messages import AsPath, LocalPref, MultiExitDisc, Origin
from sart.bgp.rib import Path, Rib, Source, best_path, multipath

SOURCES = [
    Source(IPAddress(f"10.0.0.{n}"), 65000 + n % 3, IPAddress(f"192.0.2.{n}"), n > 3)
    for n in range(1, 7)
]
PREFIXES = [IPNetwork(f"198.51.100.{n}/32") for n in range(4)]
PATHS = st.builds(
    lambda source, prefix, pref, length, origin, med: Path.to(
        prefix,
        source,
        source.address,
        (
            Origin(origin),
            AsPath.from_asns(*([source.asn] * length)),
            LocalPref(pref),
            MultiExitDisc(med),
        ),
    ),
    st.sampled_from(SOURCES),
    st.sampled_from(PREFIXES),
    st.sampled_from([100, 200]),
    st.integers(1, 3),
    st.integers(0, 2),
    st.integers(0, 2),
)


class RibMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.rib = Rib(multipath=True)
        self.model: dict[tuple[Source, IPNetwork], Path] = {}

    def _check(self, changes: list) -> None:  # type: ignore[type-arg]
        for change in changes:
            assert change.after == self.rib.lookup(change.prefix)
            assert change.before != change.after

    @rule(paths=st.lists(PATHS, max_size=5))
    def announce(self, paths: list[Path]) -> None:
        for path in paths:
            self.model[(path.source, path.prefix)] = path
        self._check(self.rib.announce(paths))

    @rule(source=st.sampled_from(SOURCES), prefix=st.sampled_from(PREFIXES))
    def withdraw(self, source: Source, prefix: IPNetwork) -> None:
        self.model.pop((source, prefix), None)
        self._check(self.rib.withdraw(source, [(prefix, 0)]))

    @rule(source=st.sampled_from(SOURCES))
    def drop_source(self, source: Source) -> None:
        for key in [k for k in self.model if k[0] == source]:
            del self.model[key]
        self._check(self.rib.drop_source(source))

    @invariant()
    def loc_rib_is_the_best_of_the_model(self) -> None:
        for prefix in PREFIXES:
            paths = [p for (_, pfx), p in self.model.items() if pfx == prefix]
            best = best_path(paths)
            expected = () if best is None else multipath(paths, best)
            assert self.rib.lookup(prefix) == expected
            if best is not None:
                # nothing in the model beats the best on LOCAL_PREF, then AS path length
                assert all(
                    (p.local_pref, -p.as_path.length) <= (best.local_pref, -best.as_path.length)
                    for p in paths
                )


TestRibMachine = RibMachine.TestCase
