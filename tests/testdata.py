"""Where the shared BGP captures live: ../shared/testdata/bgp beside the clone (CI puts it
there), or SART_SHARED_DIR/testdata/bgp."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("SART_SHARED_DIR") or REPO.parent / "shared")
BGP_TESTDATA = SHARED / "testdata" / "bgp"


def load_vectors(name: str) -> list[dict[str, Any]]:
    """The "vectors" of manifest.json or errors.json."""
    document = json.loads((BGP_TESTDATA / name).read_text())
    vectors: list[dict[str, Any]] = document["vectors"]
    return vectors


def read_capture(relative: str) -> bytes:
    return (BGP_TESTDATA / relative).read_bytes()
