"""Reading MRT files back with `bgpdump -m` (the Debian package): an independent reader of
what sart.bgp.mrt writes, for tests and benchmarks.

`bgpdump -m` prints one line per route, `|`-separated: for a RIB entry (TABLE_DUMP2) and an
announcement (BGP4MP ... A) the peer, the prefix and its attributes; for a withdrawal only the
prefix; for a state change the two states by number.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import attrs

BGPDUMP = "/usr/bin/bgpdump"


@attrs.frozen
class Route:
    """A RIB entry or an announcement as bgpdump shows it."""

    kind: str  # "B" (a RIB entry), "A" (announced), "W" (withdrawn)
    peer: str
    peer_as: int
    prefix: str
    as_path: str = ""
    origin: str = ""
    next_hop: str = ""
    local_pref: int = 0
    med: int = 0
    communities: str = ""
    path_id: int = 0  # of an add-path record (RFC 8050): bgpdump's *_AP lines


@attrs.frozen
class StateChange:
    peer: str
    peer_as: int
    old: int
    new: int


@attrs.frozen
class Dump:
    routes: tuple[Route, ...]
    states: tuple[StateChange, ...]
    errors: str  # what bgpdump said on stderr besides its banner


def prefixes(path: Path) -> list[str]:
    """The prefix of every route line, read as bgpdump prints them (for tables too large to
    hold as `Route`s)."""
    with subprocess.Popen(
        [BGPDUMP, "-m", "-q", str(path)], stdout=subprocess.PIPE, text=True
    ) as process:
        assert process.stdout is not None
        found = [line.split("|", 6)[5] for line in process.stdout if "|STATE|" not in line]
    if process.returncode != 0:
        raise RuntimeError(f"bgpdump failed ({process.returncode}) on {path}")
    return found


def read(path: Path, *, timeout: float = 600.0) -> Dump:
    """Every record of an MRT file, as `bgpdump -m -v` reads it."""
    done = subprocess.run(
        [BGPDUMP, "-m", "-v", str(path)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"bgpdump failed ({done.returncode}): {done.stderr[-2000:]}")
    routes: list[Route] = []
    states: list[StateChange] = []
    for line in done.stdout.splitlines():
        fields = line.split("|")
        path_id = 0
        if fields[0].endswith("_AP") and fields[2] != "STATE":
            path_id = int(fields.pop(6))  # after the prefix
        if fields[2] == "STATE":
            states.append(StateChange(fields[3], int(fields[4]), int(fields[5]), int(fields[6])))
        elif fields[2] == "W":
            routes.append(Route("W", fields[3], int(fields[4]), fields[5], path_id=path_id))
        else:
            routes.append(
                Route(
                    fields[2],
                    fields[3],
                    int(fields[4]),
                    fields[5],
                    as_path=fields[6],
                    origin=fields[7],
                    next_hop=fields[8],
                    local_pref=int(fields[9]),
                    med=int(fields[10]),
                    communities=fields[11],
                    path_id=path_id,
                )
            )
    errors = "\n".join(
        line
        for line in done.stderr.splitlines()
        if "logging to" not in line and "Processed" not in line and "Dumping" not in line
    )
    return Dump(tuple(routes), tuple(states), errors)
