"""`sart bgp decode`, driven as a user would drive it."""

from __future__ import annotations

import json

from click.testing import CliRunner

from sart.cli.sart import main
from testdata import BGP_TESTDATA, read_capture


def _run(*args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), input=stdin)
    return result.exit_code, result.stdout, result.stderr


def test_decodes_a_capture_file() -> None:
    code, out, _ = _run("bgp", "decode", str(BGP_TESTDATA / "messages/frr-ibgp-fail"))
    assert code == 0
    assert "OPEN version 4, AS 65000, hold time 9 s, router id 9.9.9.9" in out
    assert "FQDN (73) hostname=router0" in out


def test_decodes_a_stream_from_stdin_with_session_flags() -> None:
    stream = read_capture("messages/update-nlri") + read_capture("messages/update-as4-path")
    code, out, _ = _run("bgp", "decode", "--two-octet-as", "-", stdin=stream)
    assert code == 0
    assert "#2 at byte 60" in out
    assert "(RFC 6793 merge) AS path 655361 2621441" in out


def test_reads_a_hex_dump() -> None:
    dump = " ".join(f"{b:02x}" for b in read_capture("messages/keepalive")) + "\n"
    code, out, _ = _run("bgp", "decode", "-", stdin=dump.encode())
    assert (code, out.strip()) == (0, "#1 at byte 0 (19 octets): KEEPALIVE")


def test_json_lines_for_scripts() -> None:
    stream = read_capture("messages/keepalive") + read_capture("messages/route-refresh")
    code, out, _ = _run("bgp", "decode", "--format", "json", "-", stdin=stream)
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0
    assert [line["message"]["type"] for line in lines] == ["KEEPALIVE", "ROUTE_REFRESH"]
    assert lines[1]["offset"] == 19


def test_malformed_message_exits_1_with_notification_and_handling() -> None:
    stream = read_capture("messages/keepalive") + read_capture("errors/update-origin-value-3")
    code, out, err = _run("bgp", "decode", "--two-octet-as", "-", stdin=stream)
    assert code == 1
    assert "#2 at byte 19 (60 octets): MALFORMED at byte 45: ORIGIN value 3" in out
    assert "NOTIFICATION 3/6 UPDATE_MESSAGE / INVALID_ORIGIN_ATTRIBUTE, data 40010103" in out
    assert "treat-as-withdraw" in out
    assert "withdrawn 10.10.3.0/24 10.10.2.0/24 10.10.1.0/24" in out
    assert "1 malformed message" in err


def test_broken_framing_stops_with_the_stream_offset() -> None:
    stream = read_capture("messages/keepalive") + read_capture("errors/hdr-bad-marker")
    code, out, _ = _run("bgp", "decode", "--format", "json", "-", stdin=stream)
    error = json.loads(out.splitlines()[-1])["error"]
    assert code == 1
    assert (error["code"], error["subcode"], error["offset"]) == (1, 1, 19)
    assert error["handling"] == "session_reset"


def test_truncated_input_is_reported() -> None:
    code, out, _ = _run("bgp", "decode", "-", stdin=read_capture("messages/update-nlri")[:40])
    assert code == 1
    assert "ends 40 octets into a message" in out


def test_bad_flags_say_what_is_wrong() -> None:
    code, _, err = _run("bgp", "decode", "--add-path", "ipv5", "-", stdin=b"")
    assert code == 2
    assert "not an address family: 'ipv5'" in err
    code, _, err = _run("bgp", "decode", "/nonexistent/capture")
    assert code == 2
    assert "/nonexistent/capture" in err
