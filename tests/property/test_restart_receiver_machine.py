"""Graceful restart, receiving side, against RFC 4724 4.2 on a model RIB: random session ends
and returns, End-of-RIBs, re-announced paths and timers; the receiver's actions are applied
to a dict of paths, and what the RFC says must hold of it is checked after every step."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from netaddr import IPAddress

from sart.bgp.messages import (
    IPV4_UNICAST,
    IPV6_UNICAST,
    Family,
    GracefulRestartCapability,
    GracefulRestartFamily,
)
from sart.bgp.restart_receiver import Action, DropPaths, MarkStale, StalePaths, SweepStale
from sart.bgp.rib import Source

SPEAKERS = (
    Source(IPAddress("192.0.2.2"), 65002, IPAddress("10.0.0.2")),
    Source(IPAddress("192.0.2.2"), 65002, IPAddress("10.0.0.3")),  # replaced by another box
)
FAMILIES = (IPV4_UNICAST, IPV6_UNICAST)
PREFIXES = st.sampled_from(["a", "b", "c", "d"])
OUR_RESTART_TIME = 120.0


class RestartReceiverMachine(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self.kept = StalePaths()
        self.now = 0.0
        self.up: Source | None = None
        self.families: frozenset[Family] = frozenset()
        self.rib: dict[Source, dict[str, bool]] = {}  # prefix -> stale
        self.latest = 0.0  # when the last kept path must be gone at the latest

    def apply(self, result: tuple[StalePaths, tuple[Action, ...]]) -> None:
        self.kept, actions = result
        for action in actions:
            paths = self.rib.get(action.source, {})
            if isinstance(action, MarkStale):
                self.rib[action.source] = dict.fromkeys(paths, True)
            elif isinstance(action, SweepStale):
                self.rib[action.source] = {p: s for p, s in paths.items() if not s}
            else:
                assert isinstance(action, DropPaths)
                self.rib.pop(action.source, None)

    @precondition(lambda self: self.up is None)
    @rule(
        speaker=st.sampled_from(SPEAKERS),
        families=st.sets(st.sampled_from(FAMILIES), min_size=1),
        later=st.floats(0, 200),
    )
    def session_up(self, speaker: Source, families: set[Family], later: float) -> None:
        self.now += later
        before = self.kept.source
        self.apply(self.kept.session_up(speaker, frozenset(families), OUR_RESTART_TIME, self.now))
        self.up, self.families = speaker, frozenset(families)
        if before is not None and before != speaker:
            assert before not in self.rib  # another speaker's kept paths are not its own
        if self.kept.source is not None:
            self.latest = self.now + OUR_RESTART_TIME  # the stale-path timer

    @precondition(lambda self: self.up is not None)
    @rule(prefix=PREFIXES)
    def announce(self, prefix: str) -> None:
        assert self.up is not None
        self.rib.setdefault(self.up, {})[prefix] = False  # announced again: no longer stale

    @precondition(lambda self: self.up is not None)
    @rule(family=st.sampled_from(FAMILIES))
    def end_of_rib(self, family: Family) -> None:
        self.apply(self.kept.end_of_rib(family))

    @precondition(lambda self: self.up is not None)
    @rule(
        lost=st.booleans(),
        honour=st.booleans(),
        restart_time=st.none() | st.integers(0, 4095),
        with_families=st.booleans(),
        later=st.floats(0, 200),
    )
    def session_down(
        self,
        lost: bool,
        honour: bool,
        restart_time: int | None,
        with_families: bool,
        later: float,
    ) -> None:
        assert self.up is not None
        self.now += later
        capability = None
        if restart_time is not None:
            listed = (GracefulRestartFamily(1, 1, 0x80),) if with_families else ()
            capability = GracefulRestartCapability(0, restart_time, listed)
        source, fresh = self.up, dict(self.rib.get(self.up, {}))
        self.apply(
            self.kept.session_down(
                source,
                connection_lost=lost,
                capability=capability,
                honour=honour,
                restart_time=OUR_RESTART_TIME,
                now=self.now,
            )
        )
        self.up = None
        if lost and honour and capability is not None and with_families:
            # RFC 4724 4.2: kept, all stale, for the peer's restart time (at most ours)
            assert self.rib.get(source, {}) == dict.fromkeys(fresh, True)
            self.latest = self.now + min(restart_time or 0, OUR_RESTART_TIME)
        else:
            assert source not in self.rib

    @rule(later=st.floats(0, 300))
    def time_passes(self, later: float) -> None:
        self.now += later
        deadline = self.kept.deadline
        if deadline is not None and deadline <= self.now:
            self.apply(self.kept.expired(self.now))

    @invariant()
    def stale_paths_are_the_kept_ones_and_have_a_deadline(self) -> None:
        for source, paths in self.rib.items():
            if any(paths.values()):
                assert source == self.kept.source and self.kept.deadline is not None
                assert self.kept.deadline <= self.latest + 1e-9
        assert self.kept.deadline is None or self.kept.deadline >= self.now

    @invariant()
    def a_kept_source_is_down_or_back_as_itself(self) -> None:
        if self.kept.source is not None:
            assert self.kept.back == (self.up == self.kept.source)
            if self.kept.back:
                assert self.kept.end_of_rib_due <= self.families
        for source in self.rib:
            assert source in (self.up, self.kept.source)


TestRestartReceiverMachine = RestartReceiverMachine.TestCase
