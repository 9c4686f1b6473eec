"""Graceful restart as the receiving speaker (RFC 4724 4.2), sans-IO: whose paths are kept, until
when, and what the RIB must do with them.

When a session ends because its TCP connection failed (no NOTIFICATION either way) and the peer
advertised the Graceful Restart capability with families, its paths stay in use, marked stale,
for its restart time (at most ours): the restart timer. Once the peer is back, it has our
restart time (the stale-path timer) to send End-of-RIB for every family it negotiated; then the
stale paths it did not announce again are swept. A timer that runs out first sweeps them (the
peer is back) or drops them all (it is not). Any other end of a session drops the paths at
once, as does a peer that comes back as another BGP speaker.

`StalePaths` is one neighbor's; each method returns the next one and the actions for the RIB,
with time passed in. The caller arms one timer at `deadline` and calls `expired` then.
"""

from __future__ import annotations

import attrs

from sart.bgp.messages import Family, GracefulRestartCapability
from sart.bgp.rib import Source


@attrs.frozen
class MarkStale:
    """Every path of `source` stays, stale, until announced again."""

    source: Source


@attrs.frozen
class DropPaths:
    """Every path of `source` is gone."""

    source: Source


@attrs.frozen
class SweepStale:
    """The paths of `source` still stale are gone."""

    source: Source


Action = MarkStale | DropPaths | SweepStale


@attrs.frozen
class StalePaths:
    """A neighbor's paths kept through its restart: none (`source` None), kept while it is down
    (restart timer), or kept while it resends them (`back`: stale-path timer)."""

    source: Source | None = None
    deadline: float | None = None
    back: bool = False
    end_of_rib_due: frozenset[Family] = frozenset()

    def session_down(
        self,
        source: Source,
        *,
        connection_lost: bool,
        capability: GracefulRestartCapability | None,
        honour: bool,
        restart_time: float,
        now: float,
    ) -> tuple[StalePaths, tuple[Action, ...]]:
        """The session with `source` ended; `connection_lost`: without a NOTIFICATION either
        way; `capability`: the peer's; `honour`: whether we keep a restarting peer's paths at
        all (not when configured off, nor when we stop); `restart_time`: ours, the longest we
        keep them."""
        lost = connection_lost and honour
        if lost and capability is not None and capability.families:
            wait = min(capability.restart_time, restart_time)
            return StalePaths(source, now + wait), (MarkStale(source),)
        return StalePaths(), (DropPaths(source),)

    def session_up(
        self, source: Source, families: frozenset[Family], stale_time: float, now: float
    ) -> tuple[StalePaths, tuple[Action, ...]]:
        """A session with `source` is Established with these families: a restarted peer has
        `stale_time` to resend its paths; a different speaker's kept paths are dropped."""
        if self.source is None:
            return self, ()
        if self.source != source:
            return StalePaths(), (DropPaths(self.source),)
        return StalePaths(source, now + stale_time, True, families), ()

    def end_of_rib(self, family: Family) -> tuple[StalePaths, tuple[Action, ...]]:
        """The peer, back, sent End-of-RIB for `family`: the last one due sweeps."""
        if not self.back:
            return self, ()
        due = self.end_of_rib_due - {family}
        if due:
            return attrs.evolve(self, end_of_rib_due=due), ()
        assert self.source is not None
        return StalePaths(), (SweepStale(self.source),)

    def expired(self, now: float) -> tuple[StalePaths, tuple[Action, ...]]:
        """The timer at `now`: the restart time ran out (every kept path goes) or the
        stale-path time did (the paths still stale go)."""
        if self.deadline is None or self.deadline > now:
            return self, ()
        assert self.source is not None
        return StalePaths(), (SweepStale(self.source) if self.back else DropPaths(self.source),)

    def stopped(self) -> tuple[StalePaths, tuple[Action, ...]]:
        """The neighbor is stopped or removed: nothing is kept any longer."""
        if self.source is None:
            return self, ()
        return StalePaths(), (DropPaths(self.source),)
