"""Whatever a peer sends, the decoder answers with a message or a BgpDecodeError that can be
acted on, and nothing else: arbitrary bytes, well-framed garbage, and valid messages with bits
flipped, octets cut or added and length fields changed."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import attrs
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

import strategies as s
from sart.bgp.codes import (
    HEADER_LENGTH,
    MARKER,
    AttrFlag,
    AttrType,
    ErrorCode,
    ErrorHandling,
    MessageType,
    describe_error,
)
from sart.bgp.context import SessionContext
from sart.bgp.errors import BgpDecodeError
from sart.bgp.messages import (
    IPV4_UNICAST,
    OPTIONAL,
    OPTIONAL_TRANSITIVE,
    WELL_KNOWN,
    As4Aggregator,
    As4Path,
    AsPath,
    Family,
    Message,
    MpReachNlri,
    MpUnreachNlri,
    NextHop,
    PlainUpdate,
    Update,
)
from sart.bgp.prefixes import prefix_key
from sart.bgp.wire import MessageSplitter, decode_framed, decode_message, encode_message
from sart.bgp.wire.framing import check_header
from sart.bgp.wire.nlri import encode_prefixes
from sart.errors import BgpUsageError

# What the Optional and Transitive flags of each known attribute type must say.
CATEGORY: dict[int, int] = {
    **dict.fromkeys(
        (
            AttrType.ORIGIN,
            AttrType.AS_PATH,
            AttrType.NEXT_HOP,
            AttrType.LOCAL_PREF,
            AttrType.ATOMIC_AGGREGATE,
        ),
        WELL_KNOWN,
    ),
    **dict.fromkeys(
        (
            AttrType.MULTI_EXIT_DISC,
            AttrType.ORIGINATOR_ID,
            AttrType.CLUSTER_LIST,
            AttrType.MP_REACH_NLRI,
            AttrType.MP_UNREACH_NLRI,
        ),
        OPTIONAL,
    ),
    **dict.fromkeys(
        (
            AttrType.AGGREGATOR,
            AttrType.COMMUNITIES,
            AttrType.EXTENDED_COMMUNITIES,
            AttrType.AS4_PATH,
            AttrType.AS4_AGGREGATOR,
            AttrType.LARGE_COMMUNITY,
        ),
        OPTIONAL_TRANSITIVE,
    ),
}
ERROR_CODES = frozenset(int(code) for code in ErrorCode)
RECOVERABLE = (ErrorHandling.TREAT_AS_WITHDRAW, ErrorHandling.ATTRIBUTE_DISCARD)


def _ignoring_extended_length(update: Update) -> Update:
    """The UPDATE with the Extended Length bit cleared everywhere: the encoder sets it on long
    values, so it says nothing about a value built by the codec itself."""
    return attrs.evolve(
        update,
        attributes=tuple(
            attrs.evolve(a, flags=a.flags & ~AttrFlag.EXTENDED_LENGTH) for a in update.attributes
        ),
    )


def check_fixed_point(message: Message, ctx: SessionContext) -> None:
    """A decoded message encodes again, and decodes back to itself: decoding normalises once
    (host bits, reserved octets, trailing octets of a ROUTE-REFRESH), and then never again."""
    assert decode_message(encode_message(message, ctx), ctx) == message


def check_recovered(error: BgpDecodeError, ctx: SessionContext) -> None:
    """The UPDATE to act on instead of a malformed one (RFC 7606 2): for treat-as-withdraw,
    one that withdraws the routes and announces none (and is no End-of-RIB marker). It
    encodes, and decodes back to itself, unless it needs several MP_UNREACH_NLRI (routes of
    several families withdrawn), which no one UPDATE can carry (RFC 7606 3(g)): the encoder
    refuses that."""
    recovered = error.recovered
    assert isinstance(recovered, Update)
    mp_unreach = [a for a in recovered.attributes if isinstance(a, MpUnreachNlri)]
    if error.handling is ErrorHandling.TREAT_AS_WITHDRAW:
        assert not recovered.nlri and recovered.get(MpReachNlri) is None
        assert recovered.withdrawn or any(a.withdrawn for a in mp_unreach)
        assert all(a.withdrawn for a in mp_unreach)
        assert recovered.end_of_rib_family is None
    if len(mp_unreach) > 1:
        with pytest.raises(BgpUsageError):
            encode_message(recovered, ctx)
        return
    again = decode_message(encode_message(recovered, ctx), ctx)
    assert isinstance(again, Update)
    assert _ignoring_extended_length(again) == _ignoring_extended_length(recovered)


def check_error(error: BgpDecodeError, data: bytes, ctx: SessionContext) -> None:
    """A decode error says what to send (a NOTIFICATION that can be sent), where (within the
    message), and what to do; the UPDATE to act on instead is there exactly for the RFC 7606
    reactions that keep the session."""
    assert error.code in ERROR_CODES
    assert isinstance(error.subcode, int) and 0 <= error.subcode <= 255
    assert isinstance(error.handling, ErrorHandling)
    assert isinstance(error.data, bytes)
    assert error.offset is None or 0 <= error.offset <= len(data)
    encode_message(error.to_notification(), ctx)
    assert str(error) and repr(error)
    if len(data) < HEADER_LENGTH or data[18] != MessageType.UPDATE:
        assert error.handling is ErrorHandling.SESSION_RESET  # RFC 7606 is about UPDATEs
    if error.handling in RECOVERABLE:
        check_recovered(error, ctx)
    else:
        assert error.recovered is None


def check_decoding(data: bytes, ctx: SessionContext) -> None:
    """decode_message gives a message that is a fixed point of the codec, or a sound
    BgpDecodeError; never any other exception. The plain decode agrees with it."""
    try:
        message = decode_message(data, ctx)
    except BgpDecodeError as error:
        event(f"{error.handling.value}: {describe_error(error.code, error.subcode)}")
        check_error(error, data, ctx)
        check_plain(data, ctx, error)
    else:
        event(f"decoded {type(message).__name__}")
        check_fixed_point(message, ctx)
        check_plain(data, ctx, message)


def _said(error: BgpDecodeError) -> tuple[object, ...]:
    return (error.code, error.subcode, error.data, error.offset, error.handling, error.reason,
            error.recovered)  # fmt: skip


def check_plain(data: bytes, ctx: SessionContext, full: Message | BgpDecodeError) -> None:
    """A framed message decoded with `plain` (what a session made with plain_updates does):
    the same error, the same message, or a PlainUpdate of exactly the decoded UPDATE, and
    that only for the UPDATEs a PlainUpdate may carry."""
    if len(data) < HEADER_LENGTH:
        return
    try:
        if check_header(data, 0, ctx.max_message_length) != len(data):
            return  # decode_framed takes what a splitter cut out: the length is right
    except BgpDecodeError:
        return
    try:
        plain = decode_framed(data, ctx, plain=True)
    except BgpDecodeError as error:
        assert isinstance(full, BgpDecodeError) and _said(error) == _said(full)
        return
    assert not isinstance(full, BgpDecodeError)
    if not isinstance(plain, PlainUpdate):
        assert plain == full
        return
    event("plain UPDATE")
    assert isinstance(full, Update) and plain.update() == full
    assert full.nlri and not full.withdrawn and not full.nlri_path_ids
    assert not any(type(a) in NOT_PLAIN for a in full.attributes)
    assert plain.as_path == full.get(AsPath) and plain.next_hop == full.get(NextHop).address
    assert plain.seen == sum(1 << a.type_code for a in full.attributes)
    assert plain.nlri.keys() == [prefix_key(p) for p in full.nlri]


# --- mutations of valid messages -----------------------------------------------------------


def _length_fields(data: bytes | bytearray) -> list[tuple[int, int]]:
    """(offset, width) of every length field the message's own structure leads to: header,
    UPDATE withdrawn and attribute lengths and each attribute's, OPEN parameter lengths and
    each parameter's and capability's."""
    fields = [(16, 2)] if len(data) >= 18 else []
    if len(data) < HEADER_LENGTH:
        return fields
    if data[18] == MessageType.UPDATE and len(data) >= 21:
        fields.append((19, 2))
        total_at = 21 + int.from_bytes(data[19:21], "big")
        if total_at + 2 <= len(data):
            fields.append((total_at, 2))
            pos = total_at + 2
            end = min(pos + int.from_bytes(data[total_at : total_at + 2], "big"), len(data))
            while pos + 3 <= end:
                width = 2 if data[pos] & AttrFlag.EXTENDED_LENGTH else 1
                fields.append((pos + 2, width))
                pos += 2 + width + int.from_bytes(data[pos + 2 : pos + 2 + width], "big")
    elif data[18] == MessageType.OPEN and len(data) >= 29:
        fields.append((28, 1))
        extended = data[28] == 255 and len(data) >= 32 and data[29] == 255
        width = 2 if extended else 1
        pos = 32 if extended else 29
        if extended:
            fields.append((30, 2))
        while pos + 1 + width <= len(data):
            fields.append((pos + 1, width))
            param_end = pos + 1 + width + int.from_bytes(data[pos + 1 : pos + 1 + width], "big")
            cap = pos + 1 + width
            while cap + 2 <= min(param_end, len(data)):
                fields.append((cap + 1, 1))
                cap += 2 + data[cap + 1]
            pos = param_end
    return fields


Mutation = Callable[[st.DrawFn, bytearray], None]


def _index(draw: st.DrawFn, data: bytearray, extra: int = 0) -> int:
    """A position in data (or just past it, with extra=1), mostly behind the header."""
    last = len(data) - 1 + extra
    return draw(st.one_of(st.integers(min(HEADER_LENGTH, last), last), st.integers(0, last)))


def flip_bit(draw: st.DrawFn, data: bytearray) -> None:
    if data:
        data[_index(draw, data)] ^= 1 << draw(st.integers(0, 7))


def set_octet(draw: st.DrawFn, data: bytearray) -> None:
    if data:
        data[_index(draw, data)] = draw(s.U8)


def truncate(draw: st.DrawFn, data: bytearray) -> None:
    if data:
        del data[_index(draw, data) :]


def extend(draw: st.DrawFn, data: bytearray) -> None:
    data += draw(st.binary(min_size=1, max_size=32))


def delete_span(draw: st.DrawFn, data: bytearray) -> None:
    if data:
        start = _index(draw, data)
        del data[start : start + draw(st.integers(1, 16))]


def insert(draw: st.DrawFn, data: bytearray) -> None:
    at = _index(draw, data, extra=1)
    data[at:at] = draw(st.binary(min_size=1, max_size=16))


def change_length_field(draw: st.DrawFn, data: bytearray) -> None:
    """A length field set to a value near its own (off by a few), or to anything."""
    fields = _length_fields(data)
    if not fields:
        return
    offset, width = draw(st.sampled_from(fields))
    limit = (1 << (8 * width)) - 1
    current = int.from_bytes(data[offset : offset + width], "big")
    value = draw(st.one_of(st.integers(current - 8, current + 8), st.integers(0, limit)))
    data[offset : offset + width] = min(max(value, 0), limit).to_bytes(width, "big")


MUTATIONS: tuple[Mutation, ...] = (
    flip_bit,
    set_octet,
    truncate,
    extend,
    delete_span,
    insert,
    change_length_field,
    change_length_field,
)


def _mutate(draw: st.DrawFn, data: bytearray) -> None:
    """One to three mutations; then, mostly, a header length that matches again, so that what
    is behind the header gets tested and not only the header check."""
    for _ in range(draw(st.integers(1, 3))):
        draw(st.sampled_from(MUTATIONS))(draw, data)
    if len(data) >= 18 and len(data) <= 0xFFFF and draw(st.integers(0, 3)):
        data[16:18] = len(data).to_bytes(2, "big")


@st.composite
def mutated_messages(draw: st.DrawFn) -> tuple[SessionContext, bytes]:
    """A valid message, mutated, with the context to decode it under (mostly its own)."""
    ctx = draw(s.session_contexts())
    message = draw(st.one_of(s.updates(ctx), s.opens(), s.messages(ctx)))
    data = bytearray(encode_message(message, ctx))
    _mutate(draw, data)
    return draw(st.one_of(st.just(ctx), s.session_contexts())), bytes(data)


@st.composite
def framed_garbage(draw: st.DrawFn) -> bytes:
    """A marker, a length (mostly right), a type (mostly known), then anything."""
    body = draw(st.binary(max_size=200))
    length = draw(st.one_of(st.just(HEADER_LENGTH + len(body)), s.U16))
    kind = draw(st.one_of(st.integers(1, 5), s.U8))
    return MARKER + length.to_bytes(2, "big") + bytes((kind,)) + body


@st.composite
def raw_segments(draw: st.DrawFn) -> bytes:
    """An AS_PATH / AS4_PATH value of 2- or 4-octet ASNs: segment types, counts and ASNs
    (AS 0 included) mostly plausible, sometimes not."""
    size = draw(st.sampled_from([2, 4]))
    out = bytearray()
    for _ in range(draw(st.integers(0, 3))):
        segment_type = draw(st.one_of(st.integers(1, 4), s.U8))
        asns = draw(st.lists(st.integers(0, (1 << (8 * size)) - 1), max_size=5))
        count = draw(st.one_of(st.just(len(asns)), s.U8))
        out += bytes((segment_type, count)) + b"".join(a.to_bytes(size, "big") for a in asns)
    return bytes(out)


@st.composite
def raw_prefixes(draw: st.DrawFn) -> bytes:
    """Prefixes as on the wire, maybe with path ids: lengths mostly right for IPv4 or IPv6."""
    with_ids = draw(st.booleans())
    out = bytearray()
    for _ in range(draw(st.integers(0, 4))):
        if with_ids:
            out += draw(st.binary(min_size=4, max_size=4))
        length = draw(st.one_of(st.integers(0, 128), s.U8))
        size = (length + 7) // 8
        out += bytes((length,)) + draw(st.binary(min_size=min(size, 16), max_size=16))
    return bytes(out)


@st.composite
def raw_mp_values(draw: st.DrawFn, type_code: int) -> bytes:
    """An MP_REACH_NLRI or MP_UNREACH_NLRI value: a family (mostly a parsed one), for
    MP_REACH_NLRI a next hop of some length and the reserved octet, then prefixes."""
    family = draw(st.one_of(st.sampled_from(s.PARSED_FAMILIES), st.builds(Family, s.U16, s.U8)))
    out = bytearray(family.afi.to_bytes(2, "big") + bytes((family.safi,)))
    if type_code == AttrType.MP_REACH_NLRI:
        hop_length = draw(st.one_of(st.sampled_from([4, 16, 32]), s.U8))
        hops = draw(st.binary(min_size=min(hop_length, 32), max_size=min(hop_length, 32)))
        out += bytes((hop_length,)) + hops + draw(st.binary(min_size=1, max_size=1))
    return bytes(out + draw(raw_prefixes()))


def _raw_value(type_code: int) -> st.SearchStrategy[bytes]:
    if type_code in (AttrType.AS_PATH, AttrType.AS4_PATH):
        return st.one_of(raw_segments(), st.binary(max_size=40))
    if type_code in (AttrType.MP_REACH_NLRI, AttrType.MP_UNREACH_NLRI):
        return st.one_of(raw_mp_values(type_code), st.binary(max_size=40))
    return st.binary(max_size=40)


@st.composite
def raw_attributes(draw: st.DrawFn) -> bytes:
    """Path attributes framed right but with any flags and any value, mostly of known types
    with fitting flags: every attribute decoder meets values it did not expect."""
    out = bytearray()
    for _ in range(draw(st.integers(0, 5))):
        type_code = draw(st.one_of(st.sampled_from(sorted(CATEGORY)), s.U8))
        category = CATEGORY.get(type_code, OPTIONAL_TRANSITIVE)
        flags = draw(st.one_of(s.attribute_flags(category), s.U8))
        value = draw(_raw_value(type_code))
        width = 2 if flags & AttrFlag.EXTENDED_LENGTH else 1
        if width == 1 and len(value) > 255:
            value = value[:255]
        out += bytes((flags, type_code)) + len(value).to_bytes(width, "big") + value
    return bytes(out)


@st.composite
def updates_with_raw_attributes(draw: st.DrawFn) -> tuple[SessionContext, bytes]:
    """An UPDATE whose every length is right, with raw attributes and some valid or
    arbitrary NLRI, under any context."""
    ctx = draw(s.session_contexts())
    add_path = IPV4_UNICAST in ctx.add_path
    valid = draw(s.updates(ctx))
    withdrawn = encode_prefixes(valid.withdrawn, valid.withdrawn_path_ids, 4, add_path)
    attributes = draw(raw_attributes())
    valid_nlri = encode_prefixes(valid.nlri, valid.nlri_path_ids, 4, add_path)
    nlri = draw(st.one_of(st.just(valid_nlri), st.binary(max_size=20)))
    body = (
        len(withdrawn).to_bytes(2, "big")
        + withdrawn
        + len(attributes).to_bytes(2, "big")
        + attributes
        + nlri
    )
    header = MARKER + (HEADER_LENGTH + len(body)).to_bytes(2, "big") + bytes((2,))
    return ctx, header + body


# --- the properties ------------------------------------------------------------------------


@given(s.session_contexts(), st.binary(max_size=512))
def test_arbitrary_bytes(ctx: SessionContext, data: bytes) -> None:
    """Any bytes at all: a message or a sound BgpDecodeError, nothing else."""
    check_decoding(data, ctx)


@given(s.session_contexts(), framed_garbage())
def test_framed_garbage(ctx: SessionContext, data: bytes) -> None:
    """Anything behind a valid-looking header: a message or a sound BgpDecodeError."""
    check_decoding(data, ctx)


@given(mutated_messages())
def test_mutated_messages(case: tuple[SessionContext, bytes]) -> None:
    """Valid messages with bits flipped, octets cut, added or replaced and length fields
    changed: a message or a sound BgpDecodeError."""
    ctx, data = case
    check_decoding(data, ctx)


@st.composite
def plain_shaped_updates(draw: st.DrawFn) -> tuple[SessionContext, bytes]:
    """Valid UPDATEs, half of them stripped of what a PlainUpdate cannot carry (on sessions
    without IPv4 path ids)."""
    strip = draw(st.booleans())
    contexts = [c for c in s.ALL_CONTEXTS if not strip or IPV4_UNICAST not in c.add_path]
    ctx, update = draw(s.with_context(s.updates, st.sampled_from(contexts)))
    if strip:
        kept = tuple(a for a in update.attributes if type(a) not in NOT_PLAIN)
        update = attrs.evolve(update, withdrawn=(), withdrawn_path_ids=(), attributes=kept)
    return ctx, encode_message(update, ctx)


NOT_PLAIN = (MpReachNlri, MpUnreachNlri, As4Path, As4Aggregator)


@given(plain_shaped_updates())
def test_plain_decode_of_valid_updates(case: tuple[SessionContext, bytes]) -> None:
    """What a session made with plain_updates decodes: the same UPDATE, as a PlainUpdate
    when it may be one."""
    ctx, data = case
    check_decoding(data, ctx)


@given(updates_with_raw_attributes())
def test_updates_with_arbitrary_attributes(case: tuple[SessionContext, bytes]) -> None:
    """Well-framed UPDATEs with any flags and values in their attributes: a message or a
    sound BgpDecodeError, with the RFC 7606 UPDATE to act on when the session stays up."""
    ctx, data = case
    check_decoding(data, ctx)


@st.composite
def _fed_streams(draw: st.DrawFn) -> tuple[SessionContext, list[bytes]]:
    """A stream of valid messages, mutated or arbitrary, cut into chunks."""
    ctx = draw(s.session_contexts())
    if draw(st.booleans()):
        stream = bytearray(draw(st.binary(max_size=300)))
    else:
        messages = draw(st.lists(s.messages(ctx), max_size=4))
        stream = bytearray(b"".join(encode_message(message, ctx) for message in messages))
        for _ in range(draw(st.integers(0, 3))):
            draw(st.sampled_from(MUTATIONS[:-2]))(draw, stream)
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    chunks = [bytes(stream[a:b]) for a, b in itertools.pairwise([0, *cuts, len(stream)])]
    return ctx, chunks


@given(_fed_streams(), st.booleans())
def test_splitter_on_damaged_streams(case: tuple[SessionContext, list[bytes]], batch: bool) -> None:
    """The splitter hands out a prefix of the stream as whole header-checked messages, then
    stops at a framing error for good (raising it again on every later call) or keeps the
    rest; every message it hands out decodes or fails soundly. The same whether they are
    taken one by one or a read's worth at a time (`messages`, which hands out what comes
    before an error first and raises it on the next call: the last, with nothing new)."""
    ctx, chunks = case
    stream = b"".join(chunks)
    splitter = MessageSplitter(ctx.max_message_length)
    handed: list[bytes] = []
    fed = 0
    broken: BgpDecodeError | None = None
    for chunk in [*chunks, b""]:
        splitter.feed(chunk)
        fed += len(chunk)
        try:
            handed.extend(splitter.messages() if batch else splitter)
        except BgpDecodeError as error:
            broken = error
            break
    assert stream.startswith(b"".join(handed))
    assert splitter.position == sum(map(len, handed))
    for raw in handed:
        assert raw[:16] == MARKER
        assert int.from_bytes(raw[16:18], "big") == len(raw) <= ctx.max_message_length
        check_decoding(raw, ctx)
    if broken is None:
        assert splitter.buffered == fed - splitter.position
        return
    assert broken.code == ErrorCode.MESSAGE_HEADER
    assert broken.offset is not None and splitter.position <= broken.offset < fed
    assert broken.handling is ErrorHandling.SESSION_RESET
    try:
        splitter.next_message()
    except BgpDecodeError as again:
        assert again is broken
    else:
        raise AssertionError("the splitter went on after a framing error")
