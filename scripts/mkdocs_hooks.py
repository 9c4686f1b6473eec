"""mkdocs hooks for the docs site (mkdocs.yml `hooks:`): the pages in docs/ stay plain markdown
that reads well on a code host, and the site still has every page it links to.

- A page's relative link to a repository file outside docs/ (`../manifests/crd/bgppeers.yaml`,
  `../proto/sart/v1/original_bgp.proto`) would be a broken link on the site: the file is
  published under `repository/` (same relative path) and the link rewritten to it. A link to a
  file that is not there stays as written, so the strict build fails on it.
- `<!-- README opening -->` in a page is replaced by README.md's opening (the text between its
  title and its first `##` section), so the index says what sart is in the README's own words.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

ROOT = Path(__file__).resolve().parent.parent
PUBLISHED = "repository"
README_MARKER = "<!-- README opening -->"
# A markdown link's target: ](target) or ](target#anchor), relative (no scheme, not absolute).
LINK = re.compile(r"\]\((?![a-z]+:|/|#)([^)\s#]+)(#[^)\s]*)?\)")


def _outside_docs(page_uri: str, target: str, docs_dir: Path) -> str | None:
    """The repository path a page's link points at when it leaves docs/, else None."""
    resolved = (docs_dir / posixpath.dirname(page_uri) / target).resolve()
    if resolved.is_relative_to(docs_dir.resolve()) or not resolved.is_relative_to(ROOT):
        return None
    if not resolved.is_file():
        return None
    return resolved.relative_to(ROOT).as_posix()


def on_files(files: Files, config: MkDocsConfig) -> Files:
    docs_dir = Path(config.docs_dir)
    wanted: set[str] = set()
    for page in files.documentation_pages():
        for match in LINK.finditer(page.content_string):
            path = _outside_docs(page.src_uri, match.group(1), docs_dir)
            if path is not None:
                wanted.add(path)
    for path in sorted(wanted):
        files.append(File.generated(config, f"{PUBLISHED}/{path}", abs_src_path=str(ROOT / path)))
    return files


def _readme_opening() -> str:
    lines = (ROOT / "README.md").read_text().splitlines()
    body = lines[1:] if lines and lines[0].startswith("# ") else lines
    end = next((i for i, line in enumerate(body) if line.startswith("## ")), len(body))
    return "\n".join(body[:end]).strip()


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    docs_dir = Path(config.docs_dir)
    page_dir = posixpath.dirname(page.file.src_uri)

    def rewrite(match: re.Match[str]) -> str:
        path = _outside_docs(page.file.src_uri, match.group(1), docs_dir)
        if path is None:
            return match.group(0)
        published = posixpath.relpath(f"{PUBLISHED}/{path}", page_dir or ".")
        return f"]({published}{match.group(2) or ''})"

    markdown = LINK.sub(rewrite, markdown)
    if README_MARKER in markdown:
        markdown = markdown.replace(README_MARKER, _readme_opening())
    return markdown
