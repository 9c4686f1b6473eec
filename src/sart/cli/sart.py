"""The `sart` command: tools over the library for people at a terminal."""

from __future__ import annotations

import json
import string
import sys
from typing import Any, BinaryIO

import click

from sart.bgp.codes import ErrorCode, ErrorHandling, HeaderSubcode, describe_error
from sart.bgp.context import SessionContext
from sart.bgp.display import format_message, message_to_dict
from sart.bgp.errors import BgpDecodeError
from sart.bgp.messages import Family
from sart.bgp.wire import decode_message
from sart.bgp.wire.framing import MessageSplitter
from sart.cli.bgp_commands import global_, neighbor, rib
from sart.cli.lb_commands import lb

_HEX_TEXT = set(string.hexdigits + string.whitespace + ":")


def _read_input(stream: BinaryIO) -> bytes:
    """Raw BGP bytes, or a hex dump of them (whitespace, colons and 0x prefixes allowed):
    raw messages start with 0xff, which no hex dump does."""
    data = stream.read()
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        return data
    cleaned = " ".join(text.split()).replace("0x", "").replace("0X", "")
    if not cleaned or not set(cleaned) <= _HEX_TEXT:
        return data
    digits = "".join(ch for ch in cleaned if ch in string.hexdigits)
    if len(digits) % 2:
        raise click.BadParameter("the hex dump has an odd number of digits", param_hint="FILE")
    return bytes.fromhex(digits)


def _family(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> frozenset[Family]:
    try:
        return frozenset(Family.from_str(value) for value in values)
    except ValueError as error:
        raise click.BadParameter(str(error), ctx=ctx, param=param) from None


@click.group()
@click.version_option(package_name="sart")
def main() -> None:
    """sart: routable bare-metal Kubernetes. Tools over the sart library."""


@main.group()
def bgp() -> None:
    """BGP tools."""


@bgp.command()
@click.argument("source", type=click.File("rb"), metavar="FILE|-")
@click.option(
    "--format",
    "output",
    type=click.Choice(["plain", "json"]),
    default="plain",
    show_default=True,
    help="json: one JSON object per message, one per line.",
)
@click.option("--two-octet-as", is_flag=True, help="The session did not negotiate 4-octet ASNs.")
@click.option(
    "--add-path",
    multiple=True,
    callback=_family,
    metavar="FAMILY",
    help="NLRI of FAMILY carry path identifiers (ipv4-unicast, ipv6-unicast). Repeatable.",
)
@click.option(
    "--extended-next-hop",
    multiple=True,
    callback=_family,
    metavar="FAMILY",
    help="FAMILY may carry IPv6 next hops (RFC 8950). Repeatable.",
)
@click.option("--extended-message", is_flag=True, help="Messages may be up to 65535 octets.")
def decode(
    source: BinaryIO,
    output: str,
    two_octet_as: bool,
    add_path: frozenset[Family],
    extended_next_hop: frozenset[Family],
    extended_message: bool,
) -> None:
    """Print the BGP messages in FILE (raw bytes or a hex dump; - for standard input).

    Exits 1 when a message is malformed, after printing the NOTIFICATION it calls for and
    the RFC 7606 handling; messages after it are still decoded when the framing allows.
    """
    ctx = SessionContext(
        four_octet_as=not two_octet_as,
        add_path=add_path,
        extended_next_hop=extended_next_hop,
        extended_message=extended_message,
    )
    emit = _print_json if output == "json" else _print_plain
    splitter = MessageSplitter(ctx.max_message_length)
    splitter.feed(_read_input(source))
    index = malformed = 0
    while True:
        offset = splitter.position
        index += 1
        try:
            raw = splitter.next_message()
        except BgpDecodeError as error:  # framing is lost: nothing after this can be read
            emit({"index": index, "offset": offset, "error": _error_dict(error, offset)})
            sys.exit(_summarise(malformed + 1))
        if raw is None:
            break
        entry: dict[str, Any] = {"index": index, "offset": offset, "length": len(raw)}
        try:
            entry["message"] = decode_message(raw, ctx)
        except BgpDecodeError as error:
            error.offset = offset + (error.offset or 0)
            entry["error"] = _error_dict(error, offset)
            if error.code == ErrorCode.UPDATE_MESSAGE and not two_octet_as:
                entry["error"]["hint"] = "if the session has 2-octet ASNs, add --two-octet-as"
            malformed += 1
        emit(entry)
    if splitter.buffered:
        cut = BgpDecodeError(
            f"the input ends {splitter.buffered} octets into a message that is not complete",
            ErrorCode.MESSAGE_HEADER,
            HeaderSubcode.BAD_MESSAGE_LENGTH,
            offset=splitter.position,
        )
        emit({"index": index, "offset": splitter.position, "error": _error_dict(cut, offset)})
        malformed += 1
    sys.exit(_summarise(malformed))


def _summarise(malformed: int) -> int:
    """The exit status: 1 when anything was malformed, said once on standard error."""
    if malformed:
        click.echo(f"sart: {malformed} malformed message(s)", err=True)
    return 1 if malformed else 0


def _error_dict(error: BgpDecodeError, message_offset: int) -> dict[str, Any]:
    return {
        "code": error.code,
        "subcode": error.subcode,
        "description": describe_error(error.code, error.subcode),
        "data_hex": error.data.hex(),
        "handling": error.handling.value,
        "offset": error.offset,
        "message_offset": message_offset,
        "reason": error.reason,
        "recovered": error.recovered,
    }


def _print_json(entry: dict[str, Any]) -> None:
    out = dict(entry)
    if "message" in out:
        out["message"] = message_to_dict(out["message"])
    if "error" in out:
        error = out["error"] = dict(out["error"])
        if error["recovered"] is not None:
            error["recovered"] = message_to_dict(error["recovered"])
    click.echo(json.dumps(out))


_HANDLING_TEXT = {
    ErrorHandling.SESSION_RESET.value: "session reset: send the NOTIFICATION and close",
    ErrorHandling.AFI_SAFI_DISABLE.value: "AFI/SAFI disable: drop the family's routes",
    ErrorHandling.TREAT_AS_WITHDRAW.value: "treat-as-withdraw: the UPDATE's routes are withdrawn",
    ErrorHandling.ATTRIBUTE_DISCARD.value: "attribute discard: the attribute is dropped",
}


def _print_plain(entry: dict[str, Any]) -> None:
    head = f"#{entry['index']} at byte {entry['offset']}"
    if "length" in entry:
        head += f" ({entry['length']} octets)"
    message = entry.get("message")
    if message is not None:
        click.echo(f"{head}: {format_message(message)}")
        return
    error = entry["error"]
    click.echo(f"{head}: MALFORMED at byte {error['offset']}: {error['reason']}")
    data = f", data {error['data_hex']}" if error["data_hex"] else ""
    click.echo(f"  NOTIFICATION {error['code']}/{error['subcode']} {error['description']}{data}")
    click.echo(f"  RFC 7606: {_HANDLING_TEXT[error['handling']]}")
    if "hint" in error:
        click.echo(f"  hint: {error['hint']}")
    if error["recovered"] is not None:
        recovered = format_message(error["recovered"]).replace("\n", "\n  ")
        click.echo(f"  act on: {recovered}")


bgp.add_command(global_)
bgp.add_command(neighbor)
bgp.add_command(rib)
main.add_command(lb)

if __name__ == "__main__":
    main()
