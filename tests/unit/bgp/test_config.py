"""The speaker's YAML: the original sart's files load unchanged; every mistake is named."""

from __future__ import annotations

import pytest
import yaml
from netaddr import IPAddress, IPNetwork

from sart.bgp.codes import OriginCode, WellKnownCommunity
from sart.bgp.config import load_config, password_digest, password_matches, unstructure_config
from sart.bgp.messages import IPV4_UNICAST, LargeCommunity
from sart.errors import ConfigError

# As in the original sart's e2e data (multipath_simple/node1/config.yaml) and config.rs test.
ORIGINAL = """\
asn: 65000
router_id: 10.0.0.2
multi_path: true
fib_endpoint: 127.0.0.1:5010
neighbors:
  - asn: 65010
    router_id: 10.0.0.3
    address: 10.0.0.3
  - name: spine
    asn: 200
    router_id: 3.3.3.3
    address: '::1'
    passive: true
paths:
  - prefixes:
      - 10.0.0.0/24
      - 10.1.0.0/24
    attributes:
      origin: 1
"""


def test_the_original_sart_format_loads() -> None:
    config = load_config(ORIGINAL)
    assert (config.asn, config.router_id, config.multi_path) == (65000, IPAddress("10.0.0.2"), True)
    first, second = config.neighbors
    assert (first.address, first.asn, first.router_id) == (
        IPAddress("10.0.0.3"),
        65010,
        IPAddress("10.0.0.3"),
    )
    assert second.passive and second.label == "spine" and second.address == IPAddress("::1")
    assert config.paths[0].prefixes == (IPNetwork("10.0.0.0/24"), IPNetwork("10.1.0.0/24"))
    assert config.paths[0].attributes.origin is OriginCode.EGP


def test_extensions_and_readable_values() -> None:
    config = load_config(
        """
asn: 4200000000
router_id: 1.1.1.1
port: 1179
hold_time: 9
neighbors:
  - {address: 10.0.0.1, asn: 65001, password: s3cret, ttl: 2, hold_time: 0,
     families: [ipv4], next_hops: ['2001:db8::1'], admin_down: true}
paths:
  - prefixes: ['2001:db8:1::/48']
    attributes: {origin: incomplete, med: 10, local_pref: '200',
                 communities: ['65000:1', no-export, 7],
                 large_communities: ['65000:1:2']}
"""
    )
    neighbor = config.neighbors[0]
    assert (neighbor.password, neighbor.ttl, neighbor.hold_time) == ("s3cret", 2, 0)
    assert neighbor.families == (IPV4_UNICAST,) and neighbor.admin_down
    attributes = config.paths[0].attributes
    assert attributes.origin is OriginCode.INCOMPLETE
    assert (attributes.med, attributes.local_pref) == (10, 200)
    assert attributes.communities == (65000 << 16 | 1, WellKnownCommunity.NO_EXPORT, 7)
    assert attributes.large_communities == (LargeCommunity(65000, 1, 2),)
    assert load_config(yaml.safe_dump(unstructure_config(config))) == config


def test_overrides_replace_the_file() -> None:
    config = load_config(ORIGINAL, overrides={"asn": 65099, "router_id": "9.9.9.9"})
    assert (config.asn, config.router_id) == (65099, IPAddress("9.9.9.9"))
    assert load_config("", overrides={"asn": 1, "router_id": "1.1.1.1"}).neighbors == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("asn: 65000", "required field missing @ config.router_id"),
        ("asn: x\nrouter_id: 1.1.1.1", "'x' is not an integer @ config.asn"),
        ("asn: 0\nrouter_id: 1.1.1.1", "asn 0 is outside 1..4294967295"),
        ("asn: 1\nrouter_id: '::1'", "router_id ::1 must be an IPv4 address"),
        ("asn: 1\nrouter_id: 1.1.1.1\nhold_time: 2", "hold_time 2 must be 0 or 3..65535"),
        ("asn: 1\nrouter_id: 1.1.1.1\nmulti_path: 1", "1 is not true or false @ config.multi_path"),
        ("asn: 1\nrouter_id: 1.1.1.1\nbogus: 1", "extra fields found (bogus) @ config"),
        (
            "asn: 1\nrouter_id: 1.1.1.1\nneighbors: [{address: 10.0.0.300, asn: 2}]",
            "'10.0.0.300' is not an IP address @ config.neighbors[0].address",
        ),
        (
            "asn: 1\nrouter_id: 1.1.1.1\nneighbors: [{address: 10.0.0.1, asn: 2, holdtime: 3}]",
            "extra fields found (holdtime) @ config.neighbors[0]",
        ),
        (
            "asn: 1\nrouter_id: 1.1.1.1\nneighbors: [{address: 10.0.0.1, asn: 2},"
            " {address: 10.0.0.1, asn: 3}]",
            "neighbor 10.0.0.1 is configured twice",
        ),
        (
            "asn: 1\nrouter_id: 1.1.1.1\nneighbors: [{address: 10.0.0.1, asn: 2, ttl: 0}]",
            "ttl 0 is outside 1..255",
        ),
        (
            "asn: 1\nrouter_id: 1.1.1.1\nneighbors: [{address: 10.0.0.1, asn: 2,"
            " hold_time: 9, keepalive_time: 9}]",
            "keepalive_time 9 must be below the hold time 9",
        ),
        (
            "asn: 1\nrouter_id: 1.1.1.1\nneighbors: [{address: 10.0.0.1, asn: 2,"
            " hold_time: 0, keepalive_time: 3}]",
            "keepalive_time 3 with a hold time of 0: no KEEPALIVE is sent",
        ),
        (
            "asn: 1\nrouter_id: 1.1.1.1\nhold_time: 30\nneighbors: [{address: 10.0.0.1,"
            " asn: 2, keepalive_time: 30}]",
            "keepalive_time 30 must be below the hold time 30",
        ),
        (
            "asn: 1\nrouter_id: 1.1.1.1\nneighbors: [{address: 10.0.0.1, asn: 2,"
            " keepalive_time: 0}]",
            "keepalive_time 0 is outside 1..65535",
        ),
        (
            "asn: 1\nrouter_id: 1.1.1.1\nneighbors: [{address: 10.0.0.1, asn: 2,"
            " families: [ipv4-multicast]}]",
            "'ipv4-multicast': the speaker carries ipv4-unicast and ipv6-unicast only",
        ),
        (
            "asn: 1\nrouter_id: 1.1.1.1\npaths: [{prefixes: [10.0.0.1/24]}]",
            "'10.0.0.1/24' has host bits set (did you mean 10.0.0.0/24?)",
        ),
        (
            "asn: 1\nrouter_id: 1.1.1.1\npaths: [{prefixes: [10.0.0.0/24],"
            " attributes: {origin: best}}]",
            "'best' is not an origin (igp, egp, incomplete) @ config.paths[0].attributes.origin",
        ),
        (
            "asn: 1\nrouter_id: 1.1.1.1\nneighbors: [{address: 10.0.0.1, asn: 2,"
            " max_prefixes: 10, max_prefixes_warning: 101}]",
            "max_prefixes_warning 101 is outside 1..100 (percent)",
        ),
        (
            "asn: 1\nrouter_id: 1.1.1.1\nneighbors: [{address: 10.0.0.1, asn: 2, max_prefixes: 0}]",
            "max_prefixes 0 is outside 1..4294967295",
        ),
        (
            "asn: 1\nrouter_id: 1.1.1.1\nbmp: [{address: collector.example, port: 11019}]",
            "'collector.example' is not an IP address @ config.bmp[0].address",
        ),
        (
            "asn: 1\nrouter_id: 1.1.1.1\nbmp: [{address: 10.0.0.9, port: 0}]",
            "port 0 is not a TCP port to dial (1..65535) @ config.bmp[0]",
        ),
        (
            "asn: 1\nrouter_id: 1.1.1.1\nbmp: [{address: 10.0.0.9}]",
            "required field missing @ config.bmp[0].port",
        ),
        (
            "asn: 1\nrouter_id: 1.1.1.1\nbmp: [{address: 10.0.0.9, port: 1,"
            " statistics_interval: -1}]",
            "statistics_interval -1 is outside 0..86400 seconds",
        ),
        ("- 1", "config: expected a mapping of settings, got list"),
        ("asn: [1", "config: not valid YAML"),
    ],
)
def test_errors_name_the_field(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(text)
    assert message in str(error.value)


def test_bmp_collectors() -> None:
    config = load_config(
        "asn: 65000\nrouter_id: 10.0.0.2\nbmp:\n"
        "  - {address: 10.0.0.9, port: 11019, statistics_interval: 15}\n"
        "  - {address: '2001:db8::9', port: 5000}\n"
    )
    first, second = config.bmp
    assert (first.address, first.port, first.statistics_interval) == (
        IPAddress("10.0.0.9"),
        11019,
        15,
    )
    assert (second.address, second.statistics_interval) == (IPAddress("2001:db8::9"), 60)


def test_max_prefixes() -> None:
    config = load_config(
        "asn: 65000\nrouter_id: 10.0.0.2\nneighbors:\n"
        "  - {address: 10.0.0.3, asn: 65010, max_prefixes: 1000, max_prefixes_warning: 90,"
        " max_prefixes_restart: 30}\n"
        "  - {address: 10.0.0.4, asn: 65010}\n"
    )
    limited, free = config.neighbors
    limit = limited.prefix_limit
    assert limit is not None
    assert (limit.limit, limit.warning_percent, limit.restart_time) == (1000, 90, 30.0)
    assert free.prefix_limit is None and free.max_prefixes_warning == 75
    assert unstructure_config(config)["neighbors"][0]["max_prefixes"] == 1000


def test_keepalive_time_and_the_password_digest() -> None:
    text = (
        "asn: 1\nrouter_id: 1.1.1.1\nneighbors: [{address: 10.0.0.1, asn: 2, hold_time: 9,"
        " keepalive_time: 2}, {address: 10.0.0.2, asn: 2, keepalive_time: 29}]"
    )
    first, second = load_config(text).neighbors
    assert (first.keepalive_time, second.keepalive_time) == (2, 29)  # below 9, below 90
    digest = password_digest("s3cret")
    assert "s3cret" not in digest and digest != password_digest("s3cret")  # salted
    assert password_matches("s3cret", digest)
    assert not password_matches("s3cre", digest)
    assert not password_matches("s3cret", "junk") and not password_matches("s3cret", "")
