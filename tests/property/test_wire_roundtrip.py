"""The wire codec gives back what it was given: decode(encode(m)) == m for every valid,
canonical message under every session context, and the stream splitter finds the messages
of a stream however TCP cuts it."""

from __future__ import annotations

import itertools

import attrs
from hypothesis import assume, given
from hypothesis import strategies as st

import strategies as s
from sart.bgp.as4 import effective_aggregator, effective_as_path
from sart.bgp.codes import AS_TRANS, ErrorHandling, UpdateSubcode
from sart.bgp.context import SessionContext
from sart.bgp.errors import BgpDecodeError
from sart.bgp.messages import (
    Aggregator,
    As4Aggregator,
    As4Path,
    AsPath,
    AsPathSegment,
    Message,
    Update,
)
from sart.bgp.wire import MessageSplitter, decode_message, encode_message


def _roundtrip(ctx: SessionContext, message: Message) -> None:
    encoded = encode_message(message, ctx)
    assert len(encoded) <= ctx.max_message_length
    assert decode_message(encoded, ctx) == message


@given(s.with_context(lambda _: s.keepalives()))
def test_keepalive_roundtrip(case: tuple[SessionContext, Message]) -> None:
    """A KEEPALIVE decodes back to itself."""
    _roundtrip(*case)


@given(s.with_context(s.notifications))
def test_notification_roundtrip(case: tuple[SessionContext, Message]) -> None:
    """A NOTIFICATION keeps its code, subcode and data."""
    _roundtrip(*case)


@given(s.with_context(lambda _: s.route_refreshes()))
def test_route_refresh_roundtrip(case: tuple[SessionContext, Message]) -> None:
    """A ROUTE-REFRESH keeps its AFI, SAFI, subtype and what follows them."""
    _roundtrip(*case)


@given(s.with_context(lambda _: s.opens()))
def test_open_roundtrip(case: tuple[SessionContext, Message]) -> None:
    """An OPEN keeps its fields, its capabilities and how they were packed."""
    _roundtrip(*case)


@given(s.with_context(s.updates))
def test_update_roundtrip(case: tuple[SessionContext, Message]) -> None:
    """An UPDATE keeps its prefixes, path ids and attributes, flags and order included."""
    _roundtrip(*case)


@given(s.with_context(s.messages))
def test_reencoding_gives_the_same_bytes(case: tuple[SessionContext, Message]) -> None:
    """What was decoded encodes to the bytes it was decoded from."""
    ctx, message = case
    encoded = encode_message(message, ctx)
    assert encode_message(decode_message(encoded, ctx), ctx) == encoded


def _as_trans(path: AsPath) -> AsPath:
    segments = tuple(
        AsPathSegment(seg.type, tuple(asn if asn <= 0xFFFF else AS_TRANS for asn in seg.asns))
        for seg in path.segments
    )
    return attrs.evolve(path, segments=segments)


@given(
    s.with_context(
        lambda ctx: s.updates(ctx, wide_asns=True), s.session_contexts(four_octet_as=False)
    )
)
def test_two_octet_session_carries_four_octet_asns(case: tuple[SessionContext, Update]) -> None:
    """On a 2-octet session, ASNs over 65535 travel as AS_TRANS beside AS4_PATH and
    AS4_AGGREGATOR (RFC 6793 4.2.2), and the receiver gets the real path and aggregator
    back from them (RFC 6793 4.2.3)."""
    ctx, update = case
    decoded = decode_message(encode_message(update, ctx), ctx)
    assert isinstance(decoded, Update)
    assert effective_as_path(decoded.attributes) == (update.get(AsPath) or AsPath())
    assert effective_aggregator(decoded.attributes) == update.get(Aggregator)
    path = update.get(AsPath)
    if path is not None:
        assert decoded.get(AsPath) == _as_trans(path)
    aggregator = update.get(Aggregator)
    if aggregator is not None:
        asn = AS_TRANS if aggregator.asn > 0xFFFF else aggregator.asn
        assert decoded.get(Aggregator) == attrs.evolve(aggregator, asn=asn)
    as4_kinds = (AsPath, Aggregator, As4Path, As4Aggregator)
    others = [a for a in decoded.attributes if type(a) not in as4_kinds]
    assert others == [a for a in update.attributes if type(a) not in as4_kinds]
    assert (decoded.withdrawn, decoded.nlri) == (update.withdrawn, update.nlri)


@st.composite
def _four_octet_update_with_as4(
    draw: st.DrawFn,
) -> tuple[SessionContext, Update, tuple[As4Path | As4Aggregator, ...]]:
    ctx = draw(s.session_contexts(four_octet_as=True))
    update = draw(s.updates(ctx))
    path = draw(st.none() | s.as4_paths(ctx))
    aggregator = draw(
        s.as4_aggregators(ctx) if path is None else st.none() | s.as4_aggregators(ctx)
    )
    return ctx, update, tuple(a for a in (path, aggregator) if a is not None)


@given(_four_octet_update_with_as4(), st.data())
def test_four_octet_session_discards_as4_attributes(
    case: tuple[SessionContext, Update, tuple[As4Path | As4Aggregator, ...]], data: st.DataObject
) -> None:
    """AS4_PATH and AS4_AGGREGATOR have no business on a 4-octet session: the receiver
    discards them and keeps the rest of the UPDATE (RFC 6793 4.1, RFC 7606 2)."""
    ctx, update, extra = case
    attributes = list(update.attributes)
    for attribute in extra:
        attributes.insert(data.draw(st.integers(0, len(attributes))), attribute)
    sent = attrs.evolve(update, attributes=tuple(attributes))
    assume(s.encoded_length(sent, ctx) <= ctx.max_message_length)
    try:
        decode_message(encode_message(sent, ctx), ctx)
    except BgpDecodeError as error:
        assert error.handling is ErrorHandling.ATTRIBUTE_DISCARD
        assert error.subcode == UpdateSubcode.MALFORMED_ATTRIBUTE_LIST
        assert error.recovered == update
    else:
        raise AssertionError("AS4 attributes on a 4-octet session were accepted")


@st.composite
def _streams(draw: st.DrawFn) -> tuple[SessionContext, list[Message], list[bytes]]:
    """A context, some messages, and their encoded concatenation cut into chunks."""
    ctx = draw(s.session_contexts())
    messages = draw(st.lists(s.messages(ctx), max_size=6))
    stream = b"".join(encode_message(message, ctx) for message in messages)
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    bounds = [0, *cuts, len(stream)]
    chunks = [stream[start:end] for start, end in itertools.pairwise(bounds)]
    return ctx, messages, chunks


@given(_streams(), st.booleans())
def test_splitter_finds_the_messages_however_the_stream_is_cut(
    case: tuple[SessionContext, list[Message], list[bytes]], batch: bool
) -> None:
    """Fed a stream in arbitrary chunks (empty ones included), the splitter hands out each
    message whole, in order, once, and keeps nothing back at the end: one by one, or a
    chunk's worth at a time (`messages`)."""
    ctx, messages, chunks = case
    splitter = MessageSplitter(ctx.max_message_length)
    found: list[bytes] = []
    for chunk in chunks:
        splitter.feed(chunk)
        found.extend(splitter.messages() if batch else splitter)
    assert found == [encode_message(message, ctx) for message in messages]
    assert [decode_message(raw, ctx) for raw in found] == messages
    assert splitter.buffered == 0
    assert splitter.position == sum(map(len, chunks))
