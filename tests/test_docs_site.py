"""The docs site builds in strict mode: every page is in the nav, every link and anchor between
pages resolves, and every repository file a page links to is published (scripts/mkdocs_hooks.py).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_docs_site_builds_strictly(tmp_path: Path) -> None:
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    index = (site / "index.html").read_text()
    opening = next(
        line for line in (ROOT / "README.md").read_text().splitlines()[1:] if line.strip()
    )
    assert " ".join(opening.split()[:4]) in index, "the index lacks the README's opening"
    assert (site / "repository" / "manifests" / "crd" / "bgppeers.yaml").is_file()
