"""Real BGP peers for interop tests: FRR, BIRD 2 and GoBGP, each running in a `Namespace`.

All three share one description of what to run (`BgpConfig` with its `Neighbor`s) and one
interface (`Peer`): start/stop/restart, freeze/thaw (SIGSTOP/SIGCONT), neighbor states, the
daemon's table, runtime announce/withdraw, the last error a session saw and the daemon's memory.
Configuration files are rendered from the `BgpConfig` by the `render_*` functions below (pure, so
a test can print them) into a per-instance work directory, which is removed on `stop()`; set
SART_LAB_KEEP=1 to keep it for a post-mortem.

Conventions, the same for the three daemons:
- states are RFC 4271 names in lower case: "idle", "connect", "active", "opensent",
  "openconfirm", "established";
- routes are exact prefixes (`str(IPNetwork)`), each with the next hops of every usable path the
  daemon holds for it, the best path first; a route the daemon originates itself has the
  unspecified address ("0.0.0.0" or "::") as its next hop;
- originated routes carry ORIGIN IGP (ECMP needs equal attributes across speakers);
- timers default to lab values (hold 9 s, connect retry 2 s) so sessions come back quickly.

    with Namespace.create("r") as ns:
        frr = Frr(ns, BgpConfig(router_id="10.0.0.1", local_as=65000,
                                neighbors=[neighbor("10.0.0.2", 65001)]))
        with frr:
            frr.wait_established("10.0.0.2", timeout=30)
"""

from __future__ import annotations

import abc
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Literal, Self, TypeVar

import attrs
import netaddr

from sart.testing.netns import LabError, Link, Namespace, link, run_host

Family = Literal["ipv4", "ipv6"]
FAMILIES: tuple[Family, ...] = ("ipv4", "ipv6")
STATES = ("idle", "connect", "active", "opensent", "openconfirm", "established")
UNSPECIFIED: dict[Family, str] = {"ipv4": "0.0.0.0", "ipv6": "::"}

FRR_LIB = Path("/usr/lib/frr")
FRR_CRASHLOG_DIR = Path("/var/tmp/frr")
WORKDIR_PREFIX = "sartlab"
T = TypeVar("T")


class DaemonError(LabError):
    """A daemon failed to start, exited, or refused a command. The message ends with the tail
    of its log."""


# -- what to run ----------------------------------------------------------------------------


def _family_of(address: str) -> Family:
    return "ipv6" if netaddr.IPAddress(address).version == 6 else "ipv4"


def _prefix_family(prefix: str) -> Family:
    return "ipv6" if netaddr.IPNetwork(prefix).version == 6 else "ipv4"


def _check_address(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    netaddr.IPAddress(value)


def _check_asn(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not 1 <= value <= 0xFFFFFFFF:
        raise ValueError(f"{attribute.name} must be a 4-octet ASN, got {value}")


def _check_hold(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value != 0 and value < 3:
        raise ValueError(f"hold time must be 0 or at least 3 s, got {value}")


@attrs.frozen(kw_only=True)
class Neighbor:
    """One BGP neighbor of a peer daemon.

    `families` defaults to the family of `address` (an IPv6 session carries IPv6 unicast).
    `multihop` is the TTL for an eBGP session that is not directly connected (None: direct).
    `graceful_restart` advertises the capability (RFC 4724) with `BgpConfig.restart_time`."""

    address: str = attrs.field(validator=_check_address)
    remote_as: int = attrs.field(validator=_check_asn)
    passive: bool = False
    hold_time: int = attrs.field(default=9, validator=_check_hold)
    connect_retry: int = 2
    graceful_restart: bool = False
    multihop: int | None = None
    families: tuple[Family, ...] = ()
    port: int = 179
    local_address: str | None = None
    # BFD with the neighbor (FRR's bfdd, BIRD's protocol bfd): (min_rx, min_tx, multiplier),
    # milliseconds.
    bfd: tuple[int, int, int] | None = None

    @property
    def afis(self) -> tuple[Family, ...]:
        return self.families or (_family_of(self.address),)

    @property
    def keepalive(self) -> int:
        return max(1, self.hold_time // 3) if self.hold_time else 0


def neighbor(address: str, remote_as: int, **options: Any) -> Neighbor:
    """Shorthand for `Neighbor(address=..., remote_as=..., **options)`."""
    return Neighbor(address=address, remote_as=remote_as, **options)


def _normalise_prefixes(prefixes: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(str(netaddr.IPNetwork(p).cidr) for p in prefixes))


def _neighbors(value: Iterable[Neighbor]) -> tuple[Neighbor, ...]:
    return tuple(value)


def _next_hops(value: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    return tuple(
        (str(netaddr.IPNetwork(prefix).cidr), str(netaddr.IPAddress(hop))) for prefix, hop in value
    )


@attrs.frozen(kw_only=True)
class BgpConfig:
    """What a peer daemon runs: identity, neighbors, the routes it originates (IPv4 and IPv6
    mixed) and how many equal paths it may use (> 1 turns ECMP on where the daemon has it:
    FRR maximum-paths with as-path multipath-relax, GoBGP use-multiple-paths).

    `next_hops` pairs some originated routes with the NEXT_HOP sent for them in place of the
    daemon's own address, to every neighbor, whatever it is (a loopback address, the
    receiver's own): what a receiver does with an unusable one (RFC 4271 6.3) can be tested.
    FRR rewrites it with an outbound route-map, BIRD in its export filter, GoBGP originates
    the route with it (and sends it as it is)."""

    router_id: str = attrs.field(validator=_check_address)
    local_as: int = attrs.field(validator=_check_asn)
    neighbors: tuple[Neighbor, ...] = attrs.field(default=(), converter=_neighbors)
    routes: tuple[str, ...] = attrs.field(default=(), converter=_normalise_prefixes)
    max_paths: int = 1
    listen_port: int = 179
    restart_time: int = 120
    next_hops: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_next_hops)

    def routes_of(self, family: Family) -> tuple[str, ...]:
        return tuple(r for r in self.routes if _prefix_family(r) == family)

    def neighbor(self, address: str) -> Neighbor:
        for n in self.neighbors:
            if netaddr.IPAddress(n.address) == netaddr.IPAddress(address):
                return n
        raise LabError(f"{address} is not a configured neighbor ({self.router_id})")


@attrs.frozen
class LastError:
    """The last error a daemon reports for a session, in its own words (`text`), with the
    NOTIFICATION code and subcode when it says them, and whether it received (True) or sent
    (False) that NOTIFICATION (None when it does not say)."""

    text: str
    code: int | None = None
    subcode: int | None = None
    received: bool | None = None


@attrs.frozen(kw_only=True)
class RouteAttributes:
    """The attributes a sender chooses for a route, as the daemon holds them on its best path:
    communities as "ASN:VALUE" (RFC 1997) and large communities as "GLOBAL:LOCAL1:LOCAL2" (RFC
    8092), each in the order the daemon lists them; MED and LOCAL_PREF None when the path has
    none (BIRD gives every eBGP route a LOCAL_PREF of its own, 100)."""

    communities: tuple[str, ...] = ()
    large_communities: tuple[str, ...] = ()
    med: int | None = None
    local_pref: int | None = None


# -- rendering (pure) -----------------------------------------------------------------------


def render_frr_bgpd(config: BgpConfig, *, hostname: str = "sartlab") -> str:
    """bgpd.conf for FRR 8: no eBGP policy requirement, no network import check (a `network`
    is announced without a matching RIB route), each neighbor activated per family."""
    lines = [
        f"hostname {hostname}",
        "!",
        f"router bgp {config.local_as}",
        f" bgp router-id {config.router_id}",
        " no bgp ebgp-requires-policy",
        " no bgp default ipv4-unicast",
        " no bgp network import-check",
        " bgp log-neighbor-changes",
    ]
    if config.max_paths > 1:
        lines.append(" bgp bestpath as-path multipath-relax")
    if any(n.graceful_restart for n in config.neighbors):
        lines += [
            " bgp graceful-restart",
            f" bgp graceful-restart restart-time {config.restart_time}",
        ]
    for n in config.neighbors:
        a = n.address
        lines += [
            f" neighbor {a} remote-as {n.remote_as}",
            f" neighbor {a} timers {n.keepalive} {n.hold_time}",
            f" neighbor {a} timers connect {n.connect_retry}",
            f" neighbor {a} advertisement-interval 0",
        ]
        if n.port != 179:
            lines.append(f" neighbor {a} port {n.port}")
        if n.passive:
            lines.append(f" neighbor {a} passive")
        if n.multihop is not None and n.remote_as != config.local_as:
            lines.append(f" neighbor {a} ebgp-multihop {n.multihop}")
        if n.local_address is not None:
            lines.append(f" neighbor {a} update-source {n.local_address}")
        if n.graceful_restart:
            lines.append(f" neighbor {a} graceful-restart")
        if n.bfd is not None:
            lines.append(f" neighbor {a} bfd profile {bfd_profile_name(n.bfd)}")
    for family in FAMILIES:
        members = [n for n in config.neighbors if family in n.afis]
        routes = config.routes_of(family)
        if not members and not routes:
            continue
        lines.append(f" address-family {family} unicast")
        lines += [f"  network {r}" for r in routes]
        lines += [f"  neighbor {n.address} activate" for n in members]
        if config.next_hops:
            lines += [f"  neighbor {n.address} route-map {FRR_NEXT_HOPS} out" for n in members]
        if config.max_paths > 1:
            lines += [
                f"  maximum-paths {config.max_paths}",
                f"  maximum-paths ibgp {config.max_paths}",
            ]
        lines.append(" exit-address-family")
    lines += ["!", *_frr_next_hop_map(config.next_hops), ""]
    return "\n".join(lines)


FRR_NEXT_HOPS = "sart-next-hops"


def _frr_next_hop_map(next_hops: Sequence[tuple[str, str]]) -> list[str]:
    """The route-map setting `next_hops` (one prefix-list and one clause per route), ending
    with a clause that lets every other route through unchanged."""
    if not next_hops:
        return []
    lines = []
    for seq, (prefix, hop) in enumerate(next_hops, 1):
        ip = "ipv6" if _prefix_family(prefix) == "ipv6" else "ip"
        lines += [
            f"{ip} prefix-list {FRR_NEXT_HOPS}-{seq} seq 5 permit {prefix}",
            f"route-map {FRR_NEXT_HOPS} permit {seq * 10}",
            f" match {ip} address prefix-list {FRR_NEXT_HOPS}-{seq}",
            f" set ipv6 next-hop global {hop}" if ip == "ipv6" else f" set ip next-hop {hop}",
            "exit",
        ]
    return [*lines, f"route-map {FRR_NEXT_HOPS} permit {(len(next_hops) + 1) * 10}", "exit"]


def bfd_profile_name(bfd: tuple[int, int, int]) -> str:
    return "sart-{}-{}-{}".format(*bfd)


def render_frr_bfdd(config: BgpConfig, *, hostname: str = "sartlab") -> str:
    """bfdd.conf: a profile per distinct (min_rx, min_tx, multiplier) its neighbors use."""
    lines = [f"hostname {hostname}", "!", "bfd"]
    for bfd in sorted({n.bfd for n in config.neighbors if n.bfd is not None}):
        rx, tx, mult = bfd
        lines += [
            f" profile {bfd_profile_name(bfd)}",
            f"  receive-interval {rx}",
            f"  transmit-interval {tx}",
            f"  detect-multiplier {mult}",
            " !",
        ]
    lines += ["!", ""]
    return "\n".join(lines)


def render_frr_zebra(*, hostname: str = "sartlab") -> str:
    return f"hostname {hostname}\n!\n"


def bird_protocol_name(address: str) -> str:
    """The BIRD protocol name used for the session with `address` (`peer_10_0_0_1`)."""
    return "peer_" + re.sub(r"[^0-9A-Za-z]", "_", str(netaddr.IPAddress(address)))


def render_bird(config: BgpConfig) -> str:
    """bird.conf for BIRD 2: one static protocol per family with the originated routes (as
    blackholes), exported with ORIGIN IGP, and one bgp protocol per neighbor. Timers are short
    (error wait 1-5 s) so a session comes back quickly after an error. A neighbor with `bfd`
    gets a `bfd { ... }` block with its intervals, served by one `protocol bfd`."""
    lines = [
        "log stderr all;",
        f"router id {config.router_id};",
        "protocol device {}",
    ]
    if any(n.bfd is not None for n in config.neighbors):
        lines.append("protocol bfd {}")
    for family in FAMILIES:
        lines.append(f"protocol static originate_{family[-1]} {{")
        lines.append(f"  {family};")
        lines += [f"  route {r} blackhole;" for r in config.routes_of(family)]
        lines.append("}")
    lines += [
        "filter originated {",
        '  if proto = "originate_4" || proto = "originate_6" then {',
        "    bgp_origin = ORIGIN_IGP;",
        *(f"    if net = {prefix} then bgp_next_hop = {hop};" for prefix, hop in config.next_hops),
        "    accept;",
        "  }",
        "  reject;",
        "}",
    ]
    for n in config.neighbors:
        ibgp = n.remote_as == config.local_as
        local = "local"
        if n.local_address:
            local += f" {n.local_address}"
        if config.listen_port != 179:
            local += f" port {config.listen_port}"
        lines += [
            f"protocol bgp {bird_protocol_name(n.address)} {{",
            f"  {local} as {config.local_as};",
            f"  neighbor {n.address} port {n.port} as {n.remote_as};",
            f"  hold time {n.hold_time};",
            *([f"  keepalive time {n.keepalive};"] if n.keepalive else []),
            f"  connect retry time {n.connect_retry};",
            "  connect delay time 1;",
            "  error wait time 1, 5;",
        ]
        if n.passive:
            lines.append("  passive on;")
        if n.multihop is not None:
            lines.append(f"  multihop {n.multihop};")
        elif ibgp:
            lines.append("  direct;")
        if n.graceful_restart:
            lines += ["  graceful restart on;", f"  graceful restart time {config.restart_time};"]
        if n.bfd is not None:
            rx, tx, mult = n.bfd
            lines.append(
                f"  bfd {{ min rx interval {rx} ms; min tx interval {tx} ms; multiplier {mult}; }};"
            )
        for family in n.afis:
            lines.append(f"  {family} {{ import all; export filter originated; }};")
        lines.append("}")
    lines.append("")
    return "\n".join(lines)


def _toml_str(value: str) -> str:
    return json.dumps(value)


def render_gobgp(config: BgpConfig) -> str:
    """gobgpd.toml for GoBGP 3. Routes are not in the file: GoBGP originates them through its
    API after start (`global rib add ... origin igp`). GoBGP has no BFD: a neighbor with
    `bfd` is refused."""
    with_bfd = [n.address for n in config.neighbors if n.bfd is not None]
    if with_bfd:
        raise LabError(f"GoBGP has no BFD, but neighbors {with_bfd} ask for it")
    lines = [
        "[global.config]",
        f"  as = {config.local_as}",
        f"  router-id = {_toml_str(config.router_id)}",
        f"  port = {config.listen_port}",
    ]
    if config.max_paths > 1:
        lines += ["[global.use-multiple-paths.config]", "  enabled = true"]
    for n in config.neighbors:
        lines += [
            "",
            "[[neighbors]]",
            "  [neighbors.config]",
            f"    neighbor-address = {_toml_str(n.address)}",
            f"    peer-as = {n.remote_as}",
            "  [neighbors.timers.config]",
            f"    hold-time = {n.hold_time}",
            f"    keepalive-interval = {n.keepalive}",
            f"    connect-retry = {n.connect_retry}",
            f"    idle-hold-time-after-reset = {n.connect_retry}",
            "    minimum-advertisement-interval = 0",
            "  [neighbors.transport.config]",
            f"    passive-mode = {str(n.passive).lower()}",
            f"    remote-port = {n.port}",
        ]
        if n.local_address is not None:
            lines.append(f"    local-address = {_toml_str(n.local_address)}")
        if n.multihop is not None:
            lines += [
                "  [neighbors.ebgp-multihop.config]",
                "    enabled = true",
                f"    multihop-ttl = {n.multihop}",
            ]
        if n.graceful_restart:
            lines += [
                "  [neighbors.graceful-restart.config]",
                "    enabled = true",
                f"    restart-time = {config.restart_time}",
            ]
        for family in n.afis:
            lines += [
                "  [[neighbors.afi-safis]]",
                "    [neighbors.afi-safis.config]",
                f'      afi-safi-name = "{family}-unicast"',
            ]
            if n.graceful_restart:
                lines += [
                    "    [neighbors.afi-safis.mp-graceful-restart.config]",
                    "      enabled = true",
                ]
    lines.append("")
    return "\n".join(lines)


# -- small helpers --------------------------------------------------------------------------


def wait_for(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.2,
    describe: Callable[[], str] | None = None,
) -> T:
    """Call `probe` until it returns something other than None (or False), then return that.

    On timeout raise LabError saying `what` was awaited, plus `describe()` (the state seen)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() >= deadline:
            seen = f"\n{describe()}" if describe is not None else ""
            raise LabError(f"timed out after {timeout} s waiting for {what}{seen}")
        time.sleep(interval)


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of the process so far, all its threads, in seconds."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError as exc:
        raise LabError(f"process {pid} is gone") from exc
    fields = text.rpartition(")")[2].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def read_status_kib(pid: int, field: str) -> int:
    """A `kB` field of /proc/PID/status (VmHWM, VmRSS...), in KiB."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError as exc:
        raise LabError(f"process {pid} is gone") from exc
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LabError(f"/proc/{pid}/status has no {field}")


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _normalise_state(raw: str) -> str:
    word = raw.strip().split(" ")[0].lower() if raw.strip() else "idle"
    return {"close": "idle", "down": "idle", "clearing": "idle", "deleted": "idle"}.get(word, word)


_BIRD_ERRORS: dict[str, tuple[int, int]] = {
    "bad peer as": (2, 2),
    "bad bgp identifier": (2, 3),
    "unsupported optional parameter": (2, 4),
    "unacceptable hold time": (2, 6),
    "required capability missing": (2, 7),
    "hold timer expired": (4, 0),
    "maximum number of prefixes reached": (6, 1),
    "administrative shutdown": (6, 2),
    "peer de-configured": (6, 3),
    "administrative reset": (6, 4),
    "connection rejected": (6, 5),
    "other configuration change": (6, 6),
    "connection collision resolution": (6, 7),
    "out of resources": (6, 8),
}


# -- the daemons ----------------------------------------------------------------------------


class Peer(abc.ABC):
    """A BGP daemon in a namespace. Not started by the constructor: call `start()` or use it as
    a context manager. The config can change between runs (`reconfigure`), and runtime
    announcements are kept in it, so a restart originates the same routes."""

    kind: ClassVar[str]

    def __init__(self, namespace: Namespace, config: BgpConfig, *, name: str | None = None) -> None:
        self.namespace = namespace
        self.config = config
        self.name = name or f"{self.kind}-{config.router_id}"
        self.workdir: Path | None = None
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._log_offsets: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r} in {self.namespace.name})"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return bool(self._procs) and all(p.poll() is None for p in self._procs.values())

    @property
    def pid(self) -> int:
        """The pid of the process that speaks BGP (bgpd, bird, gobgpd)."""
        proc = self._procs.get(self._bgp_process)
        if proc is None:
            raise LabError(f"{self} is not running")
        return proc.pid

    @property
    def log_path(self) -> Path:
        return self._dir() / f"{self._bgp_process}.log"

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of every log of this instance (for failure messages)."""
        if self.workdir is None:
            return "(not started)"
        parts = [
            f"--- {log.name}\n{_tail(log, lines)}" for log in sorted(self.workdir.glob("*.log"))
        ]
        return "\n".join(parts) or "(no log)"

    def start(self, *, timeout: float = 20.0) -> Self:
        """Render the config, start the daemon(s) inside the namespace, originate the routes and
        return once the control interface answers. Raises DaemonError with the log tail if a
        daemon exits or does not answer within `timeout`."""
        if self._procs:
            raise LabError(f"{self} is already started")
        self._ensure_installed()
        if self.workdir is None:
            self.workdir = Path(
                tempfile.mkdtemp(
                    prefix=f"{WORKDIR_PREFIX}-{os.getpid()}-{self.kind}-",
                    dir=os.environ.get("SART_LAB_TMP"),
                )
            )
            self.workdir.chmod(0o755)
        try:
            self._start(timeout=timeout, recovering=False)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, *, timeout: float = 10.0, keep_workdir: bool = False) -> None:
        """Stop the daemon(s) (SIGTERM, SIGKILL after `timeout`), thawing them first, and remove
        the work directory (kept with keep_workdir or SART_LAB_KEEP=1). Idempotent."""
        for name in reversed(list(self._procs)):
            self._stop_process(name, signal.SIGTERM, timeout)
        if self.workdir is not None and not keep_workdir and not os.environ.get("SART_LAB_KEEP"):
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def kill(self) -> None:
        """SIGKILL the BGP process: no NOTIFICATION is sent, the peer sees the TCP connection
        close (what a graceful-restart helper must survive)."""
        self._stop_process(self._bgp_process, signal.SIGKILL, 5.0)

    def restart(
        self,
        *,
        graceful: bool = False,
        while_down: Callable[[], object] | None = None,
        timeout: float = 20.0,
    ) -> None:
        """Restart the BGP process. Plain: SIGTERM (the daemon sends a Cease NOTIFICATION) and
        start again. Graceful: SIGKILL (no NOTIFICATION, so a helper keeps the routes as stale)
        and start again in restarting mode (BIRD -R, GoBGP -r, FRR bgpd with GR configured),
        so the restart bit of the graceful-restart capability is set. `while_down` runs while
        the process is stopped (to check what the other side does meanwhile)."""
        if graceful:
            self.kill()
        else:
            self._stop_process(self._bgp_process, signal.SIGTERM, 10.0)
        if while_down is not None:
            try:
                while_down()
            except BaseException:
                self.stop()
                raise
        try:
            self._start(timeout=timeout, recovering=graceful)
        except BaseException:
            self.stop()
            raise

    def reconfigure(self, config: BgpConfig) -> None:
        """Replace the config used by the next start or restart."""
        self.config = config

    def freeze(self) -> None:
        """SIGSTOP every process of the instance: the sessions stay open but silent, so the
        other side's hold timer fires. CLI queries block until `thaw()`."""
        for proc in self._procs.values():
            os.kill(proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT what `freeze` stopped."""
        for proc in self._procs.values():
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)

    def peak_rss(self) -> int:
        """Peak resident memory of the BGP process so far, in bytes (VmHWM)."""
        return read_status_kib(self.pid, "VmHWM") * 1024

    def rss(self) -> int:
        """Current resident memory of the BGP process, in bytes (VmRSS)."""
        return read_status_kib(self.pid, "VmRSS") * 1024

    def cpu_seconds(self) -> float:
        """CPU time the BGP process has used so far (`cpu_seconds`)."""
        return cpu_seconds(self.pid)

    # -- sessions -----------------------------------------------------------------------

    def neighbor_state(self, address: str) -> str:
        """The session state with `address`, normalised ("established", "active", "idle"...)."""
        states = self.neighbor_states()
        for key, state in states.items():
            if netaddr.IPAddress(key) == netaddr.IPAddress(address):
                return state
        raise LabError(f"{self} has no neighbor {address} (has {sorted(states)})")

    @abc.abstractmethod
    def neighbor_states(self) -> dict[str, str]:
        """Normalised state of every configured neighbor, by address."""

    def wait_state(self, address: str, states: Iterable[str], *, timeout: float = 30.0) -> str:
        """Wait until the session with `address` is in one of `states`; return the state."""
        wanted = set(states)
        return wait_for(
            lambda: s if (s := self._state_or_gone(address)) in wanted else None,
            timeout=timeout,
            what=f"{self} session with {address} in {sorted(wanted)}",
            describe=lambda: self._diagnose(address),
        )

    def wait_established(self, address: str, *, timeout: float = 30.0) -> None:
        self.wait_state(address, {"established"}, timeout=timeout)

    def wait_not_established(self, address: str, *, timeout: float = 30.0) -> str:
        """Wait until the session with `address` leaves Established; return the new state."""
        return wait_for(
            lambda: s if (s := self._state_or_gone(address)) != "established" else None,
            timeout=timeout,
            what=f"{self} session with {address} to go down",
            describe=lambda: self._diagnose(address),
        )

    @abc.abstractmethod
    def last_error(self, address: str) -> LastError | None:
        """The last error (usually a NOTIFICATION) of the session with `address`, if any."""

    def bfd_states(self) -> dict[str, str]:
        """The state of every BFD session, by peer address, in lower case ("up", "down",
        "init", "admindown"), as the daemon shows it."""
        raise LabError(f"{self} has no BFD")

    # -- routes -------------------------------------------------------------------------

    @abc.abstractmethod
    def routes(self, family: Family = "ipv4") -> dict[str, list[str]]:
        """The daemon's table for `family`: prefix -> next hops of its usable paths, best
        first. Meant for small tables; use `route_count` for big ones."""

    def paths(self, prefix: str) -> list[str]:
        """Next hops of the daemon's usable paths for exactly `prefix`, best first ([] when it
        has none). The default reads the whole table; daemons override with a lookup."""
        key = str(netaddr.IPNetwork(prefix).cidr)
        return self.routes(_prefix_family(key)).get(key, [])

    @abc.abstractmethod
    def route_count(self, family: Family = "ipv4") -> int:
        """How many prefixes the daemon's table holds for `family` (cheap on big tables)."""

    @abc.abstractmethod
    def attributes(self, prefix: str) -> RouteAttributes | None:
        """The attributes of the daemon's best path for exactly `prefix` (None: no path)."""

    def wait_route(
        self, prefix: str, *, timeout: float = 30.0, nexthops: Iterable[str] | None = None
    ) -> list[str]:
        """Wait until the daemon has `prefix` (with exactly the set `nexthops`, if given) and
        return its next hops."""
        want = None if nexthops is None else {str(netaddr.IPAddress(h)) for h in nexthops}

        def probe() -> list[str] | None:
            hops = self.paths(prefix)
            if hops and (want is None or set(hops) == want):
                return hops
            return None

        extra = "" if want is None else f" via {sorted(want)}"
        return wait_for(
            probe,
            timeout=timeout,
            what=f"{prefix}{extra} in {self}",
            describe=lambda: f"has {self.paths(prefix)}; sessions {self.neighbor_states()}",
        )

    def wait_no_route(self, prefix: str, *, timeout: float = 30.0) -> None:
        wait_for(
            lambda: not self.paths(prefix),
            timeout=timeout,
            what=f"{prefix} to leave {self}",
            describe=lambda: f"still has {self.paths(prefix)}",
        )

    def announce(self, *prefixes: str) -> None:
        """Originate more routes now (and on later restarts)."""
        new = [p for p in _normalise_prefixes(prefixes) if p not in self.config.routes]
        self.config = attrs.evolve(self.config, routes=(*self.config.routes, *new))
        if self._procs and new:
            self._announce(new)

    def withdraw(self, *prefixes: str) -> None:
        """Stop originating routes now (and on later restarts)."""
        gone = [p for p in _normalise_prefixes(prefixes) if p in self.config.routes]
        self.config = attrs.evolve(
            self.config, routes=tuple(r for r in self.config.routes if r not in gone)
        )
        if self._procs and gone:
            self._withdraw(gone)

    # -- for subclasses -----------------------------------------------------------------

    _bgp_process: ClassVar[str]
    _binaries: ClassVar[tuple[str, ...]]

    @abc.abstractmethod
    def _start(self, *, timeout: float, recovering: bool) -> None:
        """Start whatever is not running yet, wait until it answers, originate routes."""

    @abc.abstractmethod
    def _announce(self, prefixes: Sequence[str]) -> None: ...

    @abc.abstractmethod
    def _withdraw(self, prefixes: Sequence[str]) -> None: ...

    def _dir(self) -> Path:
        if self.workdir is None:
            raise LabError(f"{self} is not started")
        return self.workdir

    def _ensure_installed(self) -> None:
        missing = [b for b in self._binaries if shutil.which(b) is None and not Path(b).exists()]
        if missing:
            raise DaemonError(f"{self.kind}: {missing} not installed; run scripts/setup as root")

    def _spawn(self, name: str, cmd: Sequence[str]) -> subprocess.Popen[bytes]:
        """Start one process of the instance inside the namespace, output to NAME.log."""
        log = self._dir() / f"{name}.log"
        self._log_offsets[name] = log.stat().st_size if log.exists() else 0
        with log.open("ab") as out:
            proc = self.namespace.popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        self._procs[name] = proc
        return proc

    def _wait_ready(self, probe: Callable[[], bool], *, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while True:
            for name, proc in self._procs.items():
                if proc.poll() is not None:
                    self._procs.pop(name)
                    self._exited(name, proc.pid)
                    raise DaemonError(
                        f"{self}: {name} exited with {proc.returncode} while starting\n"
                        f"{self.log_tail()}"
                    )
            if probe():
                time.sleep(0.1)  # a daemon that answers and then dies is not ready
                if all(proc.poll() is None for proc in self._procs.values()):
                    return
                continue
            if time.monotonic() >= deadline:
                raise DaemonError(f"{self}: {what} not ready after {timeout} s\n{self.log_tail()}")
            time.sleep(0.1)

    def _stop_process(self, name: str, sig: signal.Signals, timeout: float) -> None:
        proc = self._procs.pop(name, None)
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)
                os.kill(proc.pid, sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5.0)
        self._exited(name, proc.pid)

    def _exited(self, name: str, pid: int) -> None:  # noqa: B027 - a hook, empty by default
        """Clean up after process `name` (pid `pid`) of the instance has exited."""

    def _log_since_start(self, name: str) -> list[str]:
        """The lines process `name` logged since it was last started."""
        path = self._dir() / f"{name}.log"
        with path.open("rb") as log:
            log.seek(self._log_offsets.get(name, 0))
            return log.read().decode(errors="replace").splitlines()

    def _state_or_gone(self, address: str) -> str:
        self._check_alive()
        return self.neighbor_state(address)

    def _check_alive(self) -> None:
        for name, proc in self._procs.items():
            if proc.poll() is not None:
                raise DaemonError(
                    f"{self}: {name} exited with {proc.returncode}\n{self.log_tail()}"
                )

    def _diagnose(self, address: str) -> str:
        try:
            return f"state {self.neighbor_state(address)}, last error {self.last_error(address)}"
        except LabError as exc:
            return f"(could not read the state: {exc})"

    def _cli(self, cmd: Sequence[str], *, timeout: float = 30.0) -> str:
        self._check_alive()
        proc = self.namespace.run(cmd, check=False, timeout=timeout)
        if proc.returncode != 0:
            raise DaemonError(
                f"{self}: {' '.join(cmd)!r} exited with {proc.returncode}: "
                f"{(proc.stdout + proc.stderr).strip()}\n{self.log_tail(10)}"
            )
        return proc.stdout


class Frr(Peer):
    """FRR 8 (zebra + bgpd) in the foreground, sockets and pid files in the work directory.
    zebra installs the routes bgpd selects into the namespace's kernel table. Restarts restart
    bgpd only; zebra keeps running."""

    kind = "frr"
    _bgp_process = "bgpd"
    _binaries = (str(FRR_LIB / "zebra"), str(FRR_LIB / "bgpd"), "vtysh")

    def __init__(
        self,
        namespace: Namespace,
        config: BgpConfig,
        *,
        name: str | None = None,
        kernel: bool = True,
        modules: tuple[str, ...] = (),
    ) -> None:
        """`kernel`: whether zebra installs what bgpd selects (False: bgpd's --no_kernel, a
        RIB only, as `sartd bgp` is without `sartd fib`); `modules`: bgpd modules to load
        (`-M`, e.g. "bmp", Debian's frr package has it), configured through `vtysh`."""
        super().__init__(namespace, config, name=name)
        self.kernel = kernel
        self.modules = modules

    def _common_args(self, daemon: str) -> list[str]:
        d = self._dir()
        return [
            str(FRR_LIB / daemon),
            "--vty_socket",
            str(d),
            "-z",
            str(d / "zserv.api"),
            "-i",
            str(d / f"{daemon}.pid"),
            "-f",
            str(d / f"{daemon}.conf"),
            "-P",
            "0",  # no vty TCP port
            "--log",
            "stdout",
            "--log-level",
            "info",
        ]

    def _start(self, *, timeout: float, recovering: bool) -> None:
        d = self._dir()
        hostname = self.name
        (d / "zebra.conf").write_text(render_frr_zebra(hostname=hostname))
        (d / "bgpd.conf").write_text(render_frr_bgpd(self.config, hostname=hostname))
        shutil.chown(d, "frr", "frr")
        for path in d.iterdir():
            shutil.chown(path, "frr", "frr")
        if "zebra" not in self._procs:
            self._spawn("zebra", self._common_args("zebra"))
            self._wait_ready(
                lambda: (d / "zserv.api").exists() and (d / "zebra.vty").exists(),
                timeout=timeout,
                what="zebra",
            )
        if any(n.bfd is not None for n in self.config.neighbors) and "bfdd" not in self._procs:
            (d / "bfdd.conf").write_text(render_frr_bfdd(self.config, hostname=hostname))
            shutil.chown(d / "bfdd.conf", "frr", "frr")
            self._spawn("bfdd", [*self._common_args("bfdd"), "--bfdctl", str(d / "bfdd.sock")])
            self._wait_ready((d / "bfdd.vty").exists, timeout=timeout, what="bfdd")
        port = ["-p", str(self.config.listen_port)]
        no_kernel = [] if self.kernel else ["--no_kernel"]
        modules = [arg for module in self.modules for arg in ("-M", module)]
        self._spawn("bgpd", [*self._common_args("bgpd"), *port, *no_kernel, *modules])
        self._wait_ready(
            lambda: self._vtysh_ok("show bgp summary json"), timeout=timeout, what="bgpd"
        )
        self._check_config_loaded()

    def _exited(self, name: str, pid: int) -> None:
        # FRR keeps a crash log buffer per process there, removed only on a clean exit.
        shutil.rmtree(FRR_CRASHLOG_DIR / f"{name}.{pid}", ignore_errors=True)

    def _check_config_loaded(self) -> None:
        log = _tail(self._dir() / "bgpd.log", 200)
        bad = [
            line for line in log.splitlines() if re.search(r"config line \d+|Unknown comm", line)
        ]
        if bad:
            raise DaemonError(f"{self}: bgpd rejected config lines:\n" + "\n".join(bad))

    def vtysh(self, *commands: str, timeout: float = 30.0) -> str:
        """Run vtysh commands against this instance and return the output. Output lines that
        start with '%' are FRR's errors: raised as DaemonError."""
        args = ["vtysh", "--vty_socket", str(self._dir())]
        for c in commands:
            args += ["-c", c]
        self._check_alive()
        proc = run_host(args, check=False, timeout=timeout)
        errors = [ln for ln in proc.stdout.splitlines() if ln.startswith("%")]
        if proc.returncode != 0 or errors:
            raise DaemonError(
                f"{self}: vtysh {list(commands)} failed ({proc.returncode}): "
                f"{(proc.stdout + proc.stderr).strip()}"
            )
        return proc.stdout

    def vtysh_json(self, command: str) -> Any:
        out = self.vtysh(command)
        return json.loads(out) if out.strip() else {}

    def _vtysh_ok(self, command: str) -> bool:
        args = ["vtysh", "--vty_socket", str(self._dir()), "-c", command]
        return run_host(args, check=False, timeout=10.0).returncode == 0

    def neighbor_states(self) -> dict[str, str]:
        data = self.vtysh_json("show bgp neighbors json")
        return {
            addr: _normalise_state(str(info.get("bgpState", "idle")))
            for addr, info in data.items()
            if isinstance(info, dict)
        }

    def bfd_states(self) -> dict[str, str]:
        """From bfdd, `show bfd peers json`."""
        return {
            str(netaddr.IPAddress(p["peer"])): str(p["status"]).lower()
            for p in self.vtysh_json("show bfd peers json")
        }

    def neighbor_info(self, address: str) -> dict[str, Any]:
        """`show bgp neighbors ADDRESS json` for this neighbor."""
        data = self.vtysh_json(f"show bgp neighbors {address} json")
        for key, info in data.items():
            if _same_address(key, address) and isinstance(info, dict):
                return info
        raise LabError(f"{self} has no neighbor {address}: {data}")

    def last_error(self, address: str) -> LastError | None:
        """From bgpd's log (since its start): the last NOTIFICATION sent to or received from
        `address`, or the reason of a later drop of the session without one ("NSF peer closed
        the session"). Failing both, FRR's last reset reason (such as "Waiting for peer OPEN"),
        with `received` None."""
        key = netaddr.IPAddress(address)
        found: LastError | None = None
        for line in self._log_since_start("bgpd"):
            if m := _FRR_NOTIFICATION.search(line):
                if netaddr.IPAddress(m["peer"]) == key:
                    found = LastError(
                        f"NOTIFICATION {m['dir']} {m['code']}/{m['sub']} ({m['reason']})",
                        int(m["code"]),
                        int(m["sub"]),
                        m["dir"] == "received",
                    )
            elif (
                (m := _FRR_DOWN.search(line))
                and netaddr.IPAddress(m["peer"]) == key
                and "Notification" not in m["reason"]
            ):
                found = LastError(m["reason"].strip())
        if found is not None:
            return found
        info = self.neighbor_info(address)
        due = str(info.get("lastResetDueTo", ""))
        reason = info.get("lastNotificationReason")
        if not due and reason is None:
            return None
        code = subcode = None
        raw = str(info.get("lastErrorCodeSubcode", ""))
        if reason is not None and re.fullmatch(r"[0-9a-fA-F]{4}", raw):
            code, subcode = int(raw[:2], 16), int(raw[2:], 16)
        return LastError(f"{due}: {reason}" if reason else due, code, subcode, None)

    def routes(self, family: Family = "ipv4") -> dict[str, list[str]]:
        data = self.vtysh_json(f"show bgp {family} unicast json")
        table: dict[str, list[str]] = {}
        for prefix, paths in data.get("routes", {}).items():
            hops = _frr_nexthops(paths, family)
            if hops:
                table[str(netaddr.IPNetwork(prefix).cidr)] = hops
        return table

    def paths(self, prefix: str) -> list[str]:
        net = netaddr.IPNetwork(prefix).cidr
        family: Family = "ipv6" if net.version == 6 else "ipv4"
        data = self.vtysh_json(f"show bgp {family} unicast {net} json")
        if "prefix" not in data or str(netaddr.IPNetwork(data["prefix"]).cidr) != str(net):
            return []
        return _frr_nexthops(data.get("paths", []), family)

    def attributes(self, prefix: str) -> RouteAttributes | None:
        net = netaddr.IPNetwork(prefix).cidr
        data = self.vtysh_json(f"show bgp {_prefix_family(str(net))} unicast {net} json")
        if "prefix" not in data or str(netaddr.IPNetwork(data["prefix"]).cidr) != str(net):
            return None
        paths: list[dict[str, Any]] = data.get("paths", [])
        best = next((p for p in paths if p.get("bestpath", {}).get("overall")), None)
        if best is None:
            return None
        return RouteAttributes(
            communities=tuple(best.get("community", {}).get("string", "").split()),
            large_communities=tuple(best.get("largeCommunity", {}).get("string", "").split()),
            med=best.get("metric"),
            local_pref=best.get("locPrf"),
        )

    def route_count(self, family: Family = "ipv4") -> int:
        data = self.vtysh_json(f"show bgp {family} unicast statistics json")
        stats: list[dict[str, Any]] = next(iter(data.values()), [{}])
        return int(stats[0].get("totalPrefixes", 0)) if stats else 0

    def _address_family(self, prefixes: Sequence[str], negate: bool) -> None:
        for family in FAMILIES:
            mine = [p for p in prefixes if _prefix_family(p) == family]
            if not mine:
                continue
            no = "no " if negate else ""
            self.vtysh(
                "configure terminal",
                f"router bgp {self.config.local_as}",
                f"address-family {family} unicast",
                *(f"{no}network {p}" for p in mine),
            )

    def _announce(self, prefixes: Sequence[str]) -> None:
        self._address_family(prefixes, negate=False)

    def _withdraw(self, prefixes: Sequence[str]) -> None:
        self._address_family(prefixes, negate=True)


# bgpd log lines (with `bgp log-neighbor-changes`), e.g.
#   %NOTIFICATION: received from neighbor 10.0.0.2 2/2 (OPEN Message Error/Bad Peer AS) 4 bytes ..
#   %ADJCHANGE: neighbor fd00::2(host) in vrf default Down NSF peer closed the session
_FRR_NOTIFICATION = re.compile(
    r"%NOTIFICATION: (?P<dir>sent|received) (?:to|from) neighbor (?P<peer>[0-9a-fA-F.:]+)\S* "
    r"(?P<code>\d+)/(?P<sub>\d+) \((?P<reason>[^)]*)\)"
)
_FRR_DOWN = re.compile(
    r"%ADJCHANGE: neighbor (?P<peer>[0-9a-fA-F.:]+)\S* in vrf \S+ Down (?P<reason>.*)$"
)


def _is_address(text: str) -> bool:
    return bool(netaddr.valid_ipv4(text) or netaddr.valid_ipv6(text))


def _same_address(a: str, b: str) -> bool:
    try:
        return bool(netaddr.IPAddress(a) == netaddr.IPAddress(b))
    except (netaddr.AddrFormatError, ValueError):
        return False


def _frr_nexthops(paths: Iterable[dict[str, Any]], family: Family) -> list[str]:
    """One next hop per valid FRR path (its global address), best path first."""
    ranked: list[tuple[int, str]] = []
    for path in paths:
        if not path.get("valid", False):
            continue
        best = path.get("bestpath")
        is_best = bool(best.get("overall")) if isinstance(best, dict) else bool(best)
        hops = path.get("nexthops", [])
        usable = [h["ip"] for h in hops if h.get("ip") and h.get("scope") != "link-local"]
        hop = usable[0] if usable else UNSPECIFIED[family]
        ranked.append((0 if is_best else 1, str(netaddr.IPAddress(hop))))
    return [hop for _, hop in sorted(ranked, key=lambda r: r[0])]


class Bird(Peer):
    """BIRD 2 in the foreground, control socket in the work directory. Runtime announcements
    rewrite the static protocols and reload the config (`birdc configure`)."""

    kind = "bird"
    _bgp_process = "bird"
    _binaries = ("bird", "birdc")

    @property
    def socket(self) -> Path:
        return self._dir() / "bird.ctl"

    def _start(self, *, timeout: float, recovering: bool) -> None:
        d = self._dir()
        (d / "bird.conf").write_text(render_bird(self.config))
        check = run_host(["bird", "-p", "-c", str(d / "bird.conf")], check=False)
        if check.returncode != 0:
            raise DaemonError(
                f"{self}: bird.conf rejected: {(check.stdout + check.stderr).strip()}"
            )
        cmd = ["bird", "-f", "-c", str(d / "bird.conf"), "-s", str(self.socket)]
        cmd += ["-P", str(d / "bird.pid")]
        if recovering:
            cmd.append("-R")
        self._spawn("bird", cmd)
        self._wait_ready(self._birdc_ok, timeout=timeout, what="bird control socket")

    def _birdc_ok(self) -> bool:
        if not self.socket.exists():
            return False
        proc = run_host(["birdc", "-s", str(self.socket), "show", "status"], check=False)
        return proc.returncode == 0 and "up and running" in proc.stdout

    def birdc(self, *words: str, timeout: float = 30.0) -> str:
        """Run one birdc command and return its output without the banner line ("Network not
        found" is an empty answer, not an error)."""
        self._check_alive()
        proc = run_host(["birdc", "-s", str(self.socket), *words], check=False, timeout=timeout)
        if proc.returncode != 0 and "Network not found" in proc.stdout:
            return ""
        if proc.returncode != 0:
            raise DaemonError(f"{self}: birdc {' '.join(words)} failed: {proc.stdout}{proc.stderr}")
        lines = proc.stdout.splitlines()
        return "\n".join(line for line in lines if not line.startswith("BIRD "))

    def bfd_states(self) -> dict[str, str]:
        """From `birdc show bfd sessions`."""
        return parse_bird_bfd_sessions(self.birdc("show", "bfd", "sessions"))

    def _protocol(self, address: str) -> str:
        return bird_protocol_name(self.config.neighbor(address).address)

    def _protocol_fields(self, address: str) -> dict[str, str]:
        out = self.birdc("show", "protocols", "all", self._protocol(address))
        fields: dict[str, str] = {}
        for line in out.splitlines():
            if ":" in line and line.startswith("  "):
                key, _, value = line.strip().partition(":")
                fields.setdefault(key.strip(), value.strip())
        return fields

    def neighbor_states(self) -> dict[str, str]:
        states: dict[str, str] = {}
        for n in self.config.neighbors:
            fields = self._protocol_fields(n.address)
            states[n.address] = _normalise_state(fields.get("BGP state", "down"))
        return states

    def last_error(self, address: str) -> LastError | None:
        text = self._protocol_fields(address).get("Last error")
        if not text:
            return None
        received: bool | None = None
        reason = text
        if text.startswith("Received:"):
            received, reason = True, text.removeprefix("Received:")
        elif text.startswith("BGP Error:"):
            received, reason = False, text.removeprefix("BGP Error:")
        reason = reason.strip().split(":")[0].strip()
        code = subcode = None
        if reason.lower() in _BIRD_ERRORS:
            code, subcode = _BIRD_ERRORS[reason.lower()]
        elif m := re.fullmatch(r"Unknown error (\d+)\.(\d+)", reason):
            code, subcode = int(m.group(1)), int(m.group(2))
        if reason.lower() == "hold timer expired" and received is None:
            received = False
        return LastError(text, code, subcode, received)

    def routes(self, family: Family = "ipv4") -> dict[str, list[str]]:
        table = "master4" if family == "ipv4" else "master6"
        return _parse_bird_routes(self.birdc("show", "route", "table", table), family)

    def paths(self, prefix: str) -> list[str]:
        net = netaddr.IPNetwork(prefix).cidr
        family: Family = "ipv6" if net.version == 6 else "ipv4"
        table = "master4" if family == "ipv4" else "master6"
        out = self.birdc("show", "route", str(net), "table", table)
        return _parse_bird_routes(out, family).get(str(net), [])

    def attributes(self, prefix: str) -> RouteAttributes | None:
        """From `show route PREFIX all`: the `BGP.*` lines of the first route, the best."""
        net = netaddr.IPNetwork(prefix).cidr
        table = "master4" if net.version == 4 else "master6"
        out = self.birdc("show", "route", str(net), "table", table, "all")
        fields: dict[str, str] = {}
        routes = 0
        for line in out.splitlines():
            routes += bool(_BIRD_ROUTE.match(line))
            if routes > 1:
                break
            if m := re.match(r"^\s+BGP\.(\w+): (.*)$", line):
                fields[m.group(1)] = m.group(2)
        if not routes:
            return None
        tuples = re.findall(r"\(([^)]*)\)", fields.get("community", ""))
        larges = re.findall(r"\(([^)]*)\)", fields.get("large_community", ""))
        return RouteAttributes(
            communities=tuple(t.replace(" ", "").replace(",", ":") for t in tuples),
            large_communities=tuple(t.replace(" ", "").replace(",", ":") for t in larges),
            med=int(fields["med"]) if "med" in fields else None,
            local_pref=int(fields["local_pref"]) if "local_pref" in fields else None,
        )

    def route_count(self, family: Family = "ipv4") -> int:
        table = "master4" if family == "ipv4" else "master6"
        out = self.birdc("show", "route", "table", table, "count")
        m = re.search(r"for (\d+) networks", out)
        return int(m.group(1)) if m else 0

    def _reload(self) -> None:
        d = self._dir()
        (d / "bird.conf").write_text(render_bird(self.config))
        out = self.birdc("configure")
        if "Reconfigur" not in out:
            raise DaemonError(f"{self}: birdc configure failed: {out}")

    def _announce(self, prefixes: Sequence[str]) -> None:
        self._reload()

    def _withdraw(self, prefixes: Sequence[str]) -> None:
        self._reload()


def parse_bird_bfd_sessions(text: str) -> dict[str, str]:
    """BIRD's `show bfd sessions` (one line per session under a header, the address first and
    the state third, after the interface): state in lower case by address."""
    states: dict[str, str] = {}
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 3 and _is_address(words[0]):
            states[str(netaddr.IPAddress(words[0]))] = words[2].lower()
    return states


_BIRD_ROUTE = re.compile(r"^(?P<net>\S+)?\s+(?P<kind>unicast|blackhole|unreachable|prohibited)\s")


def _parse_bird_routes(text: str, family: Family) -> dict[str, list[str]]:
    """Parse `birdc show route` output: prefix -> one next hop per route, best (*) first."""
    table: dict[str, list[tuple[int, str]]] = {}
    net: str | None = None
    current: list[tuple[int, str]] | None = None
    for line in text.splitlines():
        m = _BIRD_ROUTE.match(line)
        if m:
            if m.group("net"):
                net = str(netaddr.IPNetwork(m.group("net")).cidr)
            if net is None:
                continue
            current = table.setdefault(net, [])
            rank = 0 if " * " in line or line.rstrip().endswith("*") else 1
            current.append((rank, UNSPECIFIED[family]))
        elif current and (v := re.match(r"^\s+via (\S+)", line)):
            rank, hop = current[-1]
            if hop == UNSPECIFIED[family]:
                current[-1] = (rank, str(netaddr.IPAddress(v.group(1))))
    return {n: [h for _, h in sorted(paths, key=lambda p: p[0])] for n, paths in table.items()}


_GOBGP_STATES = {
    0: "idle",  # unknown
    1: "idle",
    2: "connect",
    3: "active",
    4: "opensent",
    5: "openconfirm",
    6: "established",
}


# What GoBGP writes as the Data of a NOTIFICATION it sends without logging the code.
_GOBGP_ERRORS: dict[str, tuple[int, int]] = {
    "as number mismatch": (2, 2),
    "unsupported version": (2, 1),
    "invalid bgp identifier": (2, 3),
    "hold time": (2, 6),
}


def _logfmt(line: str) -> dict[str, str]:
    """The key=value fields of a logrus text line, quoted values unquoted."""
    fields: dict[str, str] = {}
    for key, value in re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)', line):
        fields[key] = json.loads(value) if value.startswith('"') else value
    return fields


class GoBgp(Peer):
    """GoBGP 3 (gobgpd in the foreground; its API on 127.0.0.1:`api_port` inside the
    namespace, which has its own loopback, so the default port never clashes across
    namespaces). Routes are originated through the API with ORIGIN IGP. `log_level` "debug"
    adds every FSM transition with its reason to the log ("warn" for benchmarks)."""

    kind = "gobgp"
    _bgp_process = "gobgpd"
    _binaries = ("gobgpd", "gobgp")

    def __init__(
        self,
        namespace: Namespace,
        config: BgpConfig,
        *,
        name: str | None = None,
        api_port: int = 50051,
        log_level: str = "info",
    ) -> None:
        super().__init__(namespace, config, name=name)
        self.api_port = api_port
        self.log_level = log_level

    def _start(self, *, timeout: float, recovering: bool) -> None:
        d = self._dir()
        (d / "gobgpd.toml").write_text(render_gobgp(self.config))
        cmd = [
            "gobgpd",
            "-f",
            str(d / "gobgpd.toml"),
            "--api-hosts",
            f"127.0.0.1:{self.api_port}",
            "--pprof-disable",
            "-l",
            self.log_level,
            "-p",
        ]
        if recovering:
            cmd.append("-r")
        listening = self.namespace.run(
            ["ss", "-Hltn", f"sport = :{self.api_port}"], check=False
        ).stdout
        if listening.strip():
            raise DaemonError(
                f"{self}: port {self.api_port} is already in use in {self.namespace.name} "
                "(another GoBgp there? give each its own api_port)"
            )
        self._spawn("gobgpd", cmd)
        self._wait_ready(self._api_ok, timeout=timeout, what="gobgpd API")
        self._announce(self.config.routes)

    def gobgp(self, *args: str, timeout: float = 60.0) -> str:
        """Run the gobgp CLI against this instance and return its output."""
        cmd = ["gobgp", "-u", "127.0.0.1", "-p", str(self.api_port), *args]
        return self._cli(cmd, timeout=timeout)

    def gobgp_json(self, *args: str) -> Any:
        out = self.gobgp(*args, "-j")
        return json.loads(out) if out.strip() else {}

    def _api_ok(self) -> bool:
        cmd = ["gobgp", "-u", "127.0.0.1", "-p", str(self.api_port), "global", "-j"]
        return self.namespace.run(cmd, check=False, timeout=10.0).returncode == 0

    def neighbor_states(self) -> dict[str, str]:
        states: dict[str, str] = {}
        for peer in self.gobgp_json("neighbor") or []:
            addr = peer.get("state", {}).get("neighbor_address") or peer["conf"]["neighbor_address"]
            code = int(peer.get("state", {}).get("session_state", 0))
            states[addr] = _GOBGP_STATES.get(code, "idle")
        return states

    def last_error(self, address: str) -> LastError | None:
        """GoBGP's API keeps no error text, so this reads the log of the running gobgpd: the
        last NOTIFICATION sent or received for `address` (with its code when GoBGP logs it),
        or the last "Peer Down" reason. GoBGP 3 logs no NOTIFICATION it receives before
        Established (a Bad Peer AS answer to its OPEN, say); when its API counts more received
        NOTIFICATIONs than the log shows, the result says one was received, without a code."""
        found: LastError | None = None
        key = str(netaddr.IPAddress(address))
        lines = self._log_since_start("gobgpd")
        after_notification = False
        logged_received = 0
        for line in lines:
            fields = _logfmt(line)
            if fields.get("Key") != key:
                continue
            msg = fields.get("msg", "")
            if msg in ("sent notification", "received notification"):
                data = fields.get("Data", "")
                code = int(fields["Code"]) if "Code" in fields else None
                sub = int(fields["Subcode"]) if "Subcode" in fields else None
                if code is None:
                    code, sub = next(
                        (c for t, c in _GOBGP_ERRORS.items() if t in data), (None, None)
                    )
                received = msg.startswith("received")
                logged_received += received
                words = f"{msg}: {data}" if data and data != "[]" else msg
                found = LastError(words, code, sub, received)
                after_notification = True
            elif msg == "Peer Down" and not after_notification:
                found = LastError(f"peer down: {fields.get('Reason', '?')}")
            elif msg == "Peer Up":
                after_notification = False
        if self._received_notifications(key) > logged_received:
            found = LastError(
                "received a NOTIFICATION (GoBGP does not log its code)", None, None, True
            )
        return found

    def _received_notifications(self, address: str) -> int:
        for peer in self.gobgp_json("neighbor") or []:
            state = peer.get("state", {})
            if _same_address(state.get("neighbor_address", ""), address):
                return int(state.get("messages", {}).get("received", {}).get("notification", 0))
        return 0

    def _rib(self, family: Family, *prefix: str) -> dict[str, list[str]]:
        data = self.gobgp_json("global", "rib", "-a", family, *prefix)
        table: dict[str, list[str]] = {}
        for net, paths in (data or {}).items():
            ranked: list[tuple[int, str]] = []
            for path in paths:
                hop = UNSPECIFIED[family]
                for attr in path.get("attrs", []):
                    if attr.get("type") in (3, 14) and attr.get("nexthop"):
                        hop = attr["nexthop"]
                ranked.append((0 if path.get("best") else 1, str(netaddr.IPAddress(hop))))
            table[str(netaddr.IPNetwork(net).cidr)] = [h for _, h in sorted(ranked)]
        return table

    def routes(self, family: Family = "ipv4") -> dict[str, list[str]]:
        return self._rib(family)

    def attributes(self, prefix: str) -> RouteAttributes | None:
        """From `global rib PREFIX -j`: the attributes by type code (4 MED, 5 LOCAL_PREF, 8
        COMMUNITIES as 32-bit numbers, 32 LARGE_COMMUNITY) of the best path."""
        net = str(netaddr.IPNetwork(prefix).cidr)
        data = self.gobgp_json("global", "rib", "-a", _prefix_family(net), net)
        paths: list[dict[str, Any]] = next(iter((data or {}).values()), [])
        best = next((p for p in paths if p.get("best")), None)
        if best is None:
            return None
        by_type = {a.get("type"): a for a in best.get("attrs", [])}
        return RouteAttributes(
            communities=tuple(
                f"{c >> 16}:{c & 0xFFFF}" for c in by_type.get(8, {}).get("communities", [])
            ),
            large_communities=tuple(
                f"{c['ASN']}:{c['LocalData1']}:{c['LocalData2']}"
                for c in by_type.get(32, {}).get("value", [])
            ),
            med=by_type[4]["metric"] if 4 in by_type else None,
            local_pref=by_type[5]["value"] if 5 in by_type else None,
        )

    def paths(self, prefix: str) -> list[str]:
        net = netaddr.IPNetwork(prefix).cidr
        family: Family = "ipv6" if net.version == 6 else "ipv4"
        return self._rib(family, str(net)).get(str(net), [])

    def route_count(self, family: Family = "ipv4") -> int:
        out = self.gobgp("global", "rib", "summary", "-a", family)
        m = re.search(r"Destination:\s*(\d+)", out)
        return int(m.group(1)) if m else 0

    def _announce(self, prefixes: Sequence[str]) -> None:
        next_hops = dict(self.config.next_hops)
        for p in prefixes:
            family = _prefix_family(p)
            hop = ["nexthop", next_hops[p]] if p in next_hops else []
            self.gobgp("global", "rib", "add", p, *hop, "origin", "igp", "-a", family)

    def _withdraw(self, prefixes: Sequence[str]) -> None:
        for p in prefixes:
            family = _prefix_family(p)
            self.gobgp("global", "rib", "del", p, "-a", family)


def kernel_nexthops(namespace: Namespace, prefix: str) -> list[str]:
    """The gateways of the kernel route for exactly `prefix` in `namespace` (sorted; several
    for an ECMP route; [] for none)."""
    return namespace.kernel_nexthops(prefix)


def wait_kernel_nexthops(
    namespace: Namespace,
    prefix: str,
    *,
    count: int | None = None,
    nexthops: Iterable[str] | None = None,
    timeout: float = 30.0,
) -> list[str]:
    """Wait until the kernel route for `prefix` has `count` gateways (or exactly `nexthops`;
    with neither, at least one) and return them."""
    want = None if nexthops is None else sorted(str(netaddr.IPAddress(h)) for h in nexthops)

    def probe() -> list[str] | None:
        hops = namespace.kernel_nexthops(prefix)
        if want is not None:
            return hops if hops == want else None
        if count is not None:
            return hops if len(hops) == count else None
        return hops or None

    return wait_for(
        probe,
        timeout=timeout,
        what=f"kernel route {prefix} in {namespace.name} with {want or count or 'any'} next hops",
        describe=lambda: f"routes: {namespace.routes(prefix)}",
    )


def remove_stale_workdirs(root: str | None = None) -> list[Path]:
    """Remove work directories left by lab runs whose process has exited."""
    removed = []
    base = Path(root or tempfile.gettempdir())
    for path in base.glob(f"{WORKDIR_PREFIX}-*-*"):
        parts = path.name.split("-")
        if len(parts) > 2 and parts[1].isdigit() and not Path(f"/proc/{parts[1]}").exists():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


# -- a whole lab ----------------------------------------------------------------------------

P = TypeVar("P", bound=Peer)


@attrs.frozen(kw_only=True)
class Line3:
    """left --- router --- right, as in shared/docs/lab.md. `left_link.a` / `right_link.a` are
    the router's ends (10.255.1.1 and 10.255.2.1 in a fresh Lab), `left_link.b` /
    `right_link.b` the neighbors' (.2)."""

    router: Namespace
    left: Namespace
    right: Namespace
    left_link: Link
    right_link: Link


class Lab:
    """Namespaces, links and peers made for one test (or module), torn down by `close()` (or
    the context manager), whatever state they are in (frozen daemons included).

    Link number N gets 10.255.N.0/24 and fd00:255:N::/64; its `a` end (the first namespace)
    has .1 / ::1 and its `b` end .2 / ::2."""

    def __init__(self, tag: str = "lab") -> None:
        self.tag = tag
        self.namespaces: list[Namespace] = []
        self.peers: list[Peer] = []
        self._subnets = itertools.count(1)

    def __repr__(self) -> str:
        return f"Lab({self.tag!r}, {len(self.namespaces)} namespaces, {len(self.peers)} peers)"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def namespace(self, role: str) -> Namespace:
        """A new namespace (unique name ending in `role`), deleted by `close()`."""
        ns = Namespace.create(role)
        self.namespaces.append(ns)
        return ns

    def link(self, a: Namespace, b: Namespace) -> Link:
        """A veth pair between `a` and `b` on the next free /24 and /64."""
        n = next(self._subnets)
        if n > 255:
            raise LabError("a Lab numbers at most 255 links")
        return link(
            a,
            [f"10.255.{n}.1/24", f"fd00:255:{n}::1/64"],
            b,
            [f"10.255.{n}.2/24", f"fd00:255:{n}::2/64"],
        )

    def frr_beside_sart(
        self,
        frr_as: int,
        sart_as: int,
        *,
        routes: Iterable[str] = (),
        ipv6: bool = False,
        **options: Any,
    ) -> tuple[Namespace, Link, Frr]:
        """A namespace for sart and a started FRR linked to it (sart at `link.a`), peering
        with sart's end over IPv4 (IPv6 with `ipv6`) with the neighbor `options`, and
        announcing `routes`: what interop tests of a sartd process start from."""
        sart_ns, frr_ns = self.namespace("sartd"), self.namespace("frr")
        link = self.link(sart_ns, frr_ns)
        address = link.a.ipv6 if ipv6 else link.a.ipv4
        config = BgpConfig(
            router_id=link.b.ipv4,
            local_as=frr_as,
            neighbors=(neighbor(address, sart_as, **options),),
            routes=tuple(routes),
        )
        return sart_ns, link, self.start(Frr(frr_ns, config))

    def line3(self) -> Line3:
        """Three new namespaces in a line, the router forwarding; no daemons."""
        router, left, right = (
            self.namespace("router"),
            self.namespace("left"),
            self.namespace("right"),
        )
        router.enable_forwarding()
        return Line3(
            router=router,
            left=left,
            right=right,
            left_link=self.link(router, left),
            right_link=self.link(router, right),
        )

    def add(self, peer: P) -> P:
        """Register a peer so `close()` stops it (it is not started)."""
        self.peers.append(peer)
        return peer

    def start(self, peer: P, *, timeout: float = 30.0) -> P:
        """Register and start a peer."""
        self.add(peer).start(timeout=timeout)
        return peer

    def log_tails(self, lines: int = 30) -> str:
        """The log tails of every started peer, for a failure report."""
        return "\n".join(f"===== {p!r}\n{p.log_tail(lines)}" for p in self.peers if p.workdir)

    def close(self) -> None:
        """Stop every peer (last registered first), then delete the namespaces, which kills
        any other process left inside (a sartd a test started, say). Goes on past errors and
        raises LabError listing them at the end."""
        errors: list[Exception] = []
        for peer in reversed(self.peers):
            try:
                peer.stop()
            except Exception as exc:  # keep tearing down; reported below
                errors.append(exc)
        for ns in reversed(self.namespaces):
            try:
                ns.delete()
            except Exception as exc:  # keep tearing down; reported below
                errors.append(exc)
        self.peers.clear()
        self.namespaces.clear()
        if errors:
            raise LabError(f"lab {self.tag} teardown failed: {errors}")
