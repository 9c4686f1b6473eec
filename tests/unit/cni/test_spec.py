"""sart.cni.spec: what a runtime hands a plugin, and exactly what the plugin prints back."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from sart.cni.spec import (
    COMMANDS,
    CURRENT_VERSION,
    DEFAULT_SOCKET,
    DEFAULT_TIMEOUT,
    SUPPORTED_VERSIONS,
    CniError,
    ErrorCode,
    Request,
    commands_for,
    parse_cni_args,
    parse_request,
    plugin_output,
    result_for_version,
    version_result,
)
from sart.cni.wire import decode_invocation, encode_invocation

K8S_ARGS = (
    "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;"
    "K8S_POD_INFRA_CONTAINER_ID=abc123;K8S_POD_UID=0f1e2d3c"
)


def netconf(version: str = CURRENT_VERSION, **extra: Any) -> dict[str, Any]:
    return {"cniVersion": version, "name": "sart", "type": "sart-cni", **extra}


def env(command: str = "ADD", **extra: str) -> dict[str, str]:
    base = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": "3f2a9c",
        "CNI_NETNS": "/var/run/netns/pod1",
        "CNI_IFNAME": "eth0",
        "CNI_ARGS": K8S_ARGS,
        "CNI_PATH": "/opt/cni/bin",
    }
    base.update(extra)
    return {k: v for k, v in base.items() if v != "-"}  # "-" drops a variable


def stdin(config: dict[str, Any]) -> bytes:
    return json.dumps(config).encode()


def error_of(environ: dict[str, str], data: bytes) -> CniError:
    with pytest.raises(CniError) as caught:
        parse_request(environ, data)
    return caught.value


# --- parse_request: what it accepts --------------------------------------------------------------


def test_add_request_carries_every_variable_and_the_config_as_received() -> None:
    config = netconf(ipam={"pool": "default"}, socket="/tmp/a.sock", timeout=2)
    request = parse_request(env(), stdin(config))
    assert request == Request(
        "ADD",
        container_id="3f2a9c",
        netns="/var/run/netns/pod1",
        ifname="eth0",
        args={
            "IgnoreUnknown": "1",
            "K8S_POD_NAMESPACE": "default",
            "K8S_POD_NAME": "web-0",
            "K8S_POD_INFRA_CONTAINER_ID": "abc123",
            "K8S_POD_UID": "0f1e2d3c",
        },
        path="/opt/cni/bin",
        config=config,
        version="1.1.0",
    )
    assert (request.pod_namespace, request.pod_name, request.pod_uid) == (
        "default",
        "web-0",
        "0f1e2d3c",
    )
    assert (request.agent_socket, request.agent_timeout) == ("/tmp/a.sock", 2.0)


def test_socket_and_timeout_default() -> None:
    request = parse_request(env(), stdin(netconf()))
    assert (request.agent_socket, request.agent_timeout) == (DEFAULT_SOCKET, DEFAULT_TIMEOUT)


def test_del_needs_no_netns_and_ignores_what_a_command_does_not_read() -> None:
    request = parse_request(env("DEL", CNI_NETNS="-"), stdin(netconf()))
    assert (request.command, request.netns, request.container_id) == ("DEL", "", "3f2a9c")
    status = parse_request(env("STATUS"), stdin(netconf()))
    assert (status.container_id, status.netns, status.ifname, status.args) == ("", "", "", {})
    assert status.path == "/opt/cni/bin"


def test_gc_reads_valid_attachments() -> None:
    config = netconf(**{"cni.dev/valid-attachments": [{"containerID": "a1", "ifname": "eth0"}]})
    request = parse_request(env("GC", CNI_CONTAINERID="-", CNI_IFNAME="-"), stdin(config))
    assert request.config["cni.dev/valid-attachments"][0]["containerID"] == "a1"


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_every_supported_version_parses_add_and_del(version: str) -> None:
    for command in ("ADD", "DEL"):
        assert parse_request(env(command), stdin(netconf(version))).version == version


def test_commands_per_version() -> None:
    assert commands_for("0.3.1") == {"ADD", "DEL", "VERSION"}
    assert commands_for("0.4.0") == commands_for("1.0.0") == {"ADD", "DEL", "CHECK", "VERSION"}
    assert commands_for("1.1.0") == set(COMMANDS)
    assert commands_for("0.2.0") == frozenset()


def test_cni_args() -> None:
    assert parse_cni_args("") == {}
    assert parse_cni_args("A=1;B=x=y;") == {"A": "1", "B": "x=y"}
    for bad in ("A", "=1", "A=1;;B"):
        with pytest.raises(CniError, match="CNI_ARGS has an invalid pair") as caught:
            parse_cni_args(bad)
        assert caught.value.code == ErrorCode.INVALID_ENVIRONMENT


# --- parse_request: what it refuses, and that it says where --------------------------------------


@pytest.mark.parametrize(
    ("environ", "code", "names"),
    [
        ({}, 4, "CNI_COMMAND is not set"),
        ({"CNI_COMMAND": "FROB"}, 4, "CNI_COMMAND='FROB'"),
        (env(CNI_CONTAINERID="-"), 4, "CNI_CONTAINERID is not set"),
        (env(CNI_NETNS=""), 4, "CNI_NETNS is not set"),
        (env(CNI_IFNAME="-", CNI_NETNS="-"), 4, "CNI_NETNS, CNI_IFNAME are not set"),
        (env("CHECK", CNI_NETNS="-"), 4, "CNI_NETNS is not set"),
        (env("DEL", CNI_IFNAME="-"), 4, "CNI_IFNAME is not set"),
        (env("GC", CNI_PATH="-"), 4, "CNI_PATH is not set"),
        (env(CNI_CONTAINERID="-bad"), 4, "CNI_CONTAINERID='-bad'"),
        (env(CNI_IFNAME="a-very-long-name0"), 4, "CNI_IFNAME="),
        (env(CNI_IFNAME="eth/0"), 4, "CNI_IFNAME="),
        (env(CNI_IFNAME=".."), 4, "CNI_IFNAME="),
        (env(CNI_ARGS="K8S_POD_NAME"), 4, "CNI_ARGS"),
    ],
)
def test_environment_errors_name_the_variable(
    environ: dict[str, str], code: int, names: str
) -> None:
    error = error_of(environ, stdin(netconf()))
    assert error.code == code == ErrorCode.INVALID_ENVIRONMENT
    assert names in error.msg


def test_missing_variable_details_list_what_the_command_requires() -> None:
    error = error_of(env("CHECK", CNI_NETNS="-"), stdin(netconf()))
    assert "CHECK requires CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME" in error.details


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"", "empty"),
        (b"  \n", "empty"),
        (b"{", "not JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[1, 2]", "JSON array, not an object"),
        (b"[" * 100_000, "not JSON"),
        (b'{"a": ' + b"9" * 5000 + b"}", "not JSON"),
    ],
)
def test_undecodable_config_is_code_6(data: bytes, says: str) -> None:
    error = error_of(env(), data)
    assert error.code == ErrorCode.DECODE_FAILURE
    assert says in error.msg
    assert "stdin" in error.msg


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"name": "n", "type": "t"}, "'cniVersion' is missing"),
        (netconf(cniVersion=1), "'cniVersion' is a JSON number"),
        ({"cniVersion": "1.1.0", "type": "t"}, "'name' is missing"),
        (netconf(name="-x"), "'name' '-x' must start"),
        (netconf(name=["x"]), "'name' is a JSON array"),
        ({"cniVersion": "1.1.0", "name": "n"}, "'type' is missing"),
        (netconf(ipam="host-local"), "'ipam' is a JSON string"),
        (netconf(prevResult=[]), "'prevResult' is a JSON array"),
        (netconf(socket=""), "'socket' is empty"),
        (netconf(socket=3), "'socket' is a JSON number"),
        (netconf(timeout=0), "'timeout' is 0"),
        (netconf(timeout=True), "'timeout' is True"),
        (netconf(timeout="5"), "'timeout' is '5'"),
    ],
)
def test_invalid_config_is_code_7_and_names_the_field(config: dict[str, Any], field: str) -> None:
    error = error_of(env(), stdin(config))
    assert error.code == ErrorCode.INVALID_NETWORK_CONFIG
    assert field in error.msg


def test_check_needs_prev_result() -> None:
    error = error_of(env("CHECK"), stdin(netconf()))
    assert (error.code, "'prevResult' is missing" in error.msg) == (7, True)
    assert parse_request(env("CHECK"), stdin(netconf(prevResult={"ips": []})))


@pytest.mark.parametrize(
    ("attachments", "field"),
    [
        ({}, "'cni.dev/valid-attachments' is a JSON object"),
        ([1], "'cni.dev/valid-attachments[0]' is not an object"),
        ([{"containerID": "a"}], "'cni.dev/valid-attachments[0].ifname'"),
    ],
)
def test_gc_attachments_are_checked(attachments: object, field: str) -> None:
    config = netconf()
    config["cni.dev/valid-attachments"] = attachments
    error = error_of(env("GC"), stdin(config))
    assert (error.code, field in error.msg) == (7, True), error.msg


def test_gc_without_attachments_keeps_none() -> None:
    """libcni leaves an empty list out (omitempty): absent is empty, as for the reference
    plugins."""
    request = parse_request(env("GC"), stdin(netconf()))
    assert request.command == "GC" and "cni.dev/valid-attachments" not in request.config


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0", "2.0.0", "1.1"])
def test_unsupported_version_is_code_1(version: str) -> None:
    error = error_of(env(), stdin(netconf(version)))
    assert error.code == ErrorCode.INCOMPATIBLE_VERSION
    assert repr(version) in error.msg
    assert "1.1.0" in error.details


@pytest.mark.parametrize(
    ("command", "version"),
    [("CHECK", "0.3.1"), ("GC", "1.0.0"), ("STATUS", "0.4.0"), ("STATUS", "1.0.0")],
)
def test_command_newer_than_the_version_is_code_1(command: str, version: str) -> None:
    config = netconf(version, prevResult={}, **{"cni.dev/valid-attachments": []})
    error = error_of(env(command), stdin(config))
    assert error.code == ErrorCode.INCOMPATIBLE_VERSION
    assert f"{command} needs cniVersion" in error.msg
    assert version in error.details


# --- VERSION -------------------------------------------------------------------------------------


def test_version_request_and_result() -> None:
    request = parse_request({"CNI_COMMAND": "VERSION"}, b'{"cniVersion": "0.4.0"}')
    assert request.version == "0.4.0"
    assert version_result(request.version) == {
        "cniVersion": "0.4.0",
        "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"],
    }
    empty = parse_request({"CNI_COMMAND": "VERSION"}, b"")
    assert version_result(empty.version)["cniVersion"] == CURRENT_VERSION
    assert error_of({"CNI_COMMAND": "VERSION"}, b"nope").code == ErrorCode.DECODE_FAILURE


def test_error_json_is_the_spec_structure() -> None:
    error = CniError(ErrorCode.TRY_AGAIN_LATER, "agent down", "no socket")
    assert error.to_json("0.4.0") == {
        "cniVersion": "0.4.0",
        "code": 11,
        "msg": "agent down",
        "details": "no socket",
    }
    assert "details" not in CniError(7, "bad").to_json()
    assert str(error) == "CNI error 11: agent down (no socket)"


# --- results in every version's shape ------------------------------------------------------------

RESULT: dict[str, Any] = {
    "cniVersion": "1.1.0",
    "interfaces": [
        {"name": "veth1a2b", "mac": "0a:58:0a:00:00:01", "mtu": 1500},
        {"name": "eth0", "mac": "0a:58:0a:00:00:02", "sandbox": "/var/run/netns/pod1"},
    ],
    "ips": [
        {"address": "10.0.0.5/32", "gateway": "169.254.1.1", "interface": 1},
        {"address": "fd00::5/128", "interface": 1},
    ],
    "routes": [
        {"dst": "0.0.0.0/0", "gw": "169.254.1.1", "mtu": 1400, "table": 100},
        {"dst": "::/0"},
    ],
    "dns": {"nameservers": ["10.96.0.10"]},
}


def test_result_1_1_0_is_the_agent_result() -> None:
    assert result_for_version(RESULT, "1.1.0") == RESULT


def test_result_1_0_0_drops_what_1_1_0_added() -> None:
    out = result_for_version(RESULT, "1.0.0")
    assert out["cniVersion"] == "1.0.0"
    assert out["interfaces"][0] == {"name": "veth1a2b", "mac": "0a:58:0a:00:00:01"}
    assert out["routes"] == [{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}, {"dst": "::/0"}]
    assert out["ips"] == RESULT["ips"]
    assert out["dns"] == RESULT["dns"]


@pytest.mark.parametrize("version", ["0.3.0", "0.3.1", "0.4.0"])
def test_result_0_x_carries_ip_versions(version: str) -> None:
    out = result_for_version(RESULT, version)
    assert out["cniVersion"] == version
    assert out["ips"] == [
        {"version": "4", "address": "10.0.0.5/32", "gateway": "169.254.1.1", "interface": 1},
        {"version": "6", "address": "fd00::5/128", "interface": 1},
    ]
    assert out["interfaces"][1] == RESULT["interfaces"][1]
    assert out["routes"][0] == {"dst": "0.0.0.0/0", "gw": "169.254.1.1"}


def test_a_minimal_result_stays_minimal() -> None:
    assert result_for_version({}, "0.4.0") == {"cniVersion": "0.4.0"}
    assert result_for_version({"ips": []}, "1.0.0") == {"cniVersion": "1.0.0", "ips": []}


@pytest.mark.parametrize(
    "bad",
    [{"ips": {}}, {"ips": [{"gateway": "x"}]}, {"interfaces": ["eth0"]}, {"dns": []}],
)
def test_malformed_agent_result_is_bad_agent_reply(bad: dict[str, Any]) -> None:
    with pytest.raises(CniError) as caught:
        result_for_version(bad, "0.4.0")
    assert caught.value.code == ErrorCode.BAD_AGENT_REPLY


# --- plugin_output: exactly what the plugin prints ----------------------------------------------


def printed(output: tuple[int, bytes]) -> tuple[int, dict[str, Any] | None]:
    status, stdout = output
    if stdout:
        assert stdout.endswith(b"}\n") and stdout.count(b"\n}") == 1  # one document, one newline
    return status, json.loads(stdout) if stdout else None


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_add_prints_the_result_in_the_requested_version(version: str) -> None:
    request = parse_request(env(), stdin(netconf(version)))
    assert printed(plugin_output(request, result=RESULT)) == (
        0,
        result_for_version(RESULT, version),
    )


@pytest.mark.parametrize("command", ["DEL", "CHECK", "GC", "STATUS"])
def test_other_commands_print_nothing_on_success(command: str) -> None:
    config = netconf(prevResult=RESULT, **{"cni.dev/valid-attachments": []})
    request = parse_request(env(command), stdin(config))
    assert plugin_output(request, result={}) == plugin_output(request) == (0, b"")


@pytest.mark.parametrize("version", ["0.3.1", "1.1.0", "9.9.9"])
def test_version_prints_the_versions(version: str) -> None:
    request = parse_request({"CNI_COMMAND": "VERSION"}, stdin({"cniVersion": version}))
    assert printed(plugin_output(request)) == (0, version_result(version))


@pytest.mark.parametrize("version", ["0.4.0", "1.1.0"])
@pytest.mark.parametrize("command", ["ADD", "CHECK"])
def test_errors_print_in_the_requests_version_and_exit_1(version: str, command: str) -> None:
    request = parse_request(env(command), stdin(netconf(version, prevResult=RESULT)))
    error = CniError(ErrorCode.POOL_EXHAUSTED, "no address left", "pool default")
    assert printed(plugin_output(request, error=error)) == (1, error.to_json(version))
    unknown = CniError(ErrorCode.UNKNOWN_CONTAINER, "no such pod")
    assert printed(plugin_output(request, error=unknown)) == (1, unknown.to_json(version))


def test_an_unparsed_call_prints_its_error_in_the_current_version() -> None:
    error = error_of(env(), b"not json")
    assert printed(plugin_output(None, error=error)) == (1, error.to_json(CURRENT_VERSION))
    assert printed(plugin_output(None, error=error))[1]["code"] == ErrorCode.DECODE_FAILURE  # type: ignore[index]


def test_del_of_an_unknown_container_succeeds() -> None:
    request = parse_request(env("DEL"), stdin(netconf("0.3.1")))
    assert plugin_output(request, error=CniError(ErrorCode.UNKNOWN_CONTAINER, "gone")) == (0, b"")
    assert printed(plugin_output(request, error=CniError(ErrorCode.TRY_AGAIN_LATER, "x")))[0] == 1


@pytest.mark.parametrize("bad", [None, [], {"ips": 3}, {"ips": [{"gateway": "x"}]}])
def test_a_malformed_add_result_prints_bad_agent_reply(bad: Any) -> None:
    request = parse_request(env(), stdin(netconf("1.0.0")))
    status, document = printed(plugin_output(request, result=bad))
    assert (status, document["code"], document["cniVersion"]) == (  # type: ignore[index]
        1,
        ErrorCode.BAD_AGENT_REPLY,
        "1.0.0",
    )


def test_plugin_output_is_a_result_or_an_error() -> None:
    request = parse_request(env(), stdin(netconf()))
    with pytest.raises(ValueError, match="not both"):
        plugin_output(request, result=RESULT, error=CniError(1, "x"))
    with pytest.raises(ValueError, match="needs the request"):
        plugin_output(None, result=RESULT)


# --- property: junk in, CniError out -------------------------------------------------------------

_VARIABLES = ("CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH")
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)
_configs = st.fixed_dictionaries(
    {},
    optional={
        "cniVersion": st.sampled_from([*SUPPORTED_VERSIONS, "0.2.0"]) | _json_values,
        "name": st.sampled_from(["sart", "-x", ""]) | _json_values,
        "type": st.just("sart-cni") | _json_values,
        "prevResult": st.just(RESULT) | _json_values,
        "cni.dev/valid-attachments": _json_values,
        "socket": _json_values,
        "timeout": st.floats() | _json_values,
    },
)
_stdins = st.binary(max_size=64) | _configs.map(lambda c: json.dumps(c).encode())
_environs = st.dictionaries(
    st.sampled_from(_VARIABLES),
    st.sampled_from([*COMMANDS, "eth0", "abc", "", "K8S_POD_NAME=x;y", "/ns", "\udcff"])
    | st.text(max_size=20),
)


@given(_environs, _stdins)
@example({"CNI_COMMAND": "ADD"}, b"[" * 50_000)
def test_parse_request_raises_only_cni_errors(environ: dict[str, str], data: bytes) -> None:
    try:
        request = parse_request(environ, data)
    except CniError as error:
        assert error.code in set(ErrorCode)
        assert error.msg
        return
    assert request.command in COMMANDS
    status, stdout = plugin_output(request, result=RESULT)
    assert status == 0
    assert bool(stdout) == (request.command in ("ADD", "VERSION"))


@given(_environs, _stdins)
def test_the_agent_parses_what_the_plugin_was_given(environ: dict[str, str], data: bytes) -> None:
    """The plugin forwards its CNI_* variables and stdin (`sart.cni.wire`); the agent's parse of
    them is the parse of the runtime's call, undecodable bytes in variables included."""
    try:  # what os.environ can hold: no NUL, and surrogates only for undecodable bytes
        environb = {
            k.encode("utf-8", "surrogateescape"): v.encode("utf-8", "surrogateescape")
            for k, v in {**environ, "HOME": "/root"}.items()
        }
    except UnicodeEncodeError:
        assume(False)
    assume(not any(b"\0" in v for v in environb.values()))
    forwarded, forwarded_stdin = decode_invocation(encode_invocation(environb, data))
    assert forwarded_stdin == data
    assert forwarded == environ
    try:
        expected: Request | CniError = parse_request(environ, data)
    except CniError as error:
        expected = error
    try:
        got: Request | CniError = parse_request(forwarded, forwarded_stdin)
    except CniError as error:
        got = error
    assert repr(got) == repr(expected)
