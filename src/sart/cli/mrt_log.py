"""`sartd bgp --mrt-updates FILE`: every UPDATE received, and every session state change,
appended to an MRT file (RFC 6396 BGP4MP), as BIRD's `mrt dump` and FRR's `dump bgp updates`
write them.

A recorder on the speaker (Speaker.record): it runs on the speaker's loop, between reads, so
the records are in the order the speaker saw them. UPDATEs are written as the session carries
them, encoded again from what the codec decoded (for an RFC 7606 error, the recovered
message): BGP4MP_MESSAGE_AS4 on a session with 4-octet ASNs, BGP4MP_MESSAGE on one without.
"""

from __future__ import annotations

import logging
import time
from typing import BinaryIO

from netaddr import IPAddress

from sart.bgp.codes import AS_TRANS
from sart.bgp.fsm import State
from sart.bgp.mrt import encode_bgp4mp_message, encode_bgp4mp_state_change
from sart.bgp.speaker import PeerStateChanged, Speaker, UpdatesReceived
from sart.bgp.wire import encode_message
from sart.errors import BgpUsageError

log = logging.getLogger("sart.bgp.mrt")


class UpdateLog:
    def __init__(self, speaker: Speaker, file: BinaryIO) -> None:
        self._speaker = speaker
        self._file = file
        self._states: dict[IPAddress, State] = {}
        # The local end of each neighbor's last session: still named after it has gone down.
        self._local: dict[IPAddress, IPAddress] = {}

    def __call__(self, event: PeerStateChanged | UpdatesReceived) -> None:
        neighbor = self._speaker.neighbors.get(event.address)
        if neighbor is None:
            return
        if neighbor.established is not None:
            self._local[event.address] = neighbor.established.local_address
        local = self._local.get(event.address)
        local_asn = self._speaker.config.asn
        now = int(time.time())
        negotiated = neighbor.negotiated
        peer_asn = neighbor.config.asn if negotiated is None else negotiated.peer_asn
        if isinstance(event, PeerStateChanged):
            old = self._states.get(event.address, State.IDLE)
            self._states[event.address] = event.state
            if old is event.state:
                return
            record = encode_bgp4mp_state_change(
                now,
                old,
                event.state,
                peer_asn=peer_asn,
                local_asn=local_asn,
                peer=event.address,
                local=local,
            )
            self._file.write(record)
        else:
            assert negotiated is not None  # UPDATEs come on established sessions only
            context = negotiated.receive
            as4 = context.four_octet_as
            if not as4 and local_asn > 0xFFFF:
                local_asn = AS_TRANS  # what the peer knows us as (RFC 6793 4.2.1)
            for update in event.updates:
                try:
                    message = encode_message(update, context)
                except BgpUsageError as error:
                    log.warning(
                        "UPDATE not logged: %s", error, extra={"neighbor": str(event.address)}
                    )
                    continue
                self._file.write(
                    encode_bgp4mp_message(
                        now,
                        message,
                        peer_asn=peer_asn,
                        local_asn=local_asn,
                        peer=event.address,
                        local=local,
                        as4=as4,
                        add_path=bool(context.add_path),
                    )
                )
        self._file.flush()  # whole records for whoever reads the file meanwhile
