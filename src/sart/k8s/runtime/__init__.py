"""Adapters between the reconcilers and a real apiserver (kubernetes-asyncio)."""

from typing import Any

MERGE: dict[str, Any] = {"_content_type": "application/merge-patch+json"}
"""Keyword arguments that make a kubernetes-asyncio patch a JSON merge patch (its stubs do not
list the keyword their methods accept)."""
