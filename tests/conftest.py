"""Hypothesis profiles and the shared test data.

Profiles: "ci" (the default), "dev" (faster still) and "deep" (long runs); pick one with
`pytest --hypothesis-profile=deep` or the HYPOTHESIS_PROFILE environment variable.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=150,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", parent=settings.get_profile("ci"), max_examples=25)
settings.register_profile(
    "deep",
    parent=settings.get_profile("ci"),
    max_examples=20_000,
    stateful_step_count=500,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

REPO_ROOT = Path(__file__).resolve().parent.parent


def shared_testdata_dir() -> Path:
    """The shared BGP test data: $SART_SHARED_DIR/testdata/bgp, by default
    <repo>/../shared/testdata/bgp."""
    shared = os.environ.get("SART_SHARED_DIR") or REPO_ROOT.parent / "shared"
    return Path(shared) / "testdata" / "bgp"


@pytest.fixture(scope="session")
def shared_testdata() -> Path:
    """shared_testdata_dir(), which must exist: vector tests are never skipped."""
    path = shared_testdata_dir()
    if not path.is_dir():
        pytest.fail(f"shared test data not found at {path}; set SART_SHARED_DIR")
    return path
