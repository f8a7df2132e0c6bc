"""docs/reference.md is the project's own reference: every `R-` ID the code, the lab sheets, the
README and the docs mention has a section there, and no tracked file names a document the
repository does not hold."""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "reference.md"

ID = r"R-[A-Z0-9]+(?:-[A-Z0-9]+)*"
HEADING = re.compile(rf"^### ({ID}): \S", re.M)
ANY_R_HEADING = re.compile(r"^###\s+R-.*$", re.M)
# anything shaped like an ID, in any case: "R-TW-Len" is reported, not silently cut to "R-TW"
MENTION = re.compile(r"(?<![A-Za-z0-9_-])(R-[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*)")

# documents that live outside the repository and must never be cited from it (spelled in pieces
# so that this file does not name them itself)
OUTSIDE = ("FACTS" + ".md", "DESIGN" + ".md", "STYLE" + ".md", ".." + "/shared")


def repo_files(*patterns: str) -> list[Path]:
    """Files git knows about (tracked, or new and not ignored) matching the patterns."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", *patterns],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return sorted({ROOT / line for line in out.splitlines() if (ROOT / line).is_file()})


def reference_ids() -> list[str]:
    return HEADING.findall(REFERENCE.read_text(encoding="utf-8"))


def test_reference_ids_are_well_formed_and_unique():
    text = REFERENCE.read_text(encoding="utf-8")
    ids = reference_ids()
    assert len(ids) >= 40, f"only {len(ids)} R- sections in {REFERENCE.name}"
    malformed = [h for h in ANY_R_HEADING.findall(text) if not HEADING.match(h)]
    assert malformed == [], "headings must read '### R-UPPER-CASE-ID: statement'"
    assert [i for i, n in Counter(ids).items() if n > 1] == []
    assert "## How to cite" in text


def test_every_r_id_mentioned_in_the_repository_has_a_section():
    known = set(reference_ids())
    files = [f for f in repo_files("*.py", "*.md", "docs/*") if f != Path(__file__).resolve()]
    assert REFERENCE in files
    unresolved = []
    for path in files:
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            unresolved += [f"{path.relative_to(ROOT)}:{n}: {m}" for m in MENTION.findall(line)
                           if not re.fullmatch(ID, m) or m not in known]
    assert unresolved == []


def test_the_checker_finds_an_unknown_id():
    """The scan above would catch a citation of a section that does not exist."""
    line = "CITE = 'reference R-NO-SUCH-SECTION: ...; reference R-TW-LEN, (R-TW-Len)'"
    found = MENTION.findall(line)
    assert found == ["R-NO-SUCH-SECTION", "R-TW-LEN", "R-TW-Len"]
    known = set(reference_ids())
    assert [m for m in found if not re.fullmatch(ID, m) or m not in known] == ["R-NO-SUCH-SECTION", "R-TW-Len"]


def test_no_tracked_file_names_a_document_outside_the_repository():
    hits = []
    for path in repo_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for n, line in enumerate(text.splitlines(), 1):
            hits += [f"{path.relative_to(ROOT)}:{n}: {name}" for name in OUTSIDE if name in line]
    assert hits == []
