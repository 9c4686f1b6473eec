"""`sartd bgp --bmp ADDRESS:PORT`: a wrong collector stops sartd before it starts, exit code 2,
with what was wrong."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from sart.cli.sartd import main


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [
        ("11019", "--bmp '11019': want ADDRESS:PORT"),
        ("10.0.0.9:", "--bmp '10.0.0.9:': want ADDRESS:PORT"),
        ("collector.example:1", "'collector.example' is not an IP address @ config.bmp[0].address"),
        ("10.0.0.9:0", "port 0 is not a TCP port to dial (1..65535) @ config.bmp[0]"),
        ("[2001:db8::9]:x", "'x' is not an integer @ config.bmp[0].port"),
    ],
)  # fmt: skip
def test_a_wrong_collector_is_refused(endpoint: str, message: str) -> None:
    args = ["bgp", "--as", "65000", "--router-id", "10.0.0.2", "--bmp", endpoint]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert message in result.output
