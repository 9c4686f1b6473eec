"""Graceful restart as the restarting speaker (RFC 4724 4.1), sans-IO.

Two decisions live here, with time passed in:

- what our Graceful Restart capability says: the restart time, the Restart State bit on the
  first sessions after we (re)started, and each family with its Forwarding State bit;
- when End-of-RIB may go out: only once our own table is complete. `InitialTable` is that
  gate: complete at once for a speaker whose paths come from its configuration, or waiting
  for an explicit signal (the agent's first full sync, through the API) with the selection
  deferral timer as the deadline after which End-of-RIB goes out anyway.

The speaker's forwarding state is the kernel's (sartd bgp installs nothing itself), so a
restart of the process preserves it: the Forwarding State bit is set for every family.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

import attrs

from sart.bgp.messages import Family, GracefulRestartCapability, GracefulRestartFamily

MAX_RESTART_TIME = 0x0FFF  # 12 bits (RFC 4724 3)
FORWARDING_STATE = 0x80  # F bit of a family's flags (RFC 4724 3)


def restart_capability(
    restart_time: int,
    families: Iterable[Family] = (),
    *,
    restarting: bool = False,
    forwarding: bool = True,
) -> GracefulRestartCapability:
    """Our capability: `families` empty for a receiving-only speaker; `restarting` sets the
    Restart State bit; `forwarding` the Forwarding State bit of every family listed."""
    flags = FORWARDING_STATE if forwarding else 0
    listed = tuple(
        GracefulRestartFamily(f.afi, f.safi, flags)
        for f in sorted(set(families), key=lambda f: (f.afi, f.safi))
    )
    return GracefulRestartCapability(
        GracefulRestartCapability.RESTART_STATE if restarting else 0,
        min(max(restart_time, 0), MAX_RESTART_TIME),
        listed,
    )


class Completed(enum.Enum):
    """Why the initial table counts as complete."""

    CONFIGURED = "configured"  # no signal asked for: the configured paths are the table
    SIGNALLED = "signalled"  # EndOfInitialTable: the agent re-added everything
    DEFERRAL_EXPIRED = "selection deferral timer expired"


@attrs.frozen
class InitialTable:
    """Whether our own table is complete, so that End-of-RIB may be sent (RFC 4724 4.1:
    the restarting speaker sends End-of-RIB once its initial update is done).

    `deadline` is the selection deferral timer while waiting, None once complete."""

    completed: Completed | None = Completed.CONFIGURED
    deadline: float | None = None

    @classmethod
    def waiting(cls, now: float, deferral_time: float) -> InitialTable:
        """Waiting for the signal, for at most `deferral_time` seconds from `now`."""
        if deferral_time <= 0:
            return cls(Completed.DEFERRAL_EXPIRED)
        return cls(None, now + deferral_time)

    @property
    def complete(self) -> bool:
        return self.completed is not None

    def signal(self) -> InitialTable:
        """The table is complete (idempotent: a second signal changes nothing)."""
        return self if self.complete else InitialTable(Completed.SIGNALLED)

    def handle_timer(self, now: float) -> InitialTable:
        if self.deadline is not None and now >= self.deadline:
            return InitialTable(Completed.DEFERRAL_EXPIRED)
        return self

    def next_deadline(self) -> float | None:
        return self.deadline


def may_send_end_of_rib(
    table: InitialTable, *, sent: bool, pending: bool, established: bool
) -> bool:
    """Whether a session's writer sends its End-of-RIBs now: not yet sent, the session up,
    everything the peer was due written, and our table complete."""
    return established and not sent and not pending and table.complete
