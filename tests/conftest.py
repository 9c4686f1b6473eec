"""Hypothesis profiles (the shared test data is found by tests/testdata.py).

Profiles: "ci" (the default), "dev" (faster still) and "deep" (long runs); pick one with
`pytest --hypothesis-profile=deep` or the HYPOTHESIS_PROFILE environment variable.
"""

from __future__ import annotations

import os

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
