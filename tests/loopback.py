"""Speakers on loopback (sart.testing.loopback), under the name the tests import."""

from __future__ import annotations

from sart.testing.loopback import speaker_config, started

__all__ = ["speaker_config", "started"]
