"""`sartd bgp --mrt-updates FILE`: every UPDATE received, and every session coming up or going
down, appended to an MRT file (RFC 6396 BGP4MP), as BIRD's `mrt dump` and FRR's `dump bgp
updates` write them.

A monitor on the speaker (Speaker.monitors, as the BMP exporter is): it runs on the speaker's
loop as each read is handled, so the records are in the order the speaker saw them. UPDATEs
are written as the session carries them, encoded again from what the codec decoded (for an
RFC 7606 error, the recovered message): BGP4MP_MESSAGE_AS4 on a session with 4-octet ASNs,
BGP4MP_MESSAGE on one without, the ADDPATH subtype of either where the peer sends path
identifiers (RFC 8050). A session's state changes are the two an established session makes:
OpenConfirm to Established, and Established to the state it ends in.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import BinaryIO

from sart.bgp.codes import AS_TRANS
from sart.bgp.fsm import SessionDown, State
from sart.bgp.messages import Update
from sart.bgp.mrt import encode_bgp4mp_message, encode_bgp4mp_state_change
from sart.bgp.session import Session
from sart.bgp.speaker import Neighbor, Speaker
from sart.bgp.wire import encode_message
from sart.errors import BgpUsageError

log = logging.getLogger("sart.bgp.mrt")


class UpdateLog:
    """A SessionMonitor (sart.bgp.speaker) that writes BGP4MP records to `file`."""

    def __init__(self, speaker: Speaker, file: BinaryIO) -> None:
        self._speaker = speaker
        self._file = file

    def session_up(self, neighbor: Neighbor) -> None:
        self._state_change(neighbor, State.OPEN_CONFIRM, State.ESTABLISHED)

    def session_down(self, neighbor: Neighbor, session: Session, down: SessionDown) -> None:
        self._state_change(neighbor, State.ESTABLISHED, session.state)

    def _state_change(self, neighbor: Neighbor, old: State, new: State) -> None:
        negotiated, connection = neighbor.negotiated, neighbor.established
        assert negotiated is not None and connection is not None  # both with an established one
        record = encode_bgp4mp_state_change(
            int(time.time()),
            old,
            new,
            peer_asn=negotiated.peer_asn,
            local_asn=self._speaker.config.asn,
            peer=neighbor.address,
            local=connection.local_address,
        )
        self._file.write(record)
        self._file.flush()

    def updates_received(self, neighbor: Neighbor, updates: Sequence[Update]) -> None:
        negotiated, connection = neighbor.negotiated, neighbor.established
        assert negotiated is not None and connection is not None  # UPDATEs come on those only
        context = negotiated.receive
        local_asn = self._speaker.config.asn
        if not context.four_octet_as and local_asn > 0xFFFF:
            local_asn = AS_TRANS  # what the peer knows us as (RFC 6793 4.2.1)
        now = int(time.time())
        for update in updates:
            try:
                message = encode_message(update, context)
            except BgpUsageError as error:
                log.warning(
                    "UPDATE not logged: %s", error, extra={"neighbor": str(neighbor.address)}
                )
                continue
            self._file.write(
                encode_bgp4mp_message(
                    now,
                    message,
                    peer_asn=negotiated.peer_asn,
                    local_asn=local_asn,
                    peer=neighbor.address,
                    local=connection.local_address,
                    as4=context.four_octet_as,
                    add_path=bool(context.add_path),
                )
            )
        self._file.flush()  # whole records for whoever reads the file meanwhile
