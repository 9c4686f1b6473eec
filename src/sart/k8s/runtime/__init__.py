"""Adapters between the reconcilers and a real apiserver (kubernetes-asyncio)."""

import datetime
from typing import Any

MERGE: dict[str, Any] = {"_content_type": "application/merge-patch+json"}
"""Keyword arguments that make a kubernetes-asyncio patch a JSON merge patch (its stubs do not
list the keyword their methods accept)."""


def rfc3339_now() -> str:
    """The time now as conditions carry it (RFC 3339, UTC, whole seconds)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
