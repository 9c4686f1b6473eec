"""`sartd`: the daemons. `sartd bgp` runs the BGP speaker; `agent`, `fib` and `controller` join
it as subcommands.

This module is the flags only: each command imports what it runs (`sart.cli.run_<command>`)
when it runs, so `sartd bgp` never loads the Kubernetes client and `--help` loads nothing
heavy (benchmarks/startup.py measures it, tests/unit/test_imports.py keeps it so)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from sart.cli.controller import options as controller_options
from sart.cli.logs import log_options
from sart.cni.spec import DEFAULT_SOCKET as CNI_SOCKET

CNI_GC_INTERVAL = 60.0  # sart.k8s.runtime.cni.GC_INTERVAL (a test keeps them equal)
METRICS_HELP = "; also /healthz and /readyz. Empty to turn them off."


@click.group()
@click.version_option(package_name="sart")
def main() -> None:
    """sartd: the sart daemons."""


@main.command()
@click.option(
    "-f",
    "--file",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="YAML configuration (the original sart's format, extended).",
)
@click.option("--as", "asn", type=int, help="Our AS number (overrides the file).")
@click.option("--router-id", help="Our BGP identifier, an IPv4 address (overrides the file).")
@click.option("--port", type=click.IntRange(0, 65535), help="TCP port to listen on (default 179).")
@click.option(
    "--graceful-restart/--no-graceful-restart",
    "restarting_side",
    default=None,
    help="Graceful restart as the restarting speaker (RFC 4724): announce each family with "
    "its forwarding-state bit, set the Restart State bit on the first sessions after start, "
    "and stop without a NOTIFICATION so that the routers keep our routes until we are back.",
)
@click.option(
    "--defer-end-of-rib/--no-defer-end-of-rib",
    "defer_end_of_rib",
    default=None,
    help="Hold End-of-RIB until the API's EndOfInitialTable (the agent calls it after its "
    "first full sync) or until --selection-deferral-time.",
)
@click.option(
    "--selection-deferral-time",
    type=click.IntRange(1, 3600),
    help="Seconds End-of-RIB waits for EndOfInitialTable at most (default 60).",
)
@click.option(
    "--bmp",
    multiple=True,
    metavar="ADDRESS:PORT",
    help="A BMP collector (RFC 7854) to report the sessions to; repeatable; replaces the "
    "file's bmp list.",
)
@click.option(
    "--mrt-updates",
    "mrt_updates_file",
    type=click.Path(dir_okay=False),
    help="Append every UPDATE received, and every session coming up or going down, to this "
    "MRT file (RFC 6396 BGP4MP; overrides the file's mrt_updates_file).",
)
@click.option(
    "--api-address",
    default="localhost:5000",
    show_default=True,
    help="Where the gRPC APIs (ours, sart.speaker.v1, and the original's sart.v1) listen: "
    "HOST:PORT or unix:PATH.",
)
@click.option(
    "--metrics-address",
    default="0.0.0.0:9469",
    show_default=True,
    help="Where Prometheus metrics are served (/metrics)" + METRICS_HELP,
)
@log_options
def bgp(**options: Any) -> None:
    """Run the BGP speaker."""
    from sart.cli import run_bgp  # noqa: PLC0415  (what the command runs: only now)

    run_bgp.run(**options)


@main.command("controller")
@controller_options
def controller(**kwargs: str | bool | None) -> None:
    """Run the LoadBalancer controller (the same as sart-controller)."""
    from sart.cli.controller import run  # noqa: PLC0415

    run(**kwargs)  # type: ignore[arg-type]


@main.command("agent")
@click.option("--kubeconfig", envvar="KUBECONFIG", help="Default: in-cluster config.")
@click.option(
    "--node", envvar="NODE_NAME", required=True, help="This node's name (also $NODE_NAME)."
)
@click.option(
    "--endpoint",
    default="localhost:5000",
    show_default=True,
    help="The local speaker's API (HOST:PORT or unix:PATH) where this node's NodeBGP says"
    " none (spec.speaker.path comes first) or names one that cannot be reached.",
)
@click.option(
    "--metrics-address",
    default="0.0.0.0:9471",
    show_default=True,
    help="Where the agent's Prometheus metrics (sart_agent_*) are served" + METRICS_HELP,
)
@click.option(
    "--cni-socket",
    default="",
    help='Serve sart-cni on this unix socket (its netconf\'s "socket", by default'
    f" {CNI_SOCKET}): pods get their addresses from this node's AddressBlocks. Empty (the"
    " default): no CNI side.",
)
@click.option(
    "--cni-gc-interval",
    type=click.FloatRange(min=1),
    default=CNI_GC_INTERVAL,
    show_default=True,
    help="Seconds between sweeps removing the pod interfaces of pods that no longer exist.",
)
@click.option(
    "--bind-addresses",
    "bind_interface",
    is_flag=False,
    flag_value="lo",
    default=None,
    metavar="[=IFNAME]",
    help="Put every LoadBalancer address this node announces on IFNAME (lo when none is"
    " given) as a /32 or /128, and take it off when withdrawn. Default: off.",
)
@log_options
def agent(**options: Any) -> None:
    """Run the node agent: configure the local speaker as the node's NodeBGP, BGPPeers and
    BGPAdvertisements say, and report its state in their status; with --cni-socket, also
    give pods their addresses and interfaces (sart-cni)."""
    from sart.cli import run_agent  # noqa: PLC0415  (the Kubernetes client: only now)

    run_agent.run(**options)


@main.command("fib")
@click.option(
    "--endpoint",
    default="localhost:5000",
    show_default=True,
    help="The speaker's API (HOST:PORT or unix:PATH), as `sartd agent` reaches it.",
)
@click.option(
    "--table",
    type=click.IntRange(1, 2**32 - 1),
    default=254,
    show_default=True,
    help="Routing table of our routes (254: main).",
)
@click.option(
    "--protocol",
    type=click.IntRange(1, 255),
    default=186,
    show_default=True,
    help="Protocol number our routes carry, and by which we find them again (186: bgp).",
)
@click.option(
    "--metric",
    type=click.IntRange(1, 2**32 - 1),
    default=20,
    show_default=True,
    help="Metric (priority) of our routes.",
)
@click.option(
    "--prefix",
    "prefixes",
    multiple=True,
    help="Install only prefixes inside this one (repeatable). Default: all but the default "
    "routes, which are installed only when named (--prefix 0.0.0.0/0).",
)
@click.option(
    "--family",
    "families",
    type=click.Choice(["ipv4", "ipv6"]),
    multiple=True,
    help="Install only this family (repeatable). Default: both.",
)
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=90.0,
    show_default=True,
    help="Seconds our routes stay when the speaker is gone; and routes a restarted speaker "
    "has not relearned stay until it has been up this long.",
)
@click.option(
    "--resync-interval",
    type=click.FloatRange(min=0),
    default=300.0,
    show_default=True,
    help="Seconds between whole-table reconciles with the speaker and the kernel; 0: never.",
)
@click.option(
    "--flush-on-exit",
    is_flag=True,
    help="Remove our routes when stopped (by default they stay, for a restart to take over).",
)
@click.option(
    "--metrics-address",
    default="0.0.0.0:9472",
    show_default=True,
    help="Where Prometheus metrics (sart_fib_*) are served" + METRICS_HELP,
)
@log_options
def fib(**options: Any) -> None:
    """Install the routes the speaker selected into the kernel (the original's `sartd fib`)."""
    from sart.cli import run_fib  # noqa: PLC0415  (netlink and the API client: only now)

    run_fib.run(**options)


if __name__ == "__main__":
    main()
