"""References to the design notes stay true: docs/DESIGN.md exists, every section that code or docs cite
as "DESIGN.md §N" (or "docs/DESIGN.md §N", or "DESIGN §N") is a numbered heading of it, and no file of the
repository points at a copy of a design guide kept outside the repository.

Scanned for citations: the *.py files under rtrl/, bench/ and tests/, and the *.md files at the top level
and under docs/, as git lists them (tracked, plus new files that are not ignored).
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DESIGN = REPO / "docs" / "DESIGN.md"
CITING_PY_DIRS = ("rtrl", "bench", "tests")
# what the fallback walk skips when git is not there to list the repository's files
NOT_OURS = {".git", ".venv", "runs", "__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache", "build", "dist"}

_NUMBER = r"\d+(?:\.\d+)*"
# "DESIGN.md", "docs/DESIGN.md" or "DESIGN", then §N (a Python comment may wrap between them); more
# sections may follow, each after ",", "and", "/" or "&", with an optional quoted title after a section:
# DESIGN.md §2 "General form", §3  ->  2 and 3
CITATION = re.compile(
    r"(?<![\w-])(?:docs/)?DESIGN(?:\.md)?(?:\s|#)*§\s*(" + _NUMBER + r")"
    r"((?:\s*(?:\"[^\"\n]*\")?\s*(?:,|\band\b|/|&)\s*§\s*" + _NUMBER + r")*)")
FOLLOWING = re.compile(r"§\s*(" + _NUMBER + r")")
FILE_MENTION = re.compile(r"(?<![\w-])(?:docs/)?DESIGN\.md\b")
HEADING = re.compile(r"^#{1,6}[ \t]+(" + _NUMBER + r")\.?[ \t]", re.M)
FENCE = re.compile(r"^```.*?^```", re.M | re.S)
# built from pieces, so that this file does not match itself
OUTSIDE = re.compile("|".join((re.escape(".." + "/") + "shared" + r"\b", re.escape("/work/") + "shared" + r"\b")))


def cited_sections(text: str) -> list[tuple[int, str]]:
    """(line number, section) of every design-note section ``text`` cites."""
    found = []
    for match in CITATION.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        found.append((line, match.group(1)))
        found.extend((line, number) for number in FOLLOWING.findall(match.group(2)))
    return found


def headed_sections(markdown: str) -> set[str]:
    """The section numbers of the numbered headings ("## 3. The segment form" -> "3"), outside fenced code."""
    return set(HEADING.findall(FENCE.sub("", markdown)))


def missing_sections(text: str, headings: set[str]) -> list[tuple[int, str]]:
    return [(line, number) for line, number in cited_sections(text) if number not in headings]


def outside_references(text: str) -> list[int]:
    """Line numbers of the references to a path outside the repository."""
    return [text.count("\n", 0, m.start()) + 1 for m in OUTSIDE.finditer(text)]


def repository_files() -> list[Path]:
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                                capture_output=True, check=True).stdout.decode()
        files = [REPO / name for name in listed.split("\0") if name]
    except (OSError, subprocess.CalledProcessError):   # not a git checkout (an unpacked sdist, say)
        files = [p for p in REPO.rglob("*") if not NOT_OURS & set(p.relative_to(REPO).parts)
                 and not any(part.endswith(".egg-info") for part in p.relative_to(REPO).parts)]
    return sorted(p for p in files if p.is_file())   # a tracked file deleted in the work tree is skipped


def citing_files() -> list[Path]:
    found = []
    for path in repository_files():
        parts = path.relative_to(REPO).parts
        if path.suffix == ".py" and parts[0] in CITING_PY_DIRS:
            found.append(path)
        elif path.suffix == ".md" and (len(parts) == 1 or parts[0] == "docs"):
            found.append(path)
    return found


def read_text(path: Path) -> str | None:
    """The file as text, or None for a binary file (an image, say)."""
    data = path.read_bytes()
    return None if b"\0" in data else data.decode("utf-8", errors="replace")


def test_the_parser_finds_every_cited_section_and_flags_a_missing_one():
    name = "DESIGN" + ".md"   # pieces again: the scan below reads this file too
    text = (f"see {name} §2 \"General form\", §3\n"
            f"# a wrapped comment ({name}\n# §4 / §5) and docs/{name} §6, a bare {name}, §8 is not a citation\n"
            f"help='3 learns long delays, DESIGN §7'  and {name} §9.1\n")
    assert cited_sections(text) == [(1, "2"), (1, "3"), (2, "4"), (2, "5"), (3, "6"), (4, "7"), (4, "9.1")]
    assert missing_sections(text, {"1", "2", "3", "4", "5", "6", "7"}) == [(4, "9.1")]
    assert missing_sections(f"{name} §12", {"1", "2"}) == [(1, "12")]
    assert headed_sections("# Title\n## 1. One\ntext\n### 1.2 Sub\n```\n## 9. in a fence\n```\n## Decisions\n") \
        == {"1", "1.2"}


def test_the_outside_reference_check_can_fail():
    assert outside_references("fine: docs/DESIGN.md, ../shared_memory\nbad: " + ".." + "/shared/x.md\n") == [2]
    assert outside_references("/work/" + "shared" + "/DESIGN.md") == [1]


def test_the_design_notes_exist_and_have_their_sections():
    assert DESIGN.is_file(), "docs/DESIGN.md is missing, but the code and docs cite it"
    assert {str(n) for n in range(1, 8)} <= headed_sections(DESIGN.read_text())


def test_the_scan_covers_the_files_that_cite_the_design_notes():
    names = {str(p.relative_to(REPO)) for p in citing_files()}
    assert {"README.md", "rtrl/cells/engine.py", "tests/test_design_refs.py"} <= names
    assert any(cited_sections(read_text(REPO / name) or "") for name in names), "no citation found at all"


@pytest.mark.parametrize("path", citing_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_cited_section_exists(path):
    text = read_text(path)
    if text is None or not (CITATION.search(text) or FILE_MENTION.search(text)):
        return
    assert DESIGN.is_file(), f"{path.relative_to(REPO)} cites docs/DESIGN.md, which does not exist"
    missing = missing_sections(text, headed_sections(DESIGN.read_text()))
    assert not missing, (f"{path.relative_to(REPO)} cites sections that docs/DESIGN.md does not have: "
                         + ", ".join(f"line {line}: §{number}" for line, number in missing))


def test_the_design_notes_refer_only_to_their_own_sections():
    if not DESIGN.is_file():
        pytest.fail("docs/DESIGN.md is missing")
    text = DESIGN.read_text()
    headings = headed_sections(text)
    missing = [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in FOLLOWING.finditer(text)
               if m.group(1) not in headings]
    assert not missing, "docs/DESIGN.md refers to sections it does not have: " + ", ".join(
        f"line {line}: §{number}" for line, number in missing)


def test_no_file_refers_outside_the_repository():
    offending = []
    for path in repository_files():
        text = read_text(path)
        if text is not None:
            offending += [f"{path.relative_to(REPO)}:{line}" for line in outside_references(text)]
    assert not offending, "files refer to a path outside the repository: " + ", ".join(offending)
