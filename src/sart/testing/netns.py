"""Linux network namespaces and veth links as Python objects, for the BGP lab.

A `Namespace` is created with a unique name (prefix, owner pid, random suffix) so parallel runs
and leftovers of crashed runs never clash; `remove_stale` deletes the leftovers whose owner
process is gone. Deleting a namespace first kills every process still inside it, then removes it
with its interfaces. Everything goes through the `ip` command (iproute2); needs root.

    with Namespace.create("router") as r, Namespace.create("edge") as e:
        veth = link(r, ["10.255.1.1/24", "fd00:1::1/64"], e, ["10.255.1.2/24", "fd00:1::2/64"])
        e.run(["ping", "-c1", veth.a.ipv4])
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import json
import os
import secrets
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import netaddr

from sart.errors import SartError

DEFAULT_PREFIX = "sartlab"
NETNS_DIR = Path("/run/netns")
# Interface names are at most 15 bytes (IFNAMSIZ - 1).
IFNAME_MAX = 15

_link_counter = itertools.count(1)


class LabError(SartError):
    """The lab could not be built or driven: a command failed, a daemon did not start, a
    condition was not reached in time. The message says what and includes the command output."""


def _ip_command(args: Sequence[str]) -> list[str]:
    return ["ip", *args]


def run_host(
    cmd: Sequence[str],
    *,
    check: bool = True,
    timeout: float = 30.0,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command in the host (root) namespace and capture its output as text.

    With `check`, a non-zero exit raises LabError carrying the command, its exit code and
    output, which is what a test failure report needs."""
    try:
        proc = subprocess.run(
            list(cmd),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            check=False,
            env=None if env is None else dict(env),
        )
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{' '.join(cmd)!r} did not finish within {timeout} s") from exc
    except FileNotFoundError as exc:
        raise LabError(f"{cmd[0]!r} is not installed (run scripts/setup as root)") from exc
    if check and proc.returncode != 0:
        raise LabError(
            f"{' '.join(cmd)!r} exited with {proc.returncode}\n"
            f"stdout: {proc.stdout.strip()}\nstderr: {proc.stderr.strip()}"
        )
    return proc


def unique_name(role: str, prefix: str = DEFAULT_PREFIX) -> str:
    """`<prefix>-<pid>-<random>-<role>`: unique across processes and runs, and it records the
    owner pid so `remove_stale` can tell leftovers from namespaces of a run still going on."""
    return f"{prefix}-{os.getpid()}-{secrets.token_hex(3)}-{role}"


def list_namespaces() -> list[str]:
    """Names of all named network namespaces (`ip netns list`)."""
    out = run_host(_ip_command(["netns", "list"])).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _pid_alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def remove_stale(prefix: str = DEFAULT_PREFIX) -> list[str]:
    """Delete namespaces named by `unique_name(..., prefix)` whose owner process has exited
    (left behind by a run that was killed). Returns the names removed."""
    removed = []
    for name in list_namespaces():
        parts = name.split("-")
        if len(parts) < 4 or parts[0] != prefix or not parts[1].isdigit():
            continue
        if not _pid_alive(int(parts[1])):
            Namespace(name).delete()
            removed.append(name)
    return removed


class Namespace:
    """A named network namespace. `Namespace(name)` only refers to one; `create` makes it.

    Use as a context manager (or call `delete`) to remove it, its interfaces and the processes
    still running inside it."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Namespace({self.name!r})"

    @classmethod
    def create(cls, role: str = "ns", *, prefix: str = DEFAULT_PREFIX) -> Self:
        """Create a new namespace with a unique name built from `role`, loopback up and IPv6
        duplicate address detection off (addresses are usable as soon as they are added)."""
        ns = cls(unique_name(role, prefix))
        run_host(_ip_command(["netns", "add", ns.name]))
        try:
            ns.ip("link", "set", "lo", "up")
            ns.sysctl("net.ipv6.conf.all.accept_dad", "0")
            ns.sysctl("net.ipv6.conf.default.accept_dad", "0")
        except BaseException:
            ns.delete()
            raise
        return ns

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.delete()

    # -- commands inside ------------------------------------------------------------------

    def command(self, cmd: Sequence[str]) -> list[str]:
        """The argv that runs `cmd` inside this namespace (`ip netns exec NAME ...`)."""
        return ["ip", "netns", "exec", self.name, *cmd]

    def run(
        self,
        cmd: Sequence[str],
        *,
        check: bool = True,
        timeout: float = 30.0,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace and capture its output (see `run_host`)."""
        return run_host(self.command(cmd), check=check, timeout=timeout, input=input, env=env)

    def popen(
        self,
        cmd: Sequence[str],
        *,
        stdout: int | IO[Any] | None = subprocess.DEVNULL,
        stderr: int | IO[Any] | None = subprocess.STDOUT,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a long-running process inside the namespace. `ip netns exec` execs the
        command, so the Popen's pid is the daemon's own pid (signals reach it directly).
        It gets its own process group, so a Ctrl-C of the test run does not hit it first."""
        try:
            return subprocess.Popen(
                self.command(cmd),
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                env=None if env is None else dict(env),
                cwd=cwd,
                start_new_session=True,
            )
        except FileNotFoundError as exc:
            raise LabError("'ip' is not installed") from exc

    def ip(self, *args: str) -> str:
        """`ip -n NAME ARGS...`, returning stdout."""
        return run_host(_ip_command(["-n", self.name, *args])).stdout

    def ip_json(self, *args: str) -> Any:
        """`ip -n NAME -j ARGS...`, parsed."""
        out = run_host(_ip_command(["-n", self.name, "-j", *args])).stdout
        return json.loads(out) if out.strip() else []

    def sysctl(self, key: str, value: str) -> None:
        """Set a sysctl inside the namespace (net.* keys are per namespace)."""
        self.run(["sysctl", "-q", "-w", f"{key}={value}"])

    def enable_forwarding(self) -> None:
        """Route between interfaces: IPv4 and IPv6 forwarding on."""
        self.sysctl("net.ipv4.ip_forward", "1")
        self.sysctl("net.ipv6.conf.all.forwarding", "1")

    def add_address(self, ifname: str, cidr: str) -> None:
        """Add an address to an interface; IPv6 ones with `nodad` so they are usable at once."""
        net = netaddr.IPNetwork(cidr)
        extra = ["nodad"] if net.version == 6 else []
        self.ip("addr", "add", str(net), "dev", ifname, *extra)

    # -- state ------------------------------------------------------------------------------

    def exists(self) -> bool:
        return (NETNS_DIR / self.name).exists()

    def pids(self) -> list[int]:
        """Processes whose network namespace is this one (`ip netns pids`)."""
        if not self.exists():
            return []
        out = run_host(_ip_command(["netns", "pids", self.name]), check=False).stdout
        return [int(p) for p in out.split() if p.isdigit()]

    def routes(self, prefix: str | None = None) -> list[dict[str, Any]]:
        """The kernel routes of the main table (`ip -j route show [PREFIX]`), either family
        chosen by the prefix (IPv4 when none is given)."""
        args = ["route", "show"] if prefix is None else ["route", "show", prefix]
        family = "-6" if prefix is not None and ":" in prefix else "-4"
        result: list[dict[str, Any]] = self.ip_json(family, *args)
        return result

    def kernel_nexthops(self, prefix: str) -> list[str]:
        """The gateways the kernel has for exactly `prefix`, sorted: one for a plain route,
        several for an ECMP (multipath) route, none when there is no route or no gateway."""
        return kernel_nexthops(self.routes(prefix), prefix)

    def delete(self, *, timeout: float = 5.0) -> None:
        """Kill whatever still runs inside (SIGTERM, then SIGKILL), then remove the namespace
        and so its interfaces. Idempotent; safe on a namespace that is already gone."""
        if not self.exists():
            return
        _terminate(self.pids(), timeout)
        run_host(_ip_command(["netns", "del", self.name]), check=False)
        if self.exists():
            raise LabError(f"namespace {self.name} could not be removed")


def _terminate(pids: Sequence[int], timeout: float) -> None:
    own = os.getpid()
    victims = [p for p in pids if p != own]
    for sig in (signal.SIGCONT, signal.SIGTERM):  # a frozen daemon must be thawed to exit
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while victims and time.monotonic() < deadline:
        victims = [p for p in victims if _pid_alive(p) and not _is_zombie(p)]
        if victims:
            time.sleep(0.05)
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def kernel_nexthops(routes: Sequence[Mapping[str, Any]], prefix: str) -> list[str]:
    """Gateways of the route for exactly `prefix` in `ip -j route` output (pure helper)."""
    want = netaddr.IPNetwork(prefix)
    gateways: list[str] = []
    for route in routes:
        dst = route.get("dst")
        if dst is None or _dst_network(dst, want.version) != want:
            continue
        if "gateway" in route:
            gateways.append(route["gateway"])
        for hop in route.get("nexthops", []):
            if "gateway" in hop:
                gateways.append(hop["gateway"])
    return sorted(gateways)


def _dst_network(dst: str, version: int) -> netaddr.IPNetwork:
    if dst == "default":
        return netaddr.IPNetwork("0.0.0.0/0" if version == 4 else "::/0")
    return netaddr.IPNetwork(dst)


@dataclass(frozen=True)
class Endpoint:
    """One end of a veth link: the namespace, the interface name and its addresses (CIDR)."""

    namespace: Namespace
    ifname: str
    addresses: tuple[str, ...]

    def _address(self, version: int) -> str:
        for cidr in self.addresses:
            net = netaddr.IPNetwork(cidr)
            if net.version == version:
                return str(net.ip)
        raise LabError(f"{self.ifname} in {self.namespace.name} has no IPv{version} address")

    @property
    def ipv4(self) -> str:
        """The (first) IPv4 address, without the prefix length."""
        return self._address(4)

    @property
    def ipv6(self) -> str:
        """The (first) IPv6 address, without the prefix length."""
        return self._address(6)


@dataclass(frozen=True)
class Link:
    """A veth pair between two namespaces. It goes away with either namespace."""

    a: Endpoint
    b: Endpoint

    def delete(self) -> None:
        """Remove the pair now (deleting one end removes both)."""
        if self.a.namespace.exists():
            run_host(
                _ip_command(["-n", self.a.namespace.name, "link", "del", self.a.ifname]),
                check=False,
            )

    def set_up(self, up: bool = True) -> None:
        """Bring both ends up or down (a cable pulled, as a peer sees it)."""
        state = "up" if up else "down"
        for end in (self.a, self.b):
            end.namespace.ip("link", "set", end.ifname, state)


def link(
    ns_a: Namespace,
    addresses_a: Sequence[str],
    ns_b: Namespace,
    addresses_b: Sequence[str],
    *,
    name_a: str | None = None,
    name_b: str | None = None,
    timeout: float = 5.0,
) -> Link:
    """Create a veth pair between two namespaces, give each end its addresses (CIDR strings,
    IPv4 and/or IPv6; IPv6 without duplicate address detection), bring both up and wait for
    the carrier. Default interface names are unique per process: `v<pid-ish><n>a`/`...b`."""
    n = next(_link_counter)
    tag = f"{os.getpid() % 100000}x{n}"
    name_a = name_a or f"v{tag}a"
    name_b = name_b or f"v{tag}b"
    for name in (name_a, name_b):
        if len(name) > IFNAME_MAX:
            raise LabError(f"interface name {name!r} is longer than {IFNAME_MAX} characters")
    run_host(
        _ip_command(
            [
                "link",
                "add",
                name_a,
                "netns",
                ns_a.name,
                "type",
                "veth",
                "peer",
                "name",
                name_b,
                "netns",
                ns_b.name,
            ]
        )
    )
    pair = Link(
        Endpoint(ns_a, name_a, tuple(addresses_a)), Endpoint(ns_b, name_b, tuple(addresses_b))
    )
    for end in (pair.a, pair.b):
        end.namespace.sysctl(f"net.ipv6.conf.{end.ifname}.accept_dad", "0")
        for cidr in end.addresses:
            end.namespace.add_address(end.ifname, cidr)
        end.namespace.ip("link", "set", end.ifname, "up")
    _wait_carrier(pair, timeout)
    return pair


def _wait_carrier(pair: Link, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        states = [
            end.namespace.ip_json("link", "show", "dev", end.ifname)[0].get("operstate")
            for end in (pair.a, pair.b)
        ]
        if all(state == "UP" for state in states):
            return
        if time.monotonic() > deadline:
            raise LabError(f"veth {pair.a.ifname}/{pair.b.ifname} not up after {timeout} s")
        time.sleep(0.02)


CLONE_NEWNET = 0x40000000


def enter(namespace: Namespace) -> None:
    """Move the calling thread into the namespace (network namespaces belong to threads: the
    rest of the process stays where it was, and sockets this thread opens are in there)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{namespace.name}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise LabError(f"setns into {namespace.name} failed: {os.strerror(errno)}")
    finally:
        os.close(fd)


def listening_socket(namespace: Namespace, host: str, port: int) -> socket.socket:
    """A TCP socket listening on host:port (IPv4, or IPv6 only when host has a colon) inside
    the namespace, made by a short-lived thread
    that entered it. The socket stays in that namespace wherever it is used from: a server in
    this process (sart.testing.proxy) can accept there and connect out from here."""
    made: list[socket.socket] = []
    failed: list[BaseException] = []

    def make() -> None:
        try:
            enter(namespace)
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            listener = socket.socket(family, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:  # IPv6 only: an IPv4 listener may share the port
                listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            listener.bind((host, port))
            listener.listen(128)
            made.append(listener)
        except BaseException as error:  # raised in the caller below
            failed.append(error)

    thread = threading.Thread(target=make, name=f"listen-{namespace.name}")
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return made[0]
