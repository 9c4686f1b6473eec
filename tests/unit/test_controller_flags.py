"""`sart-controller`'s webhook flags: a mistake is said before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from sart.cli.controller import main


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--webhook-cert-secret", "sart-webhook-tls"],
         "--webhook-cert-secret must be NAMESPACE/NAME (got 'sart-webhook-tls')"),
        (["--webhook-cert-secret", "a/b/c"],
         "--webhook-cert-secret must be NAMESPACE/NAME (got 'a/b/c')"),
        (["--webhook-cert-secret", "a/b", "--webhook-cert", "{pem}", "--webhook-key", "{pem}"],
         "--webhook-cert-secret or --webhook-cert, not both"),
        (["--webhook-cert", "{pem}"], "--webhook-cert and --webhook-key go together"),
        (["--no-webhook-cert-keep"], "--no-webhook-cert-keep goes with --webhook-cert-secret"),
    ],
)  # fmt: skip
def test_webhook_flags_that_do_not_fit(tmp_path: Path, flags: list[str], said: str) -> None:
    pem = tmp_path / "tls.pem"
    pem.write_text("")
    args = [f.format(pem=pem) for f in flags]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert said in result.stderr
