"""The speaker's configuration: one attrs model, read from YAML with cattrs.

The file format is the original sart's (`asn`, `router_id`, `multi_path`, `neighbors: [{name,
asn, router_id, address, passive}]`, `paths: [{prefixes, attributes}]`), extended with what a
production speaker needs (ports, timers, passwords, TTL, families, graceful restart). The
original's `fib_endpoint`, `fib_table` and `exporter` keys are accepted and reported as unused,
so an existing file loads unchanged.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from typing import Any, Final

import attrs
import cattrs
import yaml
from cattrs.v import format_exception
from netaddr import AddrFormatError, IPAddress, IPNetwork

from sart.bgp.codes import OriginCode
from sart.bgp.limits import DEFAULT_WARNING_PERCENT, PrefixLimit
from sart.bgp.messages import (
    IPV4_UNICAST,
    IPV6_UNICAST,
    Family,
    LargeCommunity,
    parse_community,
)
from sart.errors import ConfigError

MAX_ASN = 2**32 - 1
SUPPORTED_FAMILIES = (IPV4_UNICAST, IPV6_UNICAST)
# Keys of the original sart's file that mean nothing to this speaker (FIB sync is the agent's).
IGNORED_KEYS = ("fib_endpoint", "fib_table", "exporter")


def _asn(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not 1 <= value <= MAX_ASN:
        raise ValueError(f"{attribute.name} {value} is outside 1..{MAX_ASN}")


def _hold_time(instance: object, attribute: attrs.Attribute[Any], value: int) -> None:
    if value != 0 and not 3 <= value <= 65535:
        raise ValueError(f"{attribute.name} {value} must be 0 or 3..65535 (RFC 4271 4.2)")


def _port(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not 0 <= value <= 65535:
        raise ValueError(f"{attribute.name} {value} is not a TCP port")


def _ipv4(instance: object, attribute: attrs.Attribute[IPAddress | None], value: object) -> None:
    if value is not None and (not isinstance(value, IPAddress) or value.version != 4):
        raise ValueError(f"{attribute.name} {value} must be an IPv4 address")


@attrs.frozen(kw_only=True)
class BfdConfig:
    """BFD with the neighbor (RFC 5880 asynchronous mode, RFC 5881 single hop), milliseconds:
    the session goes down after `multiplier` x the agreed interval without a packet, and the
    BGP session with it."""

    min_rx: int = attrs.field(default=300, validator=attrs.validators.in_(range(1, 4_294_968)))
    min_tx: int = attrs.field(default=300, validator=attrs.validators.in_(range(1, 4_294_968)))
    multiplier: int = attrs.field(default=3, validator=attrs.validators.in_(range(1, 256)))


@attrs.frozen(kw_only=True)
class NeighborConfig:
    """One peer. `router_id` is the original sart's field: when given, the peer's OPEN must
    carry that BGP identifier."""

    address: IPAddress
    asn: int = attrs.field(validator=_asn)
    name: str = ""
    router_id: IPAddress | None = attrs.field(default=None, validator=_ipv4)
    port: int = attrs.field(default=179, validator=_port)
    passive: bool = False
    hold_time: int | None = attrs.field(default=None)  # None: the speaker's
    # Seconds between our KEEPALIVEs; None: a third of the negotiated hold time. Below the
    # hold time (RFC 4271 4.4); when the peer negotiates the hold time lower, a third of
    # that if shorter. Nothing with a hold time of 0 (no keepalives).
    keepalive_time: int | None = attrs.field(default=None)
    password: str | None = attrs.field(default=None)  # TCP-MD5 (RFC 2385)
    ttl: int | None = attrs.field(
        default=None
    )  # None: 1 for eBGP (directly connected), 255 for iBGP
    local_address: IPAddress | None = None  # the source address of our connection
    # Our next hop per IP version for routes to this peer; by default our address on the
    # session, which only serves its own version (an IPv4 session needs one for IPv6 routes).
    next_hops: tuple[IPAddress, ...] = ()
    families: tuple[Family, ...] = (IPV4_UNICAST, IPV6_UNICAST)
    graceful_restart: bool = True  # honour the peer's restart (RFC 4724 receiving side)
    admin_down: bool = False
    bfd: BfdConfig | None = None  # None: no BFD; the hold timer alone detects a failure
    # At most this many paths from the peer (None: no limit); past it, Cease / Maximum
    # Number of Prefixes Reached (RFC 4486) and down for max_prefixes_restart seconds
    # (0: until enabled again). A warning at max_prefixes_warning percent.
    max_prefixes: int | None = attrs.field(default=None)
    max_prefixes_warning: int = attrs.field(default=DEFAULT_WARNING_PERCENT)
    max_prefixes_restart: int = attrs.field(default=0)

    @max_prefixes.validator
    def _check_max_prefixes(
        self, attribute: attrs.Attribute[int | None], value: int | None
    ) -> None:
        if value is not None and not 1 <= value <= MAX_ASN:
            raise ValueError(f"max_prefixes {value} is outside 1..{MAX_ASN}")

    @max_prefixes_warning.validator
    def _check_warning(self, attribute: attrs.Attribute[int], value: int) -> None:
        if not 1 <= value <= 100:
            raise ValueError(f"max_prefixes_warning {value} is outside 1..100 (percent)")

    @max_prefixes_restart.validator
    def _check_restart(self, attribute: attrs.Attribute[int], value: int) -> None:
        if not 0 <= value <= 2**31 - 1:
            raise ValueError(f"max_prefixes_restart {value} must be 0 or more seconds")

    @property
    def prefix_limit(self) -> PrefixLimit | None:
        if self.max_prefixes is None:
            return None
        return PrefixLimit(
            limit=self.max_prefixes,
            warning_percent=self.max_prefixes_warning,
            restart_time=float(self.max_prefixes_restart),
        )

    @hold_time.validator
    def _check_hold_time(self, attribute: attrs.Attribute[int | None], value: int | None) -> None:
        if value is not None:
            _hold_time(self, attribute, value)

    @keepalive_time.validator
    def _check_keepalive_time(
        self, attribute: attrs.Attribute[int | None], value: int | None
    ) -> None:
        if value is None:
            return
        if not 1 <= value <= 65535:
            raise ValueError(f"keepalive_time {value} is outside 1..65535")
        if self.hold_time is not None:
            check_keepalive(value, self.hold_time)

    @ttl.validator
    def _check_ttl(self, attribute: attrs.Attribute[int | None], value: int | None) -> None:
        if value is not None and not 1 <= value <= 255:
            raise ValueError(f"ttl {value} is outside 1..255")

    @password.validator
    def _check_password(self, attribute: attrs.Attribute[str | None], value: str | None) -> None:
        if value is not None and not 1 <= len(value.encode()) <= 80:
            raise ValueError("password must be 1..80 octets (TCP_MD5SIG_MAXKEYLEN)")

    @property
    def label(self) -> str:
        return self.name or str(self.address)


def check_keepalive(keepalive_time: int, hold_time: int) -> None:
    """ValueError unless KEEPALIVEs every `keepalive_time` seconds fit `hold_time` (RFC 4271
    4.4: below the hold time; a hold time of 0 sends none)."""
    if hold_time == 0:
        raise ValueError(
            f"keepalive_time {keepalive_time} with a hold time of 0: no KEEPALIVE is sent"
        )
    if keepalive_time >= hold_time:
        raise ValueError(f"keepalive_time {keepalive_time} must be below the hold time {hold_time}")


PASSWORD_DIGEST: Final = "pbkdf2-sha256"
_DIGEST_ROUNDS: Final = 10_000


def password_digest(password: str, salt: bytes | None = None) -> str:
    """A salted one-way digest of a TCP-MD5 password, which the speaker shows instead of the
    password: a client that sent one can tell whether the speaker holds it
    (`password_matches`), nobody can read it back."""
    salt = secrets.token_bytes(16) if salt is None else salt
    key = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, _DIGEST_ROUNDS)
    return f"{PASSWORD_DIGEST}${_DIGEST_ROUNDS}${salt.hex()}${key.hex()}"


def password_matches(password: str, digest: str) -> bool:
    """Whether `digest` (from `password_digest`) was made of `password`."""
    try:
        kind, rounds, salt, key = digest.split("$")
        expected = bytes.fromhex(key)
        made = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt), int(rounds))
    except ValueError:
        return False
    return kind == PASSWORD_DIGEST and hmac.compare_digest(made, expected)


@attrs.frozen(kw_only=True)
class BmpCollectorConfig:
    """A BMP collector (RFC 7854) the speaker dials and reports its sessions to."""

    address: IPAddress
    port: int = attrs.field()
    # Seconds between two Stats Reports per session; 0: none.
    statistics_interval: int = attrs.field(default=60)

    @port.validator
    def _check_port(self, attribute: attrs.Attribute[int], value: int) -> None:
        if not 1 <= value <= 65535:
            raise ValueError(f"port {value} is not a TCP port to dial (1..65535)")

    @statistics_interval.validator
    def _check_interval(self, attribute: attrs.Attribute[int], value: int) -> None:
        if not 0 <= value <= 86400:
            raise ValueError(f"statistics_interval {value} is outside 0..86400 seconds")


@attrs.frozen(kw_only=True)
class PathAttributesConfig:
    """Attributes of locally originated paths."""

    origin: OriginCode = OriginCode.IGP
    local_pref: int | None = None
    med: int | None = None
    communities: tuple[int, ...] = ()
    large_communities: tuple[LargeCommunity, ...] = ()  # RFC 8092
    next_hop: IPAddress | None = None  # None: our address on each session


@attrs.frozen(kw_only=True)
class PathConfig:
    prefixes: tuple[IPNetwork, ...]
    attributes: PathAttributesConfig = PathAttributesConfig()


@attrs.frozen(kw_only=True)
class SpeakerConfig:
    asn: int = attrs.field(validator=_asn)
    router_id: IPAddress = attrs.field(validator=_ipv4)
    port: int = attrs.field(default=179, validator=_port)
    listen_addresses: tuple[IPAddress, ...] = (IPAddress("0.0.0.0"), IPAddress("::"))
    hold_time: int = attrs.field(default=90, validator=_hold_time)
    connect_retry_time: float = 5.0
    graceful_restart_time: int = 120  # how long a restarting peer's routes are kept (s)
    # Graceful restart as the restarting speaker (RFC 4724 4.1): announce every family with
    # its forwarding-state bit, the Restart State bit on each neighbor's first session, and
    # stop without a NOTIFICATION so that the routers keep our routes while we are away.
    restarting_side: bool = False
    # Hold End-of-RIB until EndOfInitialTable (the agent's first full sync) or until
    # selection_deferral_time seconds after start (RFC 4724 4.1's selection deferral timer).
    defer_end_of_rib: bool = False
    selection_deferral_time: int = attrs.field(default=60)
    multi_path: bool = False
    multi_path_relax: bool = False  # ECMP across neighbouring ASes (FRR's multipath-relax)
    neighbors: tuple[NeighborConfig, ...] = attrs.field(default=())
    paths: tuple[PathConfig, ...] = ()
    bmp: tuple[BmpCollectorConfig, ...] = ()  # BMP collectors to report to (sart.bgp.bmp_export)
    # Append every UPDATE received, and every session coming up or going down, to this MRT
    # file (RFC 6396 BGP4MP, sart.cli.mrt_log); None: no log.
    mrt_updates_file: str | None = None

    @selection_deferral_time.validator
    def _check_deferral(self, attribute: attrs.Attribute[int], value: int) -> None:
        if not 1 <= value <= 3600:
            raise ValueError(f"selection_deferral_time {value} is outside 1..3600 seconds")

    @neighbors.validator
    def _check_neighbors(
        self, attribute: attrs.Attribute[tuple[NeighborConfig, ...]], value: tuple[NeighborConfig]
    ) -> None:
        seen: set[IPAddress] = set()
        for neighbor in value:
            if neighbor.address in seen:
                raise ValueError(f"neighbor {neighbor.address} is configured twice")
            seen.add(neighbor.address)
            if neighbor.keepalive_time is not None and neighbor.hold_time is None:
                check_keepalive(neighbor.keepalive_time, self.hold_time)


def _structure_address(value: object, _: type) -> IPAddress:
    if not isinstance(value, str | int):
        raise ValueError(f"{value!r} is not an IP address")
    try:
        return IPAddress(value)
    except (AddrFormatError, ValueError, TypeError):
        raise ValueError(f"{value!r} is not an IP address") from None


def _structure_network(value: object, _: type) -> IPNetwork:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a prefix")
    try:
        network = IPNetwork(value)
    except (AddrFormatError, ValueError, TypeError):
        raise ValueError(f"{value!r} is not a prefix") from None
    if network.ip != network.network:
        raise ValueError(f"{value!r} has host bits set (did you mean {network.cidr}?)")
    return network


def _structure_family(value: object, _: type) -> Family:
    family = Family.from_str(str(value))
    if family not in SUPPORTED_FAMILIES:
        raise ValueError(f"{value!r}: the speaker carries ipv4-unicast and ipv6-unicast only")
    return family


def _structure_origin(value: object, _: type) -> OriginCode:
    if isinstance(value, str) and not value.isdigit():
        try:
            return OriginCode[value.upper()]
        except KeyError:
            raise ValueError(f"{value!r} is not an origin (igp, egp, incomplete)") from None
    return OriginCode(int(str(value)))


def _structure_community(value: object, _: type) -> int:
    if isinstance(value, int):
        return value
    return parse_community(str(value))


def _structure_int(value: object, _: type) -> int:
    # YAML gives ints, the original's string maps give "100": both are fine, 1.5 or true not.
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    raise ValueError(f"{value!r} is not an integer")


def _structure_bool(value: object, _: type) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{value!r} is not true or false")
    return value


def _make_converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True)
    converter.register_structure_hook(IPAddress, _structure_address)
    converter.register_structure_hook(IPNetwork, _structure_network)
    converter.register_structure_hook(Family, _structure_family)
    converter.register_structure_hook(OriginCode, _structure_origin)
    converter.register_structure_hook(int, _structure_int)
    converter.register_structure_hook(bool, _structure_bool)  # else bool falls to the int hook
    # The only tuple of ints in the model: communities, as numbers or "65000:100" / "no-export".
    converter.register_structure_hook_func(
        lambda t: t == tuple[int, ...],
        lambda v, _: tuple(_structure_community(c, int) for c in v),
    )
    converter.register_structure_hook(LargeCommunity, lambda v, _: LargeCommunity.from_str(str(v)))
    converter.register_unstructure_hook(LargeCommunity, str)
    converter.register_unstructure_hook(IPAddress, str)
    converter.register_unstructure_hook(IPNetwork, str)
    converter.register_unstructure_hook(Family, str)
    return converter


_CONVERTER = _make_converter()


def _describe(error: BaseException, expected: type | None) -> str:
    if isinstance(error, ValueError) and str(error):
        return str(error)  # ours, from a hook or validator: it says what is wrong
    if isinstance(error, KeyError):
        return "required field missing"
    return format_exception(error, expected)


def parse_config(data: Mapping[str, Any], *, where: str = "config") -> SpeakerConfig:
    """A SpeakerConfig from the parsed YAML; ConfigError naming every wrong field."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping of settings, got {type(data).__name__}")
    settings = {k: v for k, v in data.items() if k not in IGNORED_KEYS}
    try:
        return _CONVERTER.structure(settings, SpeakerConfig)
    except (cattrs.BaseValidationError, ValueError, TypeError, KeyError) as error:
        problems = cattrs.transform_error(error, path=where, format_exception=_describe)
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems)) from None


def load_config(
    text: str, *, where: str = "config", overrides: Mapping[str, Any] | None = None
) -> SpeakerConfig:
    """Parse YAML text; `overrides` (command-line settings) replace the file's top-level keys."""
    try:
        data = yaml.safe_load(text) if text else {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{where}: not valid YAML: {error}") from None
    if data is None:
        data = {}
    if isinstance(data, dict) and overrides:
        data = {**data, **overrides}
    return parse_config(data, where=where)


def ignored_keys(data: Mapping[str, Any]) -> list[str]:
    """Keys of the original sart's format that this speaker reads but does not use."""
    return [key for key in IGNORED_KEYS if key in data]


def unstructure_config(config: SpeakerConfig) -> dict[str, Any]:
    result: dict[str, Any] = _CONVERTER.unstructure(config)
    return result
