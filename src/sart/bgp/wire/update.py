"""UPDATE messages (RFC 4271 4.3) and the RFC 7606 verdict on a malformed one."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import overload

from netaddr import IPNetwork

from sart.bgp.codes import (
    HEADER_LENGTH,
    AttrType,
    ErrorCode,
    ErrorHandling,
    UpdateSubcode,
)
from sart.bgp.context import SessionContext
from sart.bgp.errors import BgpDecodeError
from sart.bgp.frozen import builder, new_tuple
from sart.bgp.messages import (
    IPV4_UNICAST,
    AsPath,
    Family,
    MpReachNlri,
    MpUnreachNlri,
    NextHop,
    PathAttribute,
    PlainUpdate,
    Update,
)
from sart.bgp.wire.attributes import decode_attributes, encode_attribute, to_two_octet
from sart.bgp.wire.nlri import decode_prefixes, encode_prefixes
from sart.errors import BgpUsageError


@overload
def decode_update(data: bytes, ctx: SessionContext) -> Update: ...
@overload
def decode_update(data: bytes, ctx: SessionContext, *, plain: bool) -> Update | PlainUpdate: ...


def decode_update(data: bytes, ctx: SessionContext, *, plain: bool = False) -> Update | PlainUpdate:
    """An UPDATE from its whole message (header included). Raises BgpDecodeError; for
    treat-as-withdraw and attribute-discard errors the error's `recovered` is the UPDATE to
    act on. With `plain`, an UPDATE that a PlainUpdate can carry (no withdrawn routes, IPv4
    NLRI without path ids, no MP or AS4 attribute, nothing malformed or missing) comes as
    one, with the same attributes and NLRI; anything else comes as without it."""
    end = len(data)  # at least 23: the caller checked the header
    pos = HEADER_LENGTH
    withdrawn_length = (data[pos] << 8) | data[pos + 1]
    withdrawn_end = pos + 2 + withdrawn_length
    if withdrawn_end + 2 > end:
        raise BgpDecodeError(
            f"withdrawn routes length {withdrawn_length} runs past the end of the message",
            ErrorCode.UPDATE_MESSAGE,
            UpdateSubcode.MALFORMED_ATTRIBUTE_LIST,
            offset=pos,
        )
    add_path = bool(ctx.add_path) and IPV4_UNICAST in ctx.add_path
    if withdrawn_length:
        withdrawn, withdrawn_ids = decode_prefixes(
            data, pos + 2, withdrawn_end, 4, add_path, field="withdrawn routes"
        )
    else:  # most UPDATEs of a table
        withdrawn, withdrawn_ids = (), ()
    attributes_length = (data[withdrawn_end] << 8) | data[withdrawn_end + 1]
    attributes_start = withdrawn_end + 2
    attributes_end = attributes_start + attributes_length
    if attributes_end > end:
        raise BgpDecodeError(
            f"total path attribute length {attributes_length} runs past the end of the message",
            ErrorCode.UPDATE_MESSAGE,
            UpdateSubcode.MALFORMED_ATTRIBUTE_LIST,
            offset=withdrawn_end,
        )
    attributes, problems, seen = decode_attributes(data, attributes_start, attributes_end, ctx)
    nlri, nlri_ids = decode_prefixes(data, attributes_end, end, 4, add_path, field="NLRI")
    if (
        plain
        and nlri
        and not (withdrawn_length or problems or add_path or seen & _NOT_PLAIN)
        and seen & _MANDATORY == _MANDATORY
    ):
        return _plain(attributes, nlri, seen)
    update: Update = _new_update(withdrawn, tuple(attributes), nlri, withdrawn_ids, nlri_ids)
    if seen & _MANDATORY != _MANDATORY:  # else every mandatory attribute is there
        missing = _missing_mandatory(update, seen, attributes_end)
        if missing is not None:
            problems.append(missing)
    if problems:
        raise _verdict(update, problems)
    return update


_new_update = builder(Update)  # fields: withdrawn, attributes, nlri, and their path ids
_MANDATORY = 1 << AttrType.ORIGIN | 1 << AttrType.AS_PATH | 1 << AttrType.NEXT_HOP
# What a PlainUpdate cannot carry: other families, and AS4 attributes (merged, or discarded
# with an error, on the way to the RIB).
_NOT_PLAIN = (
    1 << AttrType.MP_REACH_NLRI
    | 1 << AttrType.MP_UNREACH_NLRI
    | 1 << AttrType.AS4_PATH
    | 1 << AttrType.AS4_AGGREGATOR
)


def _plain(attributes: list[PathAttribute], nlri: Sequence[IPNetwork], seen: int) -> PlainUpdate:
    """The PlainUpdate of a checked UPDATE (its AS_PATH and NEXT_HOP are there)."""
    as_path = next_hop = None
    for attribute in attributes:
        kind = type(attribute)
        if kind is AsPath:
            as_path = attribute
        elif kind is NextHop:
            next_hop = attribute.address  # type: ignore[union-attr]
    return new_tuple(PlainUpdate, (tuple(attributes), nlri, as_path, next_hop, seen))


def _missing_mandatory(update: Update, present: int, offset: int) -> BgpDecodeError | None:
    """RFC 4271 5 / RFC 7606 3(d): ORIGIN and AS_PATH come with any reachable route,
    NEXT_HOP with IPv4 routes in the NLRI field. `present` has bit n set for each type code
    n seen, malformed ones included: those have their own error already."""
    reachable = bool(update.nlri) or present & (1 << AttrType.MP_REACH_NLRI)
    if not reachable:
        return None
    for type_code in (AttrType.ORIGIN, AttrType.AS_PATH, AttrType.NEXT_HOP):
        if type_code == AttrType.NEXT_HOP and not update.nlri:
            continue
        if not present & (1 << type_code):
            return BgpDecodeError(
                f"{type_code.name} is missing; it is mandatory for an UPDATE that announces routes",
                ErrorCode.UPDATE_MESSAGE,
                UpdateSubcode.MISSING_WELL_KNOWN_ATTRIBUTE,
                bytes((type_code,)),
                offset=offset,
                handling=ErrorHandling.TREAT_AS_WITHDRAW,
            )
    return None


def _verdict(update: Update, problems: list[BgpDecodeError]) -> BgpDecodeError:
    """The most severe problem (RFC 7606 3(j)), carrying the UPDATE to act on."""
    worst = max(problems, key=lambda problem: problem.handling.severity)
    announces = bool(update.nlri) or any(
        type(a) is MpReachNlri and a.nlri for a in update.attributes
    )
    if worst.handling is ErrorHandling.TREAT_AS_WITHDRAW and not announces:
        # RFC 7606 5.2: with no reachable NLRI we cannot be sure the NLRI was parsed right;
        # and there would be nothing to withdraw (RFC 7606 3(j)).
        worst.handling = ErrorHandling.SESSION_RESET
        worst.reason += "; the UPDATE announces no route, so it cannot be treated as withdraw"
    if worst.handling is ErrorHandling.TREAT_AS_WITHDRAW:
        worst.recovered = withdraw_all(update)
    elif worst.handling is ErrorHandling.ATTRIBUTE_DISCARD:
        worst.recovered = update  # the decoder has left the discarded attributes out already
    if len(problems) > 1:
        others = "; ".join(f"{p.reason} (byte {p.offset})" for p in problems if p is not worst)
        worst.reason += f" (also: {others})"
    return worst


def withdraw_all(update: Update) -> Update:
    """The UPDATE that withdraws every route the given one touches (RFC 7606 2)."""
    by_family: dict[Family, tuple[list[IPNetwork], list[int]]] = {}
    for attribute in update.attributes:
        if isinstance(attribute, MpReachNlri):
            prefixes, path_ids = attribute.nlri, attribute.path_ids
        elif isinstance(attribute, MpUnreachNlri):
            prefixes, path_ids = attribute.withdrawn, attribute.path_ids
        else:
            continue
        if not prefixes:  # an empty MP_UNREACH_NLRI would read as End-of-RIB
            continue
        entry = by_family.setdefault(attribute.family, ([], []))
        entry[0].extend(prefixes)
        entry[1].extend(path_ids)
    return Update(
        (*update.withdrawn, *update.nlri),
        tuple(
            MpUnreachNlri(family.afi, family.safi, tuple(prefixes), tuple(path_ids))
            for family, (prefixes, path_ids) in by_family.items()
        ),
        withdrawn_path_ids=update.withdrawn_path_ids + update.nlri_path_ids,
    )


def encode_update(update: Update, ctx: SessionContext) -> bytes:
    """The body of an UPDATE (what follows the header)."""
    add_path = IPV4_UNICAST in ctx.add_path
    withdrawn = encode_prefixes(update.withdrawn, update.withdrawn_path_ids, 4, add_path)
    attributes: tuple[PathAttribute, ...] = update.attributes
    if not ctx.four_octet_as:
        attributes = to_two_octet(attributes)
    codes = {attribute.type_code for attribute in attributes}
    if len(codes) != len(attributes):
        # RFC 4271 5 / RFC 7606 3(g): a peer would drop the repeat or reset the session.
        raise BgpUsageError("an UPDATE carries each attribute type at most once")
    encoded = b"".join([encode_attribute(attribute, ctx) for attribute in attributes])
    nlri = encode_prefixes(update.nlri, update.nlri_path_ids, 4, add_path)
    return b"".join(
        (
            struct.pack(">H", len(withdrawn)),
            withdrawn,
            struct.pack(">H", len(encoded)),
            encoded,
            nlri,
        )
    )
