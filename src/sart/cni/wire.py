"""The framing between `sart-cni` and the node agent: the call as the runtime made it, forwarded.

The plugin does not parse anything: it sends its ``CNI_*`` variables and its stdin, byte for
byte, and prints what the agent answers. The agent checks the call (`sart.cni.spec.
parse_request`) and composes the exact output (`sart.cni.spec.plugin_output`), so the plugin's
normal path imports neither json nor re (about 10 ms of a ~25 ms start-up, paid on every pod).

An invocation (plugin to agent)::

    b"sart-cni/2\\n"
    b"<len(env_block)> <len(stdin)>\\n"     two ASCII decimal numbers
    env_block                              b"KEY=VALUE" pairs of the CNI_* variables, joined by NUL
    stdin                                  the network configuration exactly as received

An answer (agent to plugin, then the agent closes)::

    b"<exit status>\\n"                      an ASCII decimal number, 0..255
    stdout                                 the exact bytes the plugin writes (may be empty)

Pure, and deliberately cheap to import: nothing beyond what the interpreter has already loaded
by the time `os` and `sys` are there (no json, no re, no enum, not even ``__future__``).
"""

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "DEFAULT_SOCKET",
    "DEFAULT_TIMEOUT",
    "MAGIC",
    "MAX_ANSWER",
    "MAX_INVOCATION",
    "decode_answer",
    "decode_invocation",
    "encode_answer",
    "encode_invocation",
    "invocation_size",
]

MAGIC = b"sart-cni/2\n"
"""The first bytes of every invocation: the contract's name and version."""
DEFAULT_SOCKET = "/run/sart/cni.sock"
"""The agent's unix socket; the netconf field ``"socket"`` overrides it."""
DEFAULT_TIMEOUT = 30.0
"""Seconds the plugin waits for the agent; the netconf field ``"timeout"`` overrides it."""
MAX_INVOCATION = 1 << 20
"""The largest env block plus stdin an agent accepts (a netconf is a few hundred bytes)."""
MAX_ANSWER = 1 << 20
"""The largest answer the plugin reads (a result is a few hundred bytes)."""

_PREFIX = b"CNI_"
_MAX_DIGITS = 20  # no size or status needs more; keeps int() away from huge inputs


def encode_invocation(environ: "Mapping[bytes, bytes]", stdin: bytes) -> bytes:
    """What the plugin sends: its ``CNI_*`` variables (others are left out) and its stdin.
    Raises ValueError for a variable an environment could not hold (NUL, ``=`` in a name)."""
    pairs = []
    for key, value in environ.items():
        if not key.startswith(_PREFIX):
            continue
        if b"=" in key or b"\0" in key or b"\0" in value:
            raise ValueError(f"environment variable {key!r} cannot be framed (NUL or '=')")
        pairs.append(key + b"=" + value)
    env_block = b"\0".join(pairs)
    return b"".join((MAGIC, b"%d %d\n" % (len(env_block), len(stdin)), env_block, stdin))


def invocation_size(size_line: bytes, limit: int = MAX_INVOCATION) -> tuple[int, int]:
    """The sizes of the env block and of stdin, from the line after `MAGIC` (its ``\\n`` may
    be there or not). Raises ValueError when the line is malformed or the total over `limit`."""
    text = size_line.removesuffix(b"\n")
    env_size, sep, stdin_size = text.partition(b" ")
    if not (sep and _is_number(env_size) and _is_number(stdin_size)):
        raise ValueError(f"the size line {_excerpt(size_line)} is not b'<env size> <stdin size>'")
    sizes = int(env_size), int(stdin_size)
    if sizes[0] + sizes[1] > limit:
        raise ValueError(f"the invocation is {sizes[0] + sizes[1]} bytes, over {limit}")
    return sizes


def decode_invocation(data: bytes) -> tuple[dict[str, str], bytes]:
    """The agent's side of `encode_invocation`: the ``CNI_*`` variables (decoded as `os.environ`
    does, UTF-8 with surrogateescape) and stdin. Raises ValueError (only) on malformed data."""
    if not data.startswith(MAGIC):
        raise ValueError(f"not a {MAGIC.strip().decode()} invocation: it starts {_excerpt(data)}")
    end = data.find(b"\n", len(MAGIC))
    if end < 0:
        raise ValueError("the invocation's size line is missing or unterminated")
    env_size, stdin_size = invocation_size(data[len(MAGIC) : end])
    body = data[end + 1 :]
    if len(body) != env_size + stdin_size:
        raise ValueError(
            f"the invocation announces {env_size} + {stdin_size} bytes and carries {len(body)}"
        )
    environ: dict[str, str] = {}
    for pair in body[:env_size].split(b"\0") if env_size else ():
        key, sep, value = pair.partition(b"=")
        if not sep or not key.startswith(_PREFIX):
            raise ValueError(f"the env block holds {_excerpt(pair)}, not a CNI_* variable")
        name = key.decode("utf-8", "surrogateescape")
        if name in environ:
            raise ValueError(f"the env block holds {name} twice")
        environ[name] = value.decode("utf-8", "surrogateescape")
    return environ, body[env_size:]


def encode_answer(status: int, stdout: bytes) -> bytes:
    """What the agent sends back: the plugin's exit status and the bytes it prints."""
    if not 0 <= status <= 255:
        raise ValueError(f"exit status {status} is not in 0..255")
    return b"%d\n" % status + stdout


def decode_answer(data: bytes) -> tuple[int, bytes]:
    """The plugin's side of `encode_answer`. Raises ValueError (only) on malformed data."""
    line, sep, stdout = data.partition(b"\n")
    if not sep or not _is_number(line) or int(line) > 255:
        raise ValueError(f"the answer does not start with an exit status line: {_excerpt(data)}")
    return int(line), stdout


def _is_number(text: bytes) -> bool:
    return 0 < len(text) <= _MAX_DIGITS and text.isdigit()  # bytes.isdigit: ASCII digits only


def _excerpt(data: bytes, limit: int = 40) -> str:
    return repr(data[:limit]) + ("..." if len(data) > limit else "")
