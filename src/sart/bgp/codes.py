"""Numbers from the RFCs, one IntEnum per registry. Every member names where it is defined."""

from __future__ import annotations

import enum

BGP_VERSION = 4
MARKER = b"\xff" * 16
HEADER_LENGTH = 19
MAX_MESSAGE_LENGTH = 4096  # RFC 4271 4.1
MAX_EXTENDED_MESSAGE_LENGTH = 65535  # RFC 8654 3
AS_TRANS = 23456  # RFC 6793 2
MIN_HOLD_TIME = 3  # RFC 4271 4.2: zero, or at least three seconds


class MessageType(enum.IntEnum):
    OPEN = 1  # RFC 4271 4.2
    UPDATE = 2  # RFC 4271 4.3
    NOTIFICATION = 3  # RFC 4271 4.5
    KEEPALIVE = 4  # RFC 4271 4.4
    ROUTE_REFRESH = 5  # RFC 2918 3


class ErrorCode(enum.IntEnum):
    MESSAGE_HEADER = 1  # RFC 4271 4.5
    OPEN_MESSAGE = 2  # RFC 4271 4.5
    UPDATE_MESSAGE = 3  # RFC 4271 4.5
    HOLD_TIMER_EXPIRED = 4  # RFC 4271 4.5
    FSM = 5  # RFC 4271 4.5, subcodes RFC 6608
    CEASE = 6  # RFC 4271 4.5, subcodes RFC 4486
    ROUTE_REFRESH_MESSAGE = 7  # RFC 7313 5


class HeaderSubcode(enum.IntEnum):
    UNSPECIFIC = 0  # RFC 4493 / IANA
    CONNECTION_NOT_SYNCHRONIZED = 1  # RFC 4271 6.1
    BAD_MESSAGE_LENGTH = 2  # RFC 4271 6.1
    BAD_MESSAGE_TYPE = 3  # RFC 4271 6.1


class OpenSubcode(enum.IntEnum):
    UNSPECIFIC = 0  # IANA
    UNSUPPORTED_VERSION_NUMBER = 1  # RFC 4271 6.2
    BAD_PEER_AS = 2  # RFC 4271 6.2
    BAD_BGP_IDENTIFIER = 3  # RFC 4271 6.2
    UNSUPPORTED_OPTIONAL_PARAMETER = 4  # RFC 4271 6.2
    UNACCEPTABLE_HOLD_TIME = 6  # RFC 4271 6.2
    UNSUPPORTED_CAPABILITY = 7  # RFC 5492 5
    ROLE_MISMATCH = 11  # RFC 9234 4.2


class UpdateSubcode(enum.IntEnum):
    UNSPECIFIC = 0  # IANA
    MALFORMED_ATTRIBUTE_LIST = 1  # RFC 4271 6.3
    UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE = 2  # RFC 4271 6.3
    MISSING_WELL_KNOWN_ATTRIBUTE = 3  # RFC 4271 6.3
    ATTRIBUTE_FLAGS_ERROR = 4  # RFC 4271 6.3
    ATTRIBUTE_LENGTH_ERROR = 5  # RFC 4271 6.3
    INVALID_ORIGIN_ATTRIBUTE = 6  # RFC 4271 6.3
    INVALID_NEXT_HOP_ATTRIBUTE = 8  # RFC 4271 6.3
    OPTIONAL_ATTRIBUTE_ERROR = 9  # RFC 4271 6.3
    INVALID_NETWORK_FIELD = 10  # RFC 4271 6.3
    MALFORMED_AS_PATH = 11  # RFC 4271 6.3


class FsmSubcode(enum.IntEnum):
    UNSPECIFIED = 0  # RFC 6608 3
    UNEXPECTED_MESSAGE_IN_OPEN_SENT = 1  # RFC 6608 3
    UNEXPECTED_MESSAGE_IN_OPEN_CONFIRM = 2  # RFC 6608 3
    UNEXPECTED_MESSAGE_IN_ESTABLISHED = 3  # RFC 6608 3


class CeaseSubcode(enum.IntEnum):
    MAXIMUM_PREFIXES_REACHED = 1  # RFC 4486 3
    ADMINISTRATIVE_SHUTDOWN = 2  # RFC 4486 3, RFC 9003
    PEER_DECONFIGURED = 3  # RFC 4486 3
    ADMINISTRATIVE_RESET = 4  # RFC 4486 3, RFC 9003
    CONNECTION_REJECTED = 5  # RFC 4486 3
    OTHER_CONFIGURATION_CHANGE = 6  # RFC 4486 3
    CONNECTION_COLLISION_RESOLUTION = 7  # RFC 4486 3
    OUT_OF_RESOURCES = 8  # RFC 4486 3
    HARD_RESET = 9  # RFC 8538 5
    BFD_DOWN = 10  # RFC 9384


class RouteRefreshSubcode(enum.IntEnum):
    INVALID_MESSAGE_LENGTH = 1  # RFC 7313 5


SUBCODES: dict[int, type[enum.IntEnum]] = {
    ErrorCode.MESSAGE_HEADER: HeaderSubcode,
    ErrorCode.OPEN_MESSAGE: OpenSubcode,
    ErrorCode.UPDATE_MESSAGE: UpdateSubcode,
    ErrorCode.FSM: FsmSubcode,
    ErrorCode.CEASE: CeaseSubcode,
    ErrorCode.ROUTE_REFRESH_MESSAGE: RouteRefreshSubcode,
}


def describe_error(code: int, subcode: int) -> str:
    """'UPDATE_MESSAGE / INVALID_ORIGIN_ATTRIBUTE' for (3, 6); numbers for unknown codes."""
    try:
        code_name = ErrorCode(code).name
    except ValueError:
        return f"{code} / {subcode}"
    subcodes = SUBCODES.get(code)
    if subcodes is None:
        return code_name if subcode == 0 else f"{code_name} / {subcode}"
    try:
        return f"{code_name} / {subcodes(subcode).name}"
    except ValueError:
        return f"{code_name} / {subcode}"


class ErrorHandling(enum.Enum):
    """What a speaker does about a malformed message (RFC 7606 2), most severe first."""

    SESSION_RESET = "session_reset"  # RFC 4271 6: NOTIFICATION, close
    AFI_SAFI_DISABLE = "afi_safi_disable"  # RFC 4760 7 / RFC 7606 2
    TREAT_AS_WITHDRAW = "treat_as_withdraw"  # RFC 7606 2: the UPDATE's routes are withdrawn
    ATTRIBUTE_DISCARD = "attribute_discard"  # RFC 7606 2: drop the attribute, keep the routes

    @property
    def severity(self) -> int:
        """Higher is more severe; RFC 7606 3(j): the most severe reaction wins."""
        return _SEVERITY[self]


_SEVERITY = {
    ErrorHandling.SESSION_RESET: 3,
    ErrorHandling.AFI_SAFI_DISABLE: 2,
    ErrorHandling.TREAT_AS_WITHDRAW: 1,
    ErrorHandling.ATTRIBUTE_DISCARD: 0,
}


class OptionalParameterType(enum.IntEnum):
    CAPABILITIES = 2  # RFC 5492 4
    EXTENDED_LENGTH = 255  # RFC 9072 2: marks the extended optional parameters format


class CapabilityCode(enum.IntEnum):
    MULTIPROTOCOL = 1  # RFC 4760 8
    ROUTE_REFRESH = 2  # RFC 2918 2
    EXTENDED_NEXT_HOP = 5  # RFC 8950 3
    EXTENDED_MESSAGE = 6  # RFC 8654 3
    ROLE = 9  # RFC 9234 4.1
    GRACEFUL_RESTART = 64  # RFC 4724 3
    FOUR_OCTET_AS = 65  # RFC 6793 3
    ADD_PATH = 69  # RFC 7911 4
    ENHANCED_ROUTE_REFRESH = 70  # RFC 7313 3
    LONG_LIVED_GRACEFUL_RESTART = 71  # RFC 9494 3
    FQDN = 73  # draft-walton-bgp-hostname-capability


class Afi(enum.IntEnum):
    IPV4 = 1  # IANA address family numbers
    IPV6 = 2  # IANA address family numbers


class Safi(enum.IntEnum):
    UNICAST = 1  # RFC 4760 6
    MULTICAST = 2  # RFC 4760 6


class AddPathDirection(enum.IntEnum):
    RECEIVE = 1  # RFC 7911 4
    SEND = 2  # RFC 7911 4
    BOTH = 3  # RFC 7911 4


class RouteRefreshSubtype(enum.IntEnum):
    NORMAL = 0  # RFC 2918 3 (Reserved), RFC 7313 4: a plain route refresh request
    BEGIN_OF_ROUTE_REFRESH = 1  # RFC 7313 4 (BoRR)
    END_OF_ROUTE_REFRESH = 2  # RFC 7313 4 (EoRR)


class AttrFlag(enum.IntFlag):
    OPTIONAL = 0x80  # RFC 4271 4.3
    TRANSITIVE = 0x40  # RFC 4271 4.3
    PARTIAL = 0x20  # RFC 4271 4.3
    EXTENDED_LENGTH = 0x10  # RFC 4271 4.3


class AttrType(enum.IntEnum):
    ORIGIN = 1  # RFC 4271 5.1.1
    AS_PATH = 2  # RFC 4271 5.1.2
    NEXT_HOP = 3  # RFC 4271 5.1.3
    MULTI_EXIT_DISC = 4  # RFC 4271 5.1.4
    LOCAL_PREF = 5  # RFC 4271 5.1.5
    ATOMIC_AGGREGATE = 6  # RFC 4271 5.1.6
    AGGREGATOR = 7  # RFC 4271 5.1.7
    COMMUNITIES = 8  # RFC 1997
    ORIGINATOR_ID = 9  # RFC 4456 8
    CLUSTER_LIST = 10  # RFC 4456 8
    MP_REACH_NLRI = 14  # RFC 4760 3
    MP_UNREACH_NLRI = 15  # RFC 4760 4
    EXTENDED_COMMUNITIES = 16  # RFC 4360 2
    AS4_PATH = 17  # RFC 6793 3
    AS4_AGGREGATOR = 18  # RFC 6793 3
    LARGE_COMMUNITY = 32  # RFC 8092 3


class OriginCode(enum.IntEnum):
    IGP = 0  # RFC 4271 5.1.1
    EGP = 1  # RFC 4271 5.1.1
    INCOMPLETE = 2  # RFC 4271 5.1.1


class AsPathSegmentType(enum.IntEnum):
    AS_SET = 1  # RFC 4271 4.3
    AS_SEQUENCE = 2  # RFC 4271 4.3
    AS_CONFED_SEQUENCE = 3  # RFC 5065 3
    AS_CONFED_SET = 4  # RFC 5065 3


class WellKnownCommunity(enum.IntEnum):
    GRACEFUL_SHUTDOWN = 0xFFFF0000  # RFC 8326 5
    ACCEPT_OWN = 0xFFFF0001  # RFC 7611 2
    LLGR_STALE = 0xFFFF0006  # RFC 9494 4.6
    NO_LLGR = 0xFFFF0007  # RFC 9494 4.7
    BLACKHOLE = 0xFFFF029A  # RFC 7999 5
    NO_EXPORT = 0xFFFFFF01  # RFC 1997
    NO_ADVERTISE = 0xFFFFFF02  # RFC 1997
    NO_EXPORT_SUBCONFED = 0xFFFFFF03  # RFC 1997
    NOPEER = 0xFFFFFF04  # RFC 3765 4
