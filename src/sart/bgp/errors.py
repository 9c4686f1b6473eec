"""The error a peer's bytes can cause: what to tell the peer, and what to do about it."""

from __future__ import annotations

from sart.bgp.codes import ErrorHandling, describe_error
from sart.bgp.messages import Notification, Update
from sart.errors import BgpError


class BgpDecodeError(BgpError):
    """Malformed bytes from a peer. The only exception the decoder raises.

    `code`, `subcode` and `data` are the NOTIFICATION RFC 4271 section 6 prescribes;
    `handling` is the RFC 7606 reaction. For TREAT_AS_WITHDRAW and ATTRIBUTE_DISCARD,
    `recovered` is the UPDATE the speaker should act on instead: every route withdrawn, or
    the message without the discarded attributes. `offset` is the byte of the message
    (counted from the first marker octet) where the problem was found.
    """

    def __init__(
        self,
        reason: str,
        code: int,
        subcode: int,
        data: bytes = b"",
        *,
        offset: int | None = None,
        handling: ErrorHandling = ErrorHandling.SESSION_RESET,
        recovered: Update | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.subcode = subcode
        self.data = data
        self.offset = offset
        self.handling = handling
        self.recovered = recovered

    def to_notification(self) -> Notification:
        return Notification(self.code, self.subcode, self.data)

    def __str__(self) -> str:
        where = "" if self.offset is None else f" at byte {self.offset}"
        return (
            f"{describe_error(self.code, self.subcode)}{where}: {self.reason}"
            f" [{self.handling.value}]"
        )

    def __repr__(self) -> str:
        return (
            f"BgpDecodeError({self.reason!r}, code={self.code}, subcode={self.subcode}, "
            f"data={self.data!r}, offset={self.offset}, handling={self.handling.name})"
        )
