"""Cutting a TCP byte stream into whole BGP messages (RFC 4271 4.1).

TCP gives no message boundaries: a read may hold half a message or twenty. The splitter keeps
what it was given until a whole message is there, so the size of reads never matters.
"""

from __future__ import annotations

from collections.abc import Iterator

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
    """Bytes in as they come, whole messages out (the h11 receive_data / next_event shape).

        splitter.feed(chunk)
        for raw in splitter:      # every message completed so far
            ...

    A header error is fatal to the stream (there is no way to find the next boundary): the
    splitter raises it, and raises it again on every later call.
    """

    def __init__(self, max_length: int = MAX_MESSAGE_LENGTH) -> None:
        self.max_length = max_length  # raise to 65535 once extended messages are negotiated
        # bytes, not a bytearray: a message is then one slice of it, a single copy, where a
        # bytearray would be sliced and copied again into bytes. What is left of a message cut
        # by the end of a read (at most one message) is copied once more with the next read.
        self._buffer = b""
        self._pos = 0  # start of the first message not handed out yet
        self._consumed = 0  # stream offset of the buffer's first octet
        self._broken: BgpDecodeError | None = None

    @property
    def buffered(self) -> int:
        """Octets received and not handed out as a message yet."""
        return len(self._buffer) - self._pos

    @property
    def position(self) -> int:
        """Stream offset of the first octet not handed out yet."""
        return self._consumed + self._pos

    def feed(self, data: bytes | bytearray) -> None:
        buffer, pos = self._buffer, self._pos
        self._consumed += pos
        self._pos = 0
        if pos >= len(buffer):
            self._buffer = bytes(data)  # no copy of bytes
        else:
            self._buffer = buffer[pos:] + data

    def next_message(self) -> bytes | None:
        """The next whole message, or None until more bytes are fed. Raises BgpDecodeError
        (offset counted from the start of the stream) on a bad marker or length."""
        if self._broken is not None:
            raise self._broken
        buffer = self._buffer
        pos = self._pos
        if len(buffer) - pos < HEADER_LENGTH:
            return None
        try:
            length = check_header(buffer, pos, self.max_length)
        except BgpDecodeError as error:
            error.offset = self._consumed + (error.offset or 0)
            self._broken = error
            raise
        if len(buffer) - pos < length:
            return None
        self._pos = pos + length
        return buffer[pos : pos + length]

    def messages(self) -> list[bytes]:
        """Every whole message buffered, in order (the loop of `next_message` in one call).
        A header error after some messages is kept for the next call, which raises it, so
        the messages before it are handed out first."""
        if self._broken is not None:
            raise self._broken
        buffer, pos, max_length = self._buffer, self._pos, self.max_length
        end = len(buffer)
        out: list[bytes] = []
        append = out.append
        while end - pos >= HEADER_LENGTH:
            length = (buffer[pos + 16] << 8) | buffer[pos + 17]
            if buffer[pos : pos + 16] != MARKER or not HEADER_LENGTH <= length <= max_length:
                try:
                    check_header(buffer, pos, max_length)  # raises: it says what is wrong
                except BgpDecodeError as error:
                    error.offset = self._consumed + (error.offset or 0)
                    self._broken = error
                    self._pos = pos
                    if out:
                        return out
                    raise
            if end - pos < length:
                break
            append(buffer[pos : pos + length])
            pos += length
        self._pos = pos
        return out

    def __iter__(self) -> Iterator[bytes]:
        while (message := self.next_message()) is not None:
            yield message
