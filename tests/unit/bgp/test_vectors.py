"""Every shared capture decodes to the fields its manifest names and re-encodes to the same
bytes; every malformed one gets the error and RFC 7606 handling errors.json names."""

from __future__ import annotations

from typing import Any

import pytest
from netaddr import IPNetwork

from sart.bgp.codes import ErrorHandling
from sart.bgp.context import SessionContext
from sart.bgp.display import message_to_dict
from sart.bgp.errors import BgpDecodeError
from sart.bgp.messages import MultiExitDisc, Update
from sart.bgp.wire import MessageSplitter, decode_message, encode_message
from testdata import load_vectors, read_capture

MANIFEST = load_vectors("manifest.json")
ERRORS = load_vectors("errors.json")
# The malformed captures whose message boundary cannot be trusted (RFC 4271 6.1 marker and
# length); every other error leaves the stream readable.
FRAMING_ERRORS = {"errors/hdr-bad-marker", "errors/hdr-length-18"}


def _context(vector: dict[str, Any]) -> SessionContext:
    return SessionContext(four_octet_as=vector["session"]["four_octet_as"])


def _assert_contains(actual: Any, expected: Any, path: str = "message") -> None:
    """Every field the manifest names is there with that value; extra fields are allowed."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), path
        for key, value in expected.items():
            assert key in actual, f"{path}.{key} missing"
            _assert_contains(actual[key], value, f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), path
        for index, (a, e) in enumerate(zip(actual, expected, strict=True)):
            _assert_contains(a, e, f"{path}[{index}]")
    else:
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"


@pytest.mark.parametrize("vector", MANIFEST, ids=lambda v: v["file"])
def test_capture_decodes_to_manifest_fields(vector: dict[str, Any]) -> None:
    data = read_capture(vector["file"])
    (expected,) = vector["messages"]
    message = decode_message(data, _context(vector))
    _assert_contains(message_to_dict(message), expected)


@pytest.mark.parametrize("vector", MANIFEST, ids=lambda v: v["file"])
def test_capture_reencodes_byte_for_byte(vector: dict[str, Any]) -> None:
    data = read_capture(vector["file"])
    ctx = _context(vector)
    assert encode_message(decode_message(data, ctx), ctx) == data


def _stream() -> tuple[bytes, list[bytes]]:
    captures = [read_capture(v["file"]) for v in MANIFEST]
    return b"".join(captures), captures


def test_concatenated_captures_split_at_every_boundary() -> None:
    stream, captures = _stream()
    for cut in range(len(stream) + 1):
        splitter = MessageSplitter()
        splitter.feed(stream[:cut])
        got = list(splitter)
        splitter.feed(stream[cut:])
        got += list(splitter)
        assert got == captures, f"cut at {cut}"
        assert splitter.buffered == 0


def test_concatenated_captures_fed_one_octet_at_a_time() -> None:
    stream, captures = _stream()
    splitter = MessageSplitter()
    got = []
    for index in range(len(stream)):
        splitter.feed(stream[index : index + 1])
        got += list(splitter)
    assert got == captures
    assert splitter.position == len(stream)


@pytest.mark.parametrize("vector", ERRORS, ids=lambda v: v["file"])
def test_malformed_capture_gets_prescribed_error(vector: dict[str, Any]) -> None:
    data = read_capture(vector["file"])
    expect = vector["expect"]
    with pytest.raises(BgpDecodeError) as caught:
        decode_message(data, _context(vector))
    error = caught.value
    assert error.handling.value == expect["handling"]
    assert (error.code, error.subcode) == (expect["code"], expect["subcode"])
    assert error.data.hex() == expect["data_hex"]
    assert error.to_notification().data.hex() == expect["data_hex"]
    assert error.offset is not None and 0 <= error.offset < len(data)
    assert error.reason


@pytest.mark.parametrize("vector", ERRORS, ids=lambda v: v["file"])
def test_malformed_capture_in_a_stream_is_found_by_the_splitter_or_decoder(
    vector: dict[str, Any],
) -> None:
    """Header errors stop the splitter; body errors leave framing intact for what follows."""
    bad = read_capture(vector["file"])
    keepalive = read_capture("messages/keepalive")
    splitter = MessageSplitter()
    splitter.feed(keepalive + bad + keepalive)
    assert splitter.next_message() == keepalive
    if vector["file"] in FRAMING_ERRORS:
        with pytest.raises(BgpDecodeError) as caught:
            splitter.next_message()
        assert caught.value.offset is not None and caught.value.offset >= len(keepalive)
        with pytest.raises(BgpDecodeError):  # the stream stays broken
            splitter.next_message()
    else:
        assert splitter.next_message() == bad
        assert splitter.next_message() == keepalive


def _withdrawn_by(error: BgpDecodeError) -> list[IPNetwork]:
    assert isinstance(error.recovered, Update)
    return list(error.recovered.withdrawn)


@pytest.mark.parametrize(
    "name",
    [
        "errors/update-origin-value-3",
        "errors/update-origin-flags-optional",
        "errors/update-missing-next-hop",
        "errors/update-as-path-segment-overrun",
    ],
)
def test_treat_as_withdraw_withdraws_every_announced_prefix(name: str) -> None:
    with pytest.raises(BgpDecodeError) as caught:
        decode_message(read_capture(name))
    assert caught.value.handling is ErrorHandling.TREAT_AS_WITHDRAW
    assert _withdrawn_by(caught.value) == [
        IPNetwork("10.10.3.0/24"),
        IPNetwork("10.10.2.0/24"),
        IPNetwork("10.10.1.0/24"),
    ]
    assert caught.value.recovered is not None
    assert caught.value.recovered.nlri == ()


def test_duplicate_med_keeps_the_first_and_the_routes() -> None:
    with pytest.raises(BgpDecodeError) as caught:
        decode_message(read_capture("errors/update-duplicate-med"))
    recovered = caught.value.recovered
    assert recovered is not None
    assert recovered.get(MultiExitDisc) == MultiExitDisc(0)
    assert len(recovered.nlri) == 3
