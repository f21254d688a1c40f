"""Every relative link in the project's markdown (README, the results narrative, CLAIMS.md) points at a file or
folder that exists, and every in-page anchor at a heading that exists: moving a report or renaming a section
breaks a test, not a reader's click."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "reports" / "README.md", ROOT / "reports" / "CLAIMS.md"]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def prose(md: Path) -> str:
    return re.sub(r"```.*?```", "", md.read_text(), flags=re.S)  # code blocks hold commands, not links or headings


def anchors(md: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation but hyphens dropped, spaces to hyphens."""
    heads = re.findall(r"^#+ (.+)$", prose(md), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}


def relative_links(md: Path) -> list[str]:
    return [u for u in LINK.findall(prose(md)) if not re.match(r"[a-z]+://|mailto:", u)]


@pytest.mark.parametrize("doc", DOCS, ids=[str(d.relative_to(ROOT)) for d in DOCS])
def test_relative_links_resolve(doc: Path):
    links = relative_links(doc)
    assert links, f"{doc} has no relative links: the pattern is wrong"
    for url in links:
        path, _, anchor = url.partition("#")
        target = (doc.parent / path).resolve() if path else doc
        assert target.exists(), f"{doc.relative_to(ROOT)}: link {url!r} points at nothing"
        if anchor and target.suffix == ".md":
            assert anchor in anchors(target), f"{doc.relative_to(ROOT)}: link {url!r}: no such heading"


def test_anchor_slugs_follow_github():
    md = ROOT / "README.md"
    assert "results-on-the-real-fer-2013" in anchors(md)
    assert "quickstart-two-commands-on-a-fresh-machine-python--311" in anchors(md)
    assert "terminal-1-tunnel-the-dashboard-and-the-job-api-to-http1270018265-keep-it-open" not in anchors(md)
