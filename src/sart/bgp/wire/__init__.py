"""The BGP wire codec: pure functions from bytes to messages and back.

    >>> from sart.bgp.wire import decode_message, encode_message
    >>> decode_message(bytes.fromhex("ff" * 16 + "001304"))
    Keepalive()

Decoding raises only BgpDecodeError; encoding raises BgpUsageError for a message the
session cannot carry.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import overload

from sart.bgp.codes import (
    HEADER_LENGTH,
    MARKER,
    MAX_MESSAGE_LENGTH,
    ErrorCode,
    HeaderSubcode,
    MessageType,
    RouteRefreshSubcode,
    RouteRefreshSubtype,
)
from sart.bgp.context import DEFAULT_CONTEXT, SessionContext
from sart.bgp.errors import BgpDecodeError
from sart.bgp.messages import (
    Keepalive,
    Message,
    Notification,
    Open,
    PlainUpdate,
    RouteRefresh,
    Update,
)
from sart.bgp.wire.framing import MessageSplitter, check_header
from sart.bgp.wire.open import decode_open, encode_open
from sart.bgp.wire.update import decode_update, encode_update, withdraw_all
from sart.errors import BgpUsageError

__all__ = [
    "MessageSplitter",
    "decode_framed",
    "decode_message",
    "decode_stream",
    "encode_message",
    "withdraw_all",
]

# RFC 4271 4 / RFC 2918 3: the least (and for some, the only) length of each message type.
_MIN_LENGTH = {
    MessageType.OPEN: 29,
    MessageType.UPDATE: 23,
    MessageType.NOTIFICATION: 21,
    MessageType.KEEPALIVE: 19,
    MessageType.ROUTE_REFRESH: 23,
}
_EXACT_LENGTH = {MessageType.KEEPALIVE: 19}
_UPDATE = int(MessageType.UPDATE)
_UPDATE_MIN_LENGTH = _MIN_LENGTH[MessageType.UPDATE]
_KEEPALIVE = Keepalive()


def decode_message(data: bytes, ctx: SessionContext = DEFAULT_CONTEXT) -> Message:
    """The message in data, which must be exactly one whole message, header included."""
    if len(data) < HEADER_LENGTH:
        raise BgpDecodeError(
            f"{len(data)} octets is shorter than a message header",
            ErrorCode.MESSAGE_HEADER,
            HeaderSubcode.BAD_MESSAGE_LENGTH,
            offset=0,
        )
    length = check_header(data, 0, ctx.max_message_length)
    if length != len(data):
        raise BgpDecodeError(
            f"length field says {length} octets, the message has {len(data)}",
            ErrorCode.MESSAGE_HEADER,
            HeaderSubcode.BAD_MESSAGE_LENGTH,
            data[16:18],
            offset=16,
        )
    return decode_framed(data, ctx)


@overload
def decode_framed(data: bytes, ctx: SessionContext = DEFAULT_CONTEXT) -> Message: ...
@overload
def decode_framed(data: bytes, ctx: SessionContext, *, plain: bool) -> Message | PlainUpdate: ...


def decode_framed(
    data: bytes, ctx: SessionContext = DEFAULT_CONTEXT, *, plain: bool = False
) -> Message | PlainUpdate:
    """`decode_message` for a message a MessageSplitter cut out: its marker and length
    (against the session's maximum) are checked already. `plain`: as decode_update's."""
    length = len(data)
    kind = data[18]
    if kind == _UPDATE and length >= _UPDATE_MIN_LENGTH:  # nearly every message of a session
        return decode_update(data, ctx, plain=plain)
    minimum = _MIN_LENGTH.get(kind)  # type: ignore[call-overload]
    if minimum is None:
        raise BgpDecodeError(
            f"message type {kind} is none of OPEN, UPDATE, NOTIFICATION, KEEPALIVE, ROUTE-REFRESH",
            ErrorCode.MESSAGE_HEADER,
            HeaderSubcode.BAD_MESSAGE_TYPE,
            bytes((kind,)),
            offset=18,
        )
    exact = _EXACT_LENGTH.get(kind)  # type: ignore[call-overload]
    too_long = kind == MessageType.OPEN and length > MAX_MESSAGE_LENGTH  # RFC 8654 4
    if length < minimum or (exact is not None and length != exact) or too_long:
        name = MessageType(kind).name
        raise BgpDecodeError(
            f"a {name} cannot be {length} octets long",
            ErrorCode.MESSAGE_HEADER,
            HeaderSubcode.BAD_MESSAGE_LENGTH,
            data[16:18],
            offset=16,
        )
    if kind == MessageType.UPDATE:
        return decode_update(data, ctx)
    if kind == MessageType.KEEPALIVE:
        return _KEEPALIVE
    if kind == MessageType.OPEN:
        return decode_open(data)
    if kind == MessageType.NOTIFICATION:
        return Notification(data[19], data[20], data[21:])
    return _decode_route_refresh(data)


def _decode_route_refresh(data: bytes) -> RouteRefresh:
    afi, subtype, safi = struct.unpack_from(">HBB", data, HEADER_LENGTH)
    markers = (RouteRefreshSubtype.BEGIN_OF_ROUTE_REFRESH, RouteRefreshSubtype.END_OF_ROUTE_REFRESH)
    if len(data) != 23 and subtype in markers:  # RFC 7313 5
        raise BgpDecodeError(
            f"a ROUTE-REFRESH with subtype {subtype} is 23 octets, this one is {len(data)}",
            ErrorCode.ROUTE_REFRESH_MESSAGE,
            RouteRefreshSubcode.INVALID_MESSAGE_LENGTH,
            data,
            offset=16,
        )
    return RouteRefresh(afi, safi, subtype, data[23:])


def decode_stream(
    data: bytes, ctx: SessionContext = DEFAULT_CONTEXT
) -> Iterator[tuple[int, Message]]:
    """(stream offset, message) for each message in a byte stream that holds whole messages;
    an incomplete message at the end is a BgpDecodeError. Error offsets count from the start
    of the stream."""
    splitter = MessageSplitter(ctx.max_message_length)
    splitter.feed(data)
    for raw in splitter:
        start = splitter.position - len(raw)
        try:
            yield start, decode_message(raw, ctx)
        except BgpDecodeError as error:
            error.offset = start + (error.offset or 0)
            raise
    if splitter.buffered:
        raise BgpDecodeError(
            f"the stream ends {splitter.buffered} octets into a message that is not complete",
            ErrorCode.MESSAGE_HEADER,
            HeaderSubcode.BAD_MESSAGE_LENGTH,
            offset=splitter.position,
        )


def encode_message(message: Message, ctx: SessionContext = DEFAULT_CONTEXT) -> bytes:
    """The wire form of a message, header included."""
    try:
        body = _encode_body(message, ctx)
    except (OverflowError, struct.error, ValueError, TypeError, AttributeError) as error:
        # A field holds a value its wire format cannot carry (an ASN over 2**32, a negative
        # MED, a prefix where an address belongs): say so in our own terms.
        raise BgpUsageError(f"cannot encode {type(message).__name__}: {error}") from error
    length = HEADER_LENGTH + len(body)
    limit = MAX_MESSAGE_LENGTH if type(message) is Open else ctx.max_message_length
    if length > limit:
        name = type(message).__name__
        raise BgpUsageError(f"{name} would be {length} octets, over the session's limit of {limit}")
    return MARKER + struct.pack(">HB", length, message.message_type) + body


def _encode_body(message: Message, ctx: SessionContext) -> bytes:
    kind = type(message)
    if kind is Update:
        return encode_update(message, ctx)  # type: ignore[arg-type]
    if kind is Keepalive:
        return b""
    if kind is Open:
        return encode_open(message)  # type: ignore[arg-type]
    if kind is Notification:
        return bytes((message.code, message.subcode)) + message.data  # type: ignore[union-attr]
    if kind is RouteRefresh:
        header = struct.pack(">HBB", message.afi, message.subtype, message.safi)  # type: ignore[union-attr]
        return header + message.data  # type: ignore[union-attr]
    raise BgpUsageError(f"not a BGP message: {message!r}")
