"""The CNI protocol (SPEC.md 1.1.0 and the older versions sart still answers), as pure functions.

What a runtime gives a plugin (environment variables and the network configuration on stdin)
becomes a `Request`; every way it can be wrong becomes a `CniError` whose message names the
variable or the configuration field at fault, with the spec's error code. Results come from the
agent in the 1.1.0 shape and `result_for_version` turns them into the shape the runtime asked
for; `plugin_output` is exactly what the plugin prints and its exit status. The plugin forwards
the call as it got it (`sart.cni.wire`) and the agent runs both: `parse_request`, then
`plugin_output`, so the plugin's normal path never imports this module (nor json).

Standard library only, and the cheap part of it: the plugin still imports it on its rare paths
(VERSION, a netconf naming its own socket or timeout, its own errors), so this module avoids
attrs (~50 ms to import), netaddr and even `typing` (a few ms); types are for mypy only. No
I/O: the executable is `sart.cni.plugin`.

sart's own error codes (the spec leaves 100 and above to plugins):

- 100 `POOL_EXHAUSTED`: no address is left for the pod in its pool (or block);
- 101 `UNKNOWN_POOL`: the pod asks for an address pool that does not exist;
- 102 `CHECK_FAILED`: CHECK found the pod's network not as ADD left it (details list what);
- 103 `BAD_AGENT_REPLY`: the agent's answer (or its ADD result) breaks the contract;
- 104 `AGENT_FAILED`: the agent failed in a way that no other code describes (its message says how);
- 105 `PLUGIN_FAILED`: the plugin itself failed unexpectedly (a bug: details name the exception).
"""

from __future__ import annotations

import json
import math
from enum import IntEnum

from sart.cni.wire import DEFAULT_SOCKET, DEFAULT_TIMEOUT
from sart.errors import SartError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

__all__ = [
    "COMMANDS",
    "CURRENT_VERSION",
    "DEFAULT_SOCKET",
    "DEFAULT_TIMEOUT",
    "SUPPORTED_VERSIONS",
    "CniError",
    "ErrorCode",
    "Request",
    "commands_for",
    "parse_cni_args",
    "parse_request",
    "plugin_output",
    "result_for_version",
    "version_result",
]

SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
"""The spec versions sart-cni answers (VERSION lists them); 0.1.0 and 0.2.0 are refused."""
CURRENT_VERSION = "1.1.0"
"""The version of the shapes the agent speaks (results, errors)."""
COMMANDS = ("ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION")

VALID_ATTACHMENTS = "cni.dev/valid-attachments"
"""The GC input's list of attachments to keep (``{"containerID", "ifname"}`` objects)."""

# CNI_ARGS keys Kubernetes runtimes (containerd, CRI-O) pass.
K8S_POD_NAMESPACE = "K8S_POD_NAMESPACE"
K8S_POD_NAME = "K8S_POD_NAME"
K8S_POD_UID = "K8S_POD_UID"
K8S_POD_INFRA_CONTAINER_ID = "K8S_POD_INFRA_CONTAINER_ID"


class ErrorCode(IntEnum):
    """Error codes: SPEC.md 1.1.0 "Error" (0-99 well-known), then sart's own (100+)."""

    INCOMPATIBLE_VERSION = 1  # Incompatible CNI version
    UNSUPPORTED_FIELD = 2  # Unsupported field in network configuration (names key and value)
    UNKNOWN_CONTAINER = 3  # Container unknown or does not exist: no cleanup needed
    INVALID_ENVIRONMENT = 4  # Invalid necessary environment variables (names them)
    IO_FAILURE = 5  # I/O failure, e.g. reading the network config from stdin
    DECODE_FAILURE = 6  # Failed to decode content (network config JSON, version info)
    INVALID_NETWORK_CONFIG = 7  # Invalid network config
    TRY_AGAIN_LATER = 11  # Transient condition: the runtime should retry later
    PLUGIN_NOT_AVAILABLE = 50  # STATUS: cannot service ADD requests
    LIMITED_CONNECTIVITY = 51  # STATUS: unavailable, existing containers may lose connectivity
    POOL_EXHAUSTED = 100  # sart: no address left for the pod
    UNKNOWN_POOL = 101  # sart: the pod names an address pool that does not exist
    CHECK_FAILED = 102  # sart: CHECK found the pod's network not as ADD left it
    BAD_AGENT_REPLY = 103  # sart: the agent's reply breaks the plugin-agent contract
    AGENT_FAILED = 104  # sart: the agent failed otherwise (the message says how)
    PLUGIN_FAILED = 105  # sart: the plugin itself failed unexpectedly (a bug)


class CniError(SartError):
    """A CNI error result: what the plugin prints on stdout (``to_json``) before exiting 1."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(code, msg, details)
        self.code = int(code)
        self.msg = msg
        self.details = details

    def __str__(self) -> str:
        text = f"CNI error {self.code}: {self.msg}"
        return f"{text} ({self.details})" if self.details else text

    def to_json(self, version: str = CURRENT_VERSION) -> dict[str, Any]:
        """The spec's error structure; ``details`` only when there are some."""
        out: dict[str, Any] = {"cniVersion": version, "code": self.code, "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out


# --- which command needs what ------------------------------------------------------------------

_SINCE = {
    "ADD": "0.3.0",
    "DEL": "0.3.0",
    "VERSION": "0.3.0",
    "CHECK": "0.4.0",
    "GC": "1.1.0",
    "STATUS": "1.1.0",
}
_COMMANDS_BY_VERSION = {
    version: frozenset(
        c
        for c in COMMANDS
        if SUPPORTED_VERSIONS.index(_SINCE[c]) <= SUPPORTED_VERSIONS.index(version)
    )
    for version in SUPPORTED_VERSIONS
}

# SPEC.md section 2, "CNI operations": the variables each command reads (CNI_COMMAND aside),
# required ones first. A variable a command does not read is ignored, even when set.
_REQUIRED_ENV = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "GC": ("CNI_PATH",),
    "STATUS": (),
    "VERSION": (),
}
_OPTIONAL_ENV = {
    "ADD": ("CNI_ARGS", "CNI_PATH"),
    "DEL": ("CNI_NETNS", "CNI_ARGS", "CNI_PATH"),
    "CHECK": ("CNI_ARGS", "CNI_PATH"),
    "GC": (),
    "STATUS": ("CNI_PATH",),
    "VERSION": (),
}
_IFNAME_MAX = 15  # Linux IFNAMSIZ (16) less the terminating NUL


def commands_for(version: str) -> frozenset[str]:
    """The commands a spec version has: CHECK from 0.4.0, GC and STATUS from 1.1.0."""
    return _COMMANDS_BY_VERSION.get(version, frozenset())


def required_env(command: str) -> tuple[str, ...]:
    """The environment variables a command requires besides CNI_COMMAND."""
    return _REQUIRED_ENV[command]


# --- the request -------------------------------------------------------------------------------


class Request:
    """One plugin call: the CNI_* variables the command reads ("" when not given), CNI_ARGS as
    a dict, and the network configuration exactly as received (``config``, a dict)."""

    __slots__ = ("args", "command", "config", "container_id", "ifname", "netns", "path", "version")

    def __init__(
        self,
        command: str,
        *,
        container_id: str = "",
        netns: str = "",
        ifname: str = "",
        args: dict[str, str] | None = None,
        path: str = "",
        config: dict[str, Any] | None = None,
        version: str = CURRENT_VERSION,
    ) -> None:
        self.command = command
        self.container_id = container_id
        self.netns = netns
        self.ifname = ifname
        self.args: dict[str, str] = {} if args is None else args
        self.path = path
        self.config: dict[str, Any] = {} if config is None else config
        self.version = version

    def _fields(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Request):
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]  # mutable dicts inside

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"Request({inner})"

    @property
    def agent_socket(self) -> str:
        """The agent's socket path: netconf ``"socket"``, else `DEFAULT_SOCKET`."""
        value = self.config.get("socket", DEFAULT_SOCKET)
        return value if isinstance(value, str) and value else DEFAULT_SOCKET

    @property
    def agent_timeout(self) -> float:
        """Seconds to wait for the agent: netconf ``"timeout"``, else `DEFAULT_TIMEOUT`."""
        value = self.config.get("timeout", DEFAULT_TIMEOUT)
        return float(value) if _is_positive_number(value) else DEFAULT_TIMEOUT

    @property
    def pod_namespace(self) -> str:
        return self.args.get(K8S_POD_NAMESPACE, "")

    @property
    def pod_name(self) -> str:
        return self.args.get(K8S_POD_NAME, "")

    @property
    def pod_uid(self) -> str:
        return self.args.get(K8S_POD_UID, "")


def parse_request(environ: Mapping[str, str], stdin: bytes) -> Request:
    """The call a runtime makes: the CNI_* variables and the network configuration read from
    stdin. Raises `CniError` (and nothing else) naming the variable or field that is wrong."""
    command = environ.get("CNI_COMMAND", "")
    if not command:
        raise CniError(
            ErrorCode.INVALID_ENVIRONMENT,
            "CNI_COMMAND is not set",
            f"expected one of {', '.join(COMMANDS)}",
        )
    if command not in COMMANDS:
        raise CniError(
            ErrorCode.INVALID_ENVIRONMENT,
            f"CNI_COMMAND={command!r} is not a CNI command",
            f"expected one of {', '.join(COMMANDS)}",
        )
    if command == "VERSION":
        return _version_request(stdin)
    env = {name: environ.get(name, "") for name in _REQUIRED_ENV[command] + _OPTIONAL_ENV[command]}
    _check_env(command, env)
    args = parse_cni_args(env.get("CNI_ARGS", ""))
    config = _decode_config(stdin)
    version = _check_config(command, config)
    return Request(
        command,
        container_id=env.get("CNI_CONTAINERID", ""),
        netns=env.get("CNI_NETNS", ""),
        ifname=env.get("CNI_IFNAME", ""),
        args=args,
        path=env.get("CNI_PATH", ""),
        config=config,
        version=version,
    )


def parse_cni_args(text: str) -> dict[str, str]:
    """CNI_ARGS ``"K=V;K=V"`` as a dict (empty pairs, as after a trailing ";", are skipped; a
    value may contain "="; a repeated key keeps its last value)."""
    args: dict[str, str] = {}
    for pair in text.split(";"):
        if not pair:
            continue
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CniError(
                ErrorCode.INVALID_ENVIRONMENT,
                f"CNI_ARGS has an invalid pair {pair!r}",
                'expected "KEY=VALUE" pairs separated by ";"',
            )
        args[key] = value
    return args


def _check_env(command: str, env: Mapping[str, str]) -> None:
    missing = [name for name in _REQUIRED_ENV[command] if not env[name]]
    if missing:
        raise CniError(
            ErrorCode.INVALID_ENVIRONMENT,
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set",
            f"CNI_COMMAND={command} requires {', '.join(('CNI_COMMAND', *_REQUIRED_ENV[command]))}",
        )
    container_id = env.get("CNI_CONTAINERID", "")
    if container_id and not _is_name(container_id):
        raise CniError(
            ErrorCode.INVALID_ENVIRONMENT,
            f"CNI_CONTAINERID={container_id!r} is not a valid container ID",
            "it must start with a letter or digit, then only letters, digits, '_', '.', '-'",
        )
    ifname = env.get("CNI_IFNAME", "")
    if ifname:
        problem = _ifname_problem(ifname)
        if problem:
            raise CniError(
                ErrorCode.INVALID_ENVIRONMENT,
                f"CNI_IFNAME={ifname!r} is not a valid interface name",
                problem,
            )


def _ifname_problem(name: str) -> str:
    if len(name.encode("utf-8", "surrogatepass")) > _IFNAME_MAX:
        return f"longer than {_IFNAME_MAX} bytes"
    if name in {".", ".."}:
        return "'.' and '..' are not interface names"
    if any(c in "/:" or c.isspace() for c in name):
        return "it contains '/', ':' or white space"
    return ""


def _is_name(text: str) -> bool:
    """Container IDs and network names: an ASCII letter or digit, then letters, digits, _ . -"""
    if not text or not (text[0].isascii() and text[0].isalnum()):
        return False
    return all((c.isascii() and c.isalnum()) or c in "_.-" for c in text)


def _is_positive_number(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and value > 0
        and math.isfinite(value)
    )


def _decode_json_object(data: bytes, what: str, code: ErrorCode) -> dict[str, Any]:
    try:
        value = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise CniError(code, f"{what} is not UTF-8", str(e)) from None
    except json.JSONDecodeError as e:
        where = f"{e.msg} at line {e.lineno} column {e.colno}"
        raise CniError(code, f"{what} is not JSON", where) from None
    except (ValueError, RecursionError) as e:  # integers too long, nesting too deep
        raise CniError(code, f"{what} is not JSON the plugin can read", str(e)) from None
    if not isinstance(value, dict):
        raise CniError(code, f"{what} is a JSON {_json_type(value)}, not an object")
    return value


def _decode_config(stdin: bytes) -> dict[str, Any]:
    if not stdin.strip():
        raise CniError(
            ErrorCode.DECODE_FAILURE,
            "the network configuration on stdin is empty",
            "expected a JSON object with cniVersion, name and type",
        )
    return _decode_json_object(
        stdin, "the network configuration on stdin", ErrorCode.DECODE_FAILURE
    )


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _config_error(field: str, problem: str) -> CniError:
    return CniError(
        ErrorCode.INVALID_NETWORK_CONFIG, f"network configuration field {field!r} {problem}"
    )


def _string_field(config: Mapping[str, Any], field: str) -> str:
    if field not in config:
        return ""
    value = config[field]
    if not isinstance(value, str):
        raise _config_error(field, f"is a JSON {_json_type(value)}, not a string")
    return value


def _check_config(command: str, config: Mapping[str, Any]) -> str:
    """Validate the network configuration for a command; return its cniVersion."""
    version = _string_field(config, "cniVersion")
    if not version:
        raise _config_error("cniVersion", "is missing or empty")
    if version not in SUPPORTED_VERSIONS:
        raise CniError(
            ErrorCode.INCOMPATIBLE_VERSION,
            f"cniVersion {version!r} is not supported",
            f"sart-cni supports {', '.join(SUPPORTED_VERSIONS)}",
        )
    if command not in _COMMANDS_BY_VERSION[version]:
        raise CniError(
            ErrorCode.INCOMPATIBLE_VERSION,
            f"{command} needs cniVersion {_SINCE[command]} or later",
            f"the network configuration has cniVersion {version}",
        )
    name = _string_field(config, "name")
    if not name:
        raise _config_error("name", "is missing or empty")
    if not _is_name(name):
        raise _config_error(
            "name",
            f"{name!r} must start with a letter or digit, then only letters, digits, '_', '.', '-'",
        )
    if not _string_field(config, "type"):
        raise _config_error("type", "is missing or empty")
    for field in ("args", "ipam", "dns", "runtimeConfig", "prevResult"):
        if field in config and not isinstance(config[field], dict):
            raise _config_error(field, f"is a JSON {_json_type(config[field])}, not an object")
    if command == "CHECK" and "prevResult" not in config:
        raise _config_error("prevResult", "is missing: CHECK needs the result of the ADD")
    if command == "GC":
        _check_valid_attachments(config)
    if "socket" in config and not _string_field(config, "socket"):
        raise _config_error("socket", "is empty (the agent's unix socket path)")
    if "timeout" in config and not _is_positive_number(config["timeout"]):
        raise _config_error(
            "timeout", f"is {config['timeout']!r}, not a positive number of seconds"
        )
    return version


def _check_valid_attachments(config: Mapping[str, Any]) -> None:
    # Absent means none: libcni marshals an empty list with omitempty, so the key is left out,
    # and the reference plugins read that as an empty list too.
    attachments = config.get(VALID_ATTACHMENTS, [])
    if not isinstance(attachments, list):
        raise _config_error(VALID_ATTACHMENTS, f"is a JSON {_json_type(attachments)}, not an array")
    for i, item in enumerate(attachments):
        if not isinstance(item, dict):
            raise _config_error(f"{VALID_ATTACHMENTS}[{i}]", "is not an object")
        for key in ("containerID", "ifname"):
            if not isinstance(item.get(key), str):
                raise _config_error(f"{VALID_ATTACHMENTS}[{i}].{key}", "is missing or not a string")


def _version_request(stdin: bytes) -> Request:
    """VERSION: stdin, when not empty, is ``{"cniVersion": ...}``; any version may be asked."""
    if not stdin.strip():
        return Request("VERSION")
    config = _decode_json_object(stdin, "the VERSION input on stdin", ErrorCode.DECODE_FAILURE)
    version = _string_field(config, "cniVersion") or CURRENT_VERSION
    return Request("VERSION", config=config, version=version)


def version_result(requested: str | None = None) -> dict[str, Any]:
    """The VERSION answer: the version asked for (else the current one) and the supported ones."""
    return {
        "cniVersion": requested or CURRENT_VERSION,
        "supportedVersions": list(SUPPORTED_VERSIONS),
    }


# --- results -----------------------------------------------------------------------------------

# Fields the 1.1.0 spec added; a 1.0.0 result leaves them out.
_INTERFACE_FIELDS_100 = ("name", "mac", "sandbox")
_ROUTE_FIELDS_100 = ("dst", "gw")


def _bad_result(problem: str) -> CniError:
    return CniError(ErrorCode.BAD_AGENT_REPLY, f"the agent's result {problem}")


def _list_of_objects(result: Mapping[str, Any], field: str) -> list[dict[str, Any]]:
    value = result.get(field, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise _bad_result(f"field {field!r} is not an array of objects")
    return value


def result_for_version(result: Mapping[str, Any], version: str) -> dict[str, Any]:
    """A 1.1.0 ADD result (the agent's) in the shape of ``version``: 1.0.0 drops the fields
    1.1.0 added (interface mtu/socketPath/pciID, route mtu/advmss/priority/table/scope);
    0.4.0 and 0.3.x also give each IP its ``"version"`` ("4" or "6"). Raises `CniError`
    (`BAD_AGENT_REPLY`) when the result is not shaped like one."""
    if version not in SUPPORTED_VERSIONS:
        raise CniError(ErrorCode.INCOMPATIBLE_VERSION, f"cniVersion {version!r} is not supported")
    interfaces = _list_of_objects(result, "interfaces")
    ips = _list_of_objects(result, "ips")
    routes = _list_of_objects(result, "routes")
    dns = result.get("dns", {})
    if not isinstance(dns, dict):
        raise _bad_result("field 'dns' is not an object")
    for i, ip in enumerate(ips):
        if not isinstance(ip.get("address"), str):
            raise _bad_result(f"field 'ips[{i}].address' is missing or not a string")
    if version == "1.1.0":
        out = {k: v for k, v in result.items() if k != "cniVersion"}
        return {"cniVersion": version, **out}
    old = version != "1.0.0"
    converted: dict[str, Any] = {"cniVersion": version}
    if interfaces or "interfaces" in result:
        converted["interfaces"] = [
            {k: v for k, v in intf.items() if k in _INTERFACE_FIELDS_100} for intf in interfaces
        ]
    if ips or "ips" in result:
        converted["ips"] = [_ip_for(ip, old=old) for ip in ips]
    if routes or "routes" in result:
        converted["routes"] = [
            {k: v for k, v in route.items() if k in _ROUTE_FIELDS_100} for route in routes
        ]
    if "dns" in result:
        converted["dns"] = dict(dns)
    return converted


def _ip_for(ip: Mapping[str, Any], *, old: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if old:
        out["version"] = "6" if ":" in ip["address"] else "4"
    out.update((k, ip[k]) for k in ("interface", "address", "gateway") if k in ip)
    return out


# --- what the plugin prints ----------------------------------------------------------------------


def plugin_output(
    request: Request | None,
    *,
    result: Mapping[str, Any] | None = None,
    error: CniError | None = None,
) -> tuple[int, bytes]:
    """Exactly what `sart-cni` prints on stdout, and its exit status, for a call that ended with
    ``result`` (the agent's, in the 1.1.0 shape) or ``error``; ``request`` is None when the call
    could not be parsed. ADD prints its result in the requested version's shape, VERSION the
    versions (`version_result`), DEL, CHECK, GC and STATUS nothing, as the spec says; an error
    prints the spec's error object in the request's version and exits 1. A DEL answered
    "container unknown" (code 3) succeeds: DEL of what is already gone must (SPEC.md), and the
    runtime would otherwise retry it forever. A malformed ADD result is `BAD_AGENT_REPLY`."""
    if error is None:
        if request is None:
            raise ValueError("a result needs the request it answers")
        if request.command == "VERSION":
            return 0, _document(version_result(request.version))
        if request.command != "ADD":
            return 0, b""
        try:
            if not isinstance(result, dict):
                raise _bad_result("is not a JSON object")
            return 0, _document(result_for_version(result, request.version))
        except CniError as bad:
            error = bad
    elif result is not None:
        raise ValueError("a call ends with a result or an error, not both")
    if (
        request is not None
        and request.command == "DEL"
        and error.code == ErrorCode.UNKNOWN_CONTAINER
    ):
        return 0, b""
    version = request.version if request is not None else CURRENT_VERSION
    return 1, _document(error.to_json(version))


def _document(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, indent=2).encode() + b"\n"
