"""Comments, docs and pages speak of the product, not of documents outside the repository.

The product's rules are stated in docs/product.md; a comment that needs one points there
(`docs/product.md#plans`). A reference to a planning document or a tracker item that is not in
the repository ("seed" documents by number, "issue N") tells a newcomer nothing and goes stale,
so no tracked file may contain one.
"""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# A numbered outside document, the folder that held them, or a tracker item by number.
CITATION = re.compile(r"(?<![a-z])seed[\s_-]?0\d\d|\bseeds/|\bthe seed's\b|\bissues?\s+#?\d", re.IGNORECASE)
TEXT = {".py", ".md", ".html", ".txt", ".js", ".css", ".toml", ".cfg", ".ini", ".yaml", ".yml", ".json", ".sh",
        ".svg", ""}
SELF = "tests/test_no_outside_references.py"  # its examples of what the pattern finds
# Files whose citations are being rewritten by work in progress elsewhere. Each entry must still
# cite something (otherwise remove it here), so the list only shrinks.
IN_PROGRESS: dict[str, str] = {}


def tracked_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [name for name in listed.decode().split("\0") if name and Path(name).suffix in TEXT]


def citations(name: str) -> list[str]:
    path = ROOT / name
    if not path.is_file():  # deleted in the work tree, not yet in the index
        return []
    text = path.read_text(encoding="utf-8", errors="replace")
    return [f"{name}:{number}: {line.strip()}" for number, line in enumerate(text.splitlines(), 1)
            if CITATION.search(line)]


def test_the_pattern_finds_what_it_is_for():
    assert CITATION.search("Relative-time triggers (seed 003): a deal's date comes up")
    assert CITATION.search("the seed-001 format") and CITATION.search("def test_the_seed_001_example()")
    assert CITATION.search("(issue 18, item 8)") and CITATION.search("Issue 7: never a 500")
    assert CITATION.search("in ../shared/seeds/000.txt") and CITATION.search("the seed's spelling")
    assert not CITATION.search("manage.py seed_demo --org acme")
    assert not CITATION.search("an issue with the broker; 3 retries")
    assert not CITATION.search("random.seed(42)")


def test_no_tracked_file_cites_a_document_outside_the_repository():
    found = [hit for name in tracked_files() if name not in {*IN_PROGRESS, SELF} for hit in citations(name)]
    assert not found, ("Say the rule itself, or point at docs/product.md#<section>:\n" + "\n".join(found))


def anchor(heading: str) -> str:
    """The anchor a Markdown renderer gives a heading: "KPIs and alerts" → "kpis-and-alerts"."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_pointer_into_the_product_page_names_one_of_its_sections():
    page = (ROOT / "docs" / "product.md").read_text(encoding="utf-8")
    sections = {anchor(line.lstrip("#")) for line in page.splitlines() if line.startswith("## ")}
    pointer = re.compile(r"product\.md#([\w-]+)")
    broken = [f"{name}: #{section}" for name in tracked_files()
              for section in pointer.findall((ROOT / name).read_text(encoding="utf-8", errors="replace")
                                             if (ROOT / name).is_file() else "")
              if section not in sections]
    assert {"plans", "documents", "kpis-and-alerts", "error-policies"} <= sections
    assert not broken, f"no such section in docs/product.md: {broken}"


def test_files_in_progress_still_need_their_exemption():
    done = [name for name in sorted(IN_PROGRESS) if not citations(name)]
    assert not done, f"these no longer cite anything: remove them from IN_PROGRESS: {done}"
