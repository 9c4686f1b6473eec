"""`sart bgp global ...` and `sart bgp neighbor ...`: the speaker's API from a terminal.

The command set of the original sart's CLI, with gobgp-style tables and JSON for scripts.
Exit codes: 0 done; 1 the speaker refused the call (its message is printed); 2 a wrong flag
or argument; 3 the speaker cannot be reached.
"""

from __future__ import annotations

import asyncio
import functools
import json
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from sart.api._gen.sart.speaker.v1 import speaker_pb2 as pb
from sart.api.client import (
    DEFAULT_ENDPOINT,
    ApiError,
    SpeakerClient,
    SpeakerUnreachable,
    parse_endpoint,
    unix_socket_path,
)

P = ParamSpec("P")
T = TypeVar("T")
EXIT_REFUSED, EXIT_UNREACHABLE = 1, 3

STATE_NAMES = {
    pb.SESSION_STATE_IDLE: "Idle",
    pb.SESSION_STATE_CONNECT: "Connect",
    pb.SESSION_STATE_ACTIVE: "Active",
    pb.SESSION_STATE_OPEN_SENT: "OpenSent",
    pb.SESSION_STATE_OPEN_CONFIRM: "OpenConfirm",
    pb.SESSION_STATE_ESTABLISHED: "Established",
}
ORIGIN_LETTERS = {pb.ORIGIN_IGP: "i", pb.ORIGIN_EGP: "e", pb.ORIGIN_INCOMPLETE: "?"}
FAMILY_CHOICE = click.Choice(["ipv4", "ipv6"])


def api_command(function: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """The shared flags, and the call run on an event loop with errors turned into exits."""

    @click.option(
        "--endpoint",
        default=DEFAULT_ENDPOINT,
        show_default=True,
        envvar="SART_ENDPOINT",
        help="The speaker's API (HOST:PORT or unix:PATH); also $SART_ENDPOINT.",
    )
    @click.option(
        "--format",
        "output",
        type=click.Choice(["plain", "json"]),
        default="plain",
        show_default=True,
        help="json: machine-readable output.",
    )
    @functools.wraps(function)
    def command(endpoint: str, output: str, **kwargs: Any) -> None:
        try:
            if unix_socket_path(endpoint) is None:
                parse_endpoint(endpoint)
        except ValueError as error:
            raise click.BadParameter(str(error), param_hint="--endpoint") from None

        async def run() -> None:
            async with SpeakerClient(endpoint) as client:  # its channel needs the running loop
                await function(client, output, **kwargs)

        try:
            asyncio.run(run())
        except SpeakerUnreachable as error:
            click.echo(f"sart: {error.message} (is sartd bgp running?)", err=True)
            sys.exit(EXIT_UNREACHABLE)
        except ApiError as error:
            click.echo(f"sart: {error.status.name}: {error.message}", err=True)
            sys.exit(EXIT_REFUSED)

    return command


def _json(messages: Message | Iterable[Message]) -> None:
    def one(message: Message) -> dict[str, Any]:
        return MessageToDict(
            message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )

    if isinstance(messages, Message):
        click.echo(json.dumps(one(messages), indent=2))
    else:
        click.echo(json.dumps([one(m) for m in messages], indent=2))


def _age(seconds: float) -> str:
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    text = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}d {text}" if days else text


def _table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=True)]
    for row in (header, *rows):
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _print_paths(paths: list[pb.Path], output: str) -> None:
    if output == "json":
        _json(paths)
        return
    if not paths:
        click.echo("no routes")
        return
    rows = []
    for path in paths:
        attributes = []
        if path.HasField("local_pref"):
            attributes.append(f"LocalPref {path.local_pref}")
        if path.HasField("med"):
            attributes.append(f"MED {path.med}")
        if path.communities:
            attributes.append("Communities " + " ".join(path.communities))
        if path.large_communities:
            attributes.append("LargeCommunities " + " ".join(path.large_communities))
        marks = ("*>" if path.best else "* ") + ("S" if path.stale else "")
        as_path = f"{path.as_path} {ORIGIN_LETTERS[path.origin]}".strip()
        rows.append(
            [
                marks,
                path.prefix,
                path.next_hop or "self",
                as_path,
                _age(path.age_seconds),
                ", ".join(attributes),
            ]
        )
    _table(rows, ["", "Network", "Next Hop", "AS_PATH", "Age", "Attrs"])


# --- sart bgp global -----------------------------------------------------------------------


@click.group("global")
def global_() -> None:
    """The speaker itself: AS, router id, multipath and its Loc-RIB."""


@global_.command("get")
@api_command
async def global_get(client: SpeakerClient, output: str) -> None:
    """Show AS, router id, port and counts."""
    info = await client.info()
    if output == "json":
        _json(info)
        return
    click.echo(f"AS:          {info.asn}")
    click.echo(f"Router id:   {info.router_id}")
    click.echo(f"Listen port: {info.port}")
    click.echo(f"Multipath:   {'on' if info.multi_path else 'off'}")
    click.echo(f"Neighbors:   {info.neighbors} ({info.established} established)")
    click.echo(f"Loc-RIB:     {info.rib_ipv4} IPv4, {info.rib_ipv6} IPv6 prefixes")
    click.echo(f"Local paths: {info.local_paths}")
    click.echo(f"Uptime:      {_age(info.uptime_seconds)}")


@global_.command("set")
@click.option("--asn", type=click.IntRange(1, 2**32 - 1), help="Our AS (only with no neighbors).")
@click.option("--router-id", help="Our BGP identifier (only with no neighbors).")
@click.option("--multipath/--no-multipath", default=None, help="ECMP in the Loc-RIB.")
@click.option("--multipath-relax", is_flag=True, help="ECMP across neighbouring ASes.")
@api_command
async def global_set(
    client: SpeakerClient,
    output: str,
    asn: int | None,
    router_id: str | None,
    multipath: bool | None,
    multipath_relax: bool,
) -> None:
    """Change AS, router id or multipath."""
    if asn is None and router_id is None and multipath is None:
        raise click.UsageError("nothing to set: give --asn, --router-id or --multipath")
    if asn is not None:
        await client.set_as(asn)
    if router_id is not None:
        await client.set_router_id(router_id)
    if multipath is not None:
        await client.set_multipath(multipath, relax_as=multipath_relax)


@global_.group("rib")
def global_rib() -> None:
    """The Loc-RIB and our own paths."""


@global_rib.command("get")
@click.argument("prefixes", nargs=-1)
@click.option("-a", "--afi", type=FAMILY_CHOICE, help="Only this family.")
@click.option("--longest-match", is_flag=True, help="PREFIXES are addresses: best covering route.")
@api_command
async def rib_get(
    client: SpeakerClient,
    output: str,
    prefixes: tuple[str, ...],
    afi: str | None,
    longest_match: bool,
) -> None:
    """Show the Loc-RIB (all of it, or PREFIXES)."""
    _print_paths(await client.rib(afi, prefixes, longest_match=longest_match), output)


@global_rib.command("add")
@click.argument("prefixes", nargs=-1, required=True)
@click.option("-a", "--afi", type=FAMILY_CHOICE, help="Accepted for compatibility; implied.")
@click.option(
    "--origin", type=click.Choice(["igp", "egp", "incomplete"]), default="igp", show_default=True
)
@click.option("--local-pref", type=click.IntRange(0, 2**32 - 1))
@click.option("--med", type=click.IntRange(0, 2**32 - 1))
@click.option("--community", "communities", multiple=True, help="ASN:VALUE or a name. Repeatable.")
@click.option(
    "--large-community",
    "large_communities",
    multiple=True,
    help="GLOBAL:LOCAL1:LOCAL2 (RFC 8092). Repeatable.",
)
@click.option("--next-hop", default="", help="Default: our address on each session.")
@api_command
async def rib_add(
    client: SpeakerClient,
    output: str,
    prefixes: tuple[str, ...],
    afi: str | None,
    origin: str,
    local_pref: int | None,
    med: int | None,
    communities: tuple[str, ...],
    large_communities: tuple[str, ...],
    next_hop: str,
) -> None:
    """Originate paths to PREFIXES (all or none)."""
    added = await client.add_paths(
        prefixes,
        origin=origin,
        local_pref=local_pref,
        med=med,
        communities=communities,
        large_communities=large_communities,
        next_hop=next_hop,
    )
    if output == "json":
        click.echo(json.dumps({"added": added}))


@global_rib.command("del")
@click.argument("prefixes", nargs=-1, required=True)
@click.option("-a", "--afi", type=FAMILY_CHOICE, help="Accepted for compatibility; implied.")
@api_command
async def rib_del(
    client: SpeakerClient, output: str, prefixes: tuple[str, ...], afi: str | None
) -> None:
    """Stop originating PREFIXES."""
    deleted = await client.delete_paths(prefixes)
    if output == "json":
        click.echo(json.dumps({"deleted": deleted}))


# --- sart bgp rib ---------------------------------------------------------------------------


@click.group("rib")
def rib() -> None:
    """The speaker's tables as files."""


@rib.command("dump")
@click.option(
    "--mrt",
    "file",
    required=True,
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write an MRT file (RFC 6396 TABLE_DUMP_V2) here.",
)
@click.option(
    "--table",
    type=click.Choice(["loc", "in"]),
    default="loc",
    show_default=True,
    help="loc: the Loc-RIB (the best path of each prefix, and its multipath peers); "
    "in: every path of each prefix, by the neighbor that sent it (and ours).",
)
@click.option("--neighbor", default="", help="With --table in: only this neighbor's paths.")
@click.option("-a", "--afi", type=FAMILY_CHOICE, help="Only this family.")
@api_command
async def rib_dump(
    client: SpeakerClient, output: str, file: Path, table: str, neighbor: str, afi: str | None
) -> None:
    """Dump a RIB to an MRT file (`bgpdump -m FILE` reads it)."""
    if neighbor and table != "in":
        raise click.UsageError("--neighbor needs --table in")
    started = time.monotonic()
    written = 0
    partial = file.with_name(file.name + ".part")  # the file appears only once complete
    try:
        with partial.open("wb") as out:
            async for chunk in client.dump_rib(table, afi, neighbor):
                out.write(chunk)
                written += len(chunk)
        partial.replace(file)
    finally:
        partial.unlink(missing_ok=True)
    seconds = time.monotonic() - started
    if output == "json":
        click.echo(json.dumps({"file": str(file), "bytes": written, "seconds": seconds}))
    else:
        click.echo(f"{file}: {written} octets in {seconds:.2f} s")


# --- sart bgp neighbor ---------------------------------------------------------------------


@click.group("neighbor")
def neighbor() -> None:
    """Peers: list, add, remove, enable/disable, and their RIBs."""


@neighbor.command("list")
@api_command
async def neighbor_list(client: SpeakerClient, output: str) -> None:
    """All neighbors with their session state."""
    neighbors = await client.neighbors()
    if output == "json":
        _json(neighbors)
        return
    rows = [
        [
            n.config.address,
            str(n.config.asn),
            _age(n.uptime_seconds) if n.state == pb.SESSION_STATE_ESTABLISHED else "never",
            STATE_NAMES.get(n.state, "?") + (" (admin down)" if n.config.admin_down else ""),
            str(n.prefixes_received),
            str(n.prefixes_sent),
        ]
        for n in neighbors
    ]
    _table(rows, ["Peer", "AS", "Up/Down", "State", "#Received", "#Sent"])


@neighbor.command("get")
@click.argument("address")
@api_command
async def neighbor_get(client: SpeakerClient, output: str, address: str) -> None:
    """One neighbor in detail."""
    state = await client.neighbor(address)
    if output == "json":
        _json(state)
        return
    config = state.config
    click.echo(f"BGP neighbor {config.address}, remote AS {config.asn}")
    if config.name:
        click.echo(f"  Name: {config.name}")
    up = state.state == pb.SESSION_STATE_ESTABLISHED
    since = f", up for {_age(state.uptime_seconds)}" if up else ""
    click.echo(f"  State: {STATE_NAMES.get(state.state, '?')}{since}")
    if state.peer_router_id:
        click.echo(f"  Router id: {state.peer_router_id}, hold time {state.negotiated_hold_time} s")
    click.echo(f"  Messages: {state.messages_received} received, {state.messages_sent} sent")
    click.echo(f"  Updates:  {state.updates_received} received, {state.updates_sent} sent")
    click.echo(f"  Prefixes: {state.prefixes_received} received, {state.prefixes_sent} sent")
    click.echo(f"  Routes ignored (bad next hop): {state.routes_ignored}")
    if config.max_prefixes:
        restart = (
            f"restart after {config.max_prefixes_restart} s"
            if config.max_prefixes_restart
            else "down until enabled"
        )
        click.echo(
            f"  Maximum prefixes: {config.max_prefixes} (warning at"
            f" {config.max_prefixes_warning}%, {restart}); warnings"
            f" {state.prefix_limit_warnings}, exceeded {state.prefix_limit_exceeded}"
        )
    flags = [
        name
        for name, on in (
            ("passive", config.passive),
            ("admin down", config.admin_down),
            ("TCP-MD5", state.has_password),
            ("graceful restart", config.graceful_restart),
        )
        if on
    ]
    if flags:
        click.echo(f"  Options: {', '.join(flags)}")
    hold = f"{config.hold_time} s" if config.HasField("hold_time") else "the speaker's"
    keepalive = (
        f"{config.keepalive_time} s" if config.HasField("keepalive_time") else "hold time / 3"
    )
    ttl = config.ttl or "default"
    if config.HasField("bfd"):
        bfd = config.bfd
        click.echo(
            f"  BFD: min rx {bfd.min_rx_ms} ms, min tx {bfd.min_tx_ms} ms,"
            f" multiplier {bfd.multiplier}"
        )
    click.echo(f"  Configured: hold time {hold}, keepalive {keepalive}, TTL {ttl}")
    if state.last_error:
        click.echo(f"  Last error: {state.last_error}")


def _bfd_option(value: str | None) -> pb.Bfd | None:
    if value is None:
        return None
    try:
        rx, tx, multiplier = (int(part) for part in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not RX,TX,MULT (three integers)") from None
    if not (0 < rx < 2**32 and 0 < tx < 2**32 and 0 < multiplier < 256):
        raise click.BadParameter(f"{value!r}: intervals of 1 ms or more, a multiplier 1..255")
    return pb.Bfd(min_rx_ms=rx, min_tx_ms=tx, multiplier=multiplier)


@neighbor.command("add")
@click.argument("address")
@click.argument("asn", type=click.IntRange(1, 2**32 - 1))
@click.option("--name", default="")
@click.option("--port", type=click.IntRange(1, 65535), default=179, show_default=True)
@click.option("--passive", is_flag=True, help="Never dial; wait for the peer.")
@click.option("--hold-time", type=int, help="Seconds: 0 or 3..65535 (default: the speaker's).")
@click.option(
    "--keepalive-time", type=click.IntRange(1, 65535), help="Seconds, below the hold time."
)
@click.option("--password", default="", help="TCP-MD5 password.")
@click.option("--ttl", type=click.IntRange(1, 255), help="Default 1 for eBGP, 255 for iBGP.")
@click.option("--local-address", default="", help="Source address of our connection.")
@click.option("--family", "families", multiple=True, type=FAMILY_CHOICE, help="Repeatable.")
@click.option("--next-hop", "next_hops", multiple=True, help="Our next hop for a family.")
@click.option("--graceful-restart/--no-graceful-restart", default=True, show_default=True)
@click.option("--disabled", is_flag=True, help="Add it administratively down.")
@click.option(
    "--max-prefixes",
    type=click.IntRange(1, 2**32 - 1),
    help="At most this many paths from the peer; past it: Cease / Maximum Number of Prefixes.",
)
@click.option(
    "--max-prefixes-warning",
    type=click.IntRange(1, 100),
    help="Percent of --max-prefixes that logs a warning (default 75).",
)
@click.option(
    "--max-prefixes-restart",
    type=click.IntRange(0, 2**31 - 1),
    default=0,
    show_default=True,
    help="Seconds down after the limit was passed; 0: until `neighbor enable`.",
)
@click.option(
    "--bfd",
    metavar="RX,TX,MULT",
    callback=lambda _ctx, _param, value: _bfd_option(value),
    help="BFD with the peer: min RX and min TX interval (ms), detect multiplier.",
)
@api_command
async def neighbor_add(
    client: SpeakerClient,
    output: str,
    address: str,
    asn: int,
    disabled: bool,
    ttl: int | None,
    hold_time: int | None,
    keepalive_time: int | None,
    max_prefixes: int | None,
    max_prefixes_warning: int | None,
    bfd: pb.Bfd | None,
    **options: Any,
) -> None:
    """Add a neighbor ADDRESS in AS ASN."""
    if bfd is not None:
        options["bfd"] = bfd
    if max_prefixes is not None:
        options["max_prefixes"] = max_prefixes
    if max_prefixes_warning is not None:
        options["max_prefixes_warning"] = max_prefixes_warning
    if ttl is not None:
        options["ttl"] = ttl
    if hold_time is not None:
        options["hold_time"] = hold_time
    if keepalive_time is not None:
        options["keepalive_time"] = keepalive_time
    await client.add_neighbor(address, asn, admin_down=disabled, **options)


@neighbor.command("del")
@click.argument("address")
@api_command
async def neighbor_del(client: SpeakerClient, output: str, address: str) -> None:
    """Remove a neighbor (its session gets a Cease / Peer De-configured)."""
    await client.delete_neighbor(address)


@neighbor.command("disable")
@click.argument("address")
@api_command
async def neighbor_disable(client: SpeakerClient, output: str, address: str) -> None:
    """Administratively down: close the session with a Cease and stay down."""
    await client.set_admin_down(address, True)


@neighbor.command("enable")
@click.argument("address")
@api_command
async def neighbor_enable(client: SpeakerClient, output: str, address: str) -> None:
    """Administratively up again."""
    await client.set_admin_down(address, False)


@neighbor.command("rib")
@click.argument("address")
@click.argument("direction", type=click.Choice(["in", "out"]))
@click.option("-a", "--afi", type=FAMILY_CHOICE, help="Only this family.")
@api_command
async def neighbor_rib(
    client: SpeakerClient, output: str, address: str, direction: str, afi: str | None
) -> None:
    """What ADDRESS sent us (in) or what we sent it (out)."""
    _print_paths(await client.neighbor_rib(address, direction, afi), output)
