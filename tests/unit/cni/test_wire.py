"""sart.cni.wire: the plugin-agent framing, bytes in, bytes out."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from sart.cni.wire import (
    MAGIC,
    MAX_INVOCATION,
    decode_answer,
    decode_invocation,
    encode_answer,
    encode_invocation,
    invocation_size,
)

ENV = {
    b"CNI_COMMAND": b"ADD",
    b"CNI_CONTAINERID": b"c0ffee",
    b"CNI_IFNAME": b"eth0",
    b"HOME": b"/root",
}
NETCONF = b'{"cniVersion": "1.1.0", "name": "sart", "type": "sart-cni"}'


def test_an_invocation_is_magic_sizes_env_block_and_stdin() -> None:
    data = encode_invocation(ENV, NETCONF)
    block = b"CNI_COMMAND=ADD\0CNI_CONTAINERID=c0ffee\0CNI_IFNAME=eth0"
    assert data == MAGIC + b"%d %d\n" % (len(block), len(NETCONF)) + block + NETCONF
    assert decode_invocation(data) == (
        {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c0ffee", "CNI_IFNAME": "eth0"},
        NETCONF,
    )


def test_only_cni_variables_are_sent() -> None:
    data = encode_invocation({b"PATH": b"/bin", b"XCNI_A": b"1"}, b"")
    assert data == MAGIC + b"0 0\n"
    assert decode_invocation(data) == ({}, b"")


def test_undecodable_bytes_come_out_as_os_environ_has_them() -> None:
    environ, _ = decode_invocation(encode_invocation({b"CNI_ARGS": b"A=\xff"}, b""))
    assert environ == {"CNI_ARGS": "A=\udcff"}
    assert environ["CNI_ARGS"].encode("utf-8", "surrogateescape") == b"A=\xff"


def test_a_variable_no_environment_could_hold_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot be framed"):
        encode_invocation({b"CNI_ARGS": b"a\0b"}, b"")
    with pytest.raises(ValueError, match="cannot be framed"):
        encode_invocation({b"CNI_A=B": b""}, b"")


def test_invocation_size() -> None:
    assert invocation_size(b"12 345\n") == (12, 345)
    assert invocation_size(b"0 0") == (0, 0)
    with pytest.raises(ValueError, match=f"over {MAX_INVOCATION}"):
        invocation_size(b"%d 1\n" % MAX_INVOCATION)
    with pytest.raises(ValueError, match="over 10"):
        invocation_size(b"5 6", limit=10)


@pytest.mark.parametrize(
    "line", [b"", b"\n", b"1\n", b"1  2\n", b" 1 2\n", b"+1 2\n", b"-1 2\n", b"1_0 2\n",
             b"1 2 3\n", b"\xd9\xa1 2\n", b"9" * 21 + b" 0\n"],
)  # fmt: skip
def test_malformed_size_lines(line: bytes) -> None:
    with pytest.raises(ValueError, match="size line"):
        invocation_size(line)


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"", "not a sart-cni/2 invocation"),
        (b'{"command": "ADD"}\n', "not a sart-cni/2 invocation"),
        (b"sart-cni/1\n0 0\n", "not a sart-cni/2 invocation"),
        (MAGIC, "size line is missing"),
        (MAGIC + b"0 0", "size line is missing"),
        (MAGIC + b"x 0\n", "size line"),
        (MAGIC + b"4 4\nCNI_", "announces 4 \\+ 4 bytes and carries 4"),
        (MAGIC + b"0 1\nab", "carries 2"),
        (MAGIC + b"4 0\nHOME", "not a CNI_\\* variable"),
        (MAGIC + b"5 0\nCNI_A", "not a CNI_\\* variable"),
        (MAGIC + b"15 0\nCNI_A=1\0CNI_A=2", "CNI_A twice"),
        (MAGIC + b"8 0\nCNI_A=1\0", "not a CNI_\\* variable"),
    ],
)
def test_malformed_invocations(data: bytes, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        decode_invocation(data)


def test_answers() -> None:
    assert encode_answer(0, b"") == b"0\n"
    assert encode_answer(1, b'{"code": 11}\n') == b'1\n{"code": 11}\n'
    assert decode_answer(b"0\n") == (0, b"")
    assert decode_answer(b"1\n{}\n\n") == (1, b"{}\n\n")
    with pytest.raises(ValueError, match=r"0\.\.255"):
        encode_answer(256, b"")


@pytest.mark.parametrize("data", [b"", b"0", b"\n", b"x\n", b"-1\n", b"256\n", b" 0\n", b"{}\n"])
def test_malformed_answers(data: bytes) -> None:
    with pytest.raises(ValueError, match="exit status"):
        decode_answer(data)


def test_the_module_imports_nothing_new() -> None:
    """Loaded on every pod: nothing beyond what the interpreter has by the time it has os."""
    probe = (
        "import sys; before = set(sys.modules); import sart.cni.wire;"
        " print(' '.join(sorted(set(sys.modules) - before)))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert set(done.stdout.split()) == {"sart", "sart.cni", "sart.cni.wire"}


# --- properties ----------------------------------------------------------------------------------

_names = st.binary(max_size=12).filter(lambda b: b"=" not in b and b"\0" not in b)
_values = st.binary(max_size=40).filter(lambda b: b"\0" not in b)
_environs = st.dictionaries(
    st.one_of(st.sampled_from([b"CNI_COMMAND", b"CNI_ARGS", b"CNI_"]), _names.map(b"CNI_".__add__)),
    _values,
) | st.dictionaries(_names, _values)


@given(_environs, st.binary(max_size=200))
def test_invocation_round_trip(environ: dict[bytes, bytes], stdin: bytes) -> None:
    decoded, data = decode_invocation(encode_invocation(environ, stdin))
    assert data == stdin
    expected = {k: v for k, v in environ.items() if k.startswith(b"CNI_")}
    assert {
        k.encode("utf-8", "surrogateescape"): v.encode("utf-8", "surrogateescape")
        for k, v in decoded.items()
    } == expected


@given(st.binary(max_size=300) | st.binary(max_size=100).map(MAGIC.__add__))
@example(MAGIC + b"0 3\nabc")
@example(MAGIC + b"99999999999999999999 0\n")
def test_junk_invocations_raise_only_value_error(data: bytes) -> None:
    try:
        environ, stdin = decode_invocation(data)
    except ValueError:
        return
    assert all(k.startswith("CNI_") for k in environ)
    assert len(stdin) <= len(data)


@given(st.integers(0, 255), st.binary(max_size=100))
def test_answer_round_trip(status: int, stdout: bytes) -> None:
    assert decode_answer(encode_answer(status, stdout)) == (status, stdout)


@given(st.binary(max_size=100))
def test_junk_answers_raise_only_value_error(data: bytes) -> None:
    try:
        status, _ = decode_answer(data)
    except ValueError:
        return
    assert 0 <= status <= 255
