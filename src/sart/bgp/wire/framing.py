"""Cutting a TCP byte stream into whole BGP messages (RFC 4271 4.1).

TCP gives no message boundaries: a read may hold half a message or twenty. The splitter keeps
what it was given until a whole message is there, so the size of reads never matters.
"""

from __future__ import annotations

from sart.bgp.codes import (
    HEADER_LENGTH,
    MARKER,
    MAX_MESSAGE_LENGTH,
    ErrorCode,
    HeaderSubcode,
)
from sart.bgp.errors import BgpDecodeError


def check_header(data: bytes | bytearray, pos: int, max_length: int) -> int:
    """The length of the message whose header starts at data[pos] (19 octets must be there),
    after checking the marker and the length field (RFC 4271 6.1)."""
    if data[pos : pos + 16] != MARKER:
        raise BgpDecodeError(
            "the marker is not 16 octets of 0xff: the stream is out of step",
            ErrorCode.MESSAGE_HEADER,
            HeaderSubcode.CONNECTION_NOT_SYNCHRONIZED,
            offset=pos,
        )
    length = (data[pos + 16] << 8) | data[pos + 17]
    if not HEADER_LENGTH <= length <= max_length:
        raise BgpDecodeError(
            f"message length {length} is outside {HEADER_LENGTH}..{max_length}",
            ErrorCode.MESSAGE_HEADER,
            HeaderSubcode.BAD_MESSAGE_LENGTH,
            bytes(data[pos + 16 : pos + 18]),
            offset=pos + 16,
        )
    return length


class MessageSplitter:
    """Feed it bytes as they come; it hands back every message completed so far.

    A header error is fatal to the stream (there is no way to find the next boundary), so
    after one the splitter refuses further input.
    """

    def __init__(self, max_length: int = MAX_MESSAGE_LENGTH) -> None:
        self.max_length = max_length  # raise to 65535 once extended messages are negotiated
        self._buffer = bytearray()
        self._consumed = 0  # octets of the stream handed out before the buffer's start
        self._broken: BgpDecodeError | None = None

    @property
    def buffered(self) -> int:
        """Octets received that do not form a whole message yet."""
        return len(self._buffer)

    @property
    def position(self) -> int:
        """Stream offset of the first octet not yet handed out."""
        return self._consumed

    def feed(self, data: bytes) -> list[bytes]:
        """The whole messages that data completes, in order. Raises BgpDecodeError (with the
        stream offset) on a bad marker or length."""
        if self._broken is not None:
            raise self._broken
        buffer = self._buffer
        buffer += data
        messages = []
        pos = 0
        end = len(buffer)
        try:
            while end - pos >= HEADER_LENGTH:
                length = check_header(buffer, pos, self.max_length)
                if end - pos < length:
                    break
                messages.append(bytes(buffer[pos : pos + length]))
                pos += length
        except BgpDecodeError as error:
            error.offset = self._consumed + (error.offset or 0)
            self._broken = error
            raise
        finally:
            del buffer[:pos]
            self._consumed += pos
        return messages
