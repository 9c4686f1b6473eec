"""BGP: messages, the wire codec, and (soon) the session state machine, RIB and speaker."""

from sart.bgp.context import DEFAULT_CONTEXT, SessionContext
from sart.bgp.errors import BgpDecodeError

__all__ = ["DEFAULT_CONTEXT", "BgpDecodeError", "SessionContext"]
