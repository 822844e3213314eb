"""The documentation's references resolve: every relative Markdown link (file and #heading),
every repository path named in backticks, and every tracking code shown as an example.

Every Markdown file in ``docs/`` is covered as soon as it exists, besides the README and the
benches' README.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from shared.tracking import is_valid_tracking_code

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted(
    [ROOT / "README.md", ROOT / "bench" / "README.md", *(ROOT / "docs").rglob("*.md")],
    key=str,
)
# Backticked text that names a file of the repository: a top-level folder's path, or one of
# the top-level files.
REPO_DIRS = ("services", "shared", "tests", "bench", "config", "docs", "scripts")
REPO_FILES = {"README.md", "compose.yaml", "Dockerfile", "pyproject.toml", ".dockerignore"}
PLACEHOLDER = re.compile(r"[<>*{}…|]")
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
TRACKING_CODE = re.compile(r"(?<![\w-])\d{4}-[0-9A-Z]{3}-[0-9A-Z]{3}-[0-9A-Z]{3}(?![\w-])")


def prose_lines(path: Path) -> list[str]:
    """The file's lines outside fenced code blocks (which hold commands, not references)."""
    lines, fence = [], ""
    for line in path.read_text(encoding="utf-8").splitlines():
        match = FENCE.match(line)
        if match:
            marker = match.group(2)
            if not fence:
                fence = marker
                continue
            if marker.startswith(fence[0]) and len(marker) >= len(fence):
                fence = ""
                continue
        if not fence:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces → hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = text.replace("`", "").lower()
    kept = "".join(
        ch
        for ch in text
        if ch in " -_" or unicodedata.category(ch)[0] in ("L", "N") or ch.isdigit()
    )
    return kept.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    result = set()
    for line in prose_lines(path):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def without_code(line: str) -> str:
    return CODE_SPAN.sub("", line)


def links(path: Path) -> list[str]:
    return [m.group(1) for line in prose_lines(path) for m in LINK.finditer(without_code(line))]


def named_paths(path: Path) -> list[str]:
    found = []
    for line in prose_lines(path):
        for match in CODE_SPAN.finditer(line):
            text = match.group(2).strip()
            if " " in text or PLACEHOLDER.search(text):
                continue
            text = text.split("::", 1)[0].rstrip(":,.;")
            top = text.split("/", 1)[0]
            if (top in REPO_DIRS and "/" in text) or text in REPO_FILES:
                found.append(text)
    return found


def doc_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_the_documentation_set_is_found() -> None:
    names = {doc_id(path) for path in DOCS}
    assert {"README.md", "bench/README.md", "docs/architecture.md"} <= names


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_every_relative_link_reaches_a_file_and_heading(doc: Path) -> None:
    broken = []
    for target in links(doc):
        parts = urlsplit(target)
        if parts.scheme or target.startswith("//"):
            continue  # the outside world is not checked here
        file_part, anchor = unquote(parts.path), unquote(parts.fragment)
        resolved = (doc.parent / file_part).resolve() if file_part else doc
        if not resolved.exists():
            broken.append(f"{target}: no such file")
            continue
        if ROOT not in resolved.parents and resolved != ROOT:
            broken.append(f"{target}: outside the repository")
            continue
        if anchor:
            if resolved.suffix != ".md":
                broken.append(f"{target}: an anchor into a file that is not Markdown")
            elif anchor not in anchors(resolved):
                broken.append(f"{target}: no heading #{anchor} in {doc_id(resolved)}")
    assert not broken, f"{doc_id(doc)}: " + "; ".join(broken)


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_every_repository_path_in_backticks_exists(doc: Path) -> None:
    missing = sorted({name for name in named_paths(doc) if not (ROOT / name).exists()})
    assert not missing, f"{doc_id(doc)} names paths that do not exist: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_example_tracking_codes_have_the_real_format(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    invalid = sorted({c for c in TRACKING_CODE.findall(text) if not is_valid_tracking_code(c)})
    assert not invalid, f"{doc_id(doc)} shows tracking codes that fail their check: {invalid}"
    assert "DDU-" not in text, f"{doc_id(doc)} shows a tracking code format that is not ours"


def test_the_checks_catch_a_broken_link_a_missing_heading_and_a_missing_path(
    tmp_path: Path,
) -> None:
    doc = tmp_path / "sample.md"
    doc.write_text(
        "# Title\n\n## Second `part` (b)\n\n[ok](#second-part-b) [bad](#nowhere) "
        "[gone](missing.md)\n\n```\n[inside a fence](nothing.md)\n```\n\n"
        "See `shared/no_such_module.py` and `shared/lifecycle.py`.\n",
        encoding="utf-8",
    )
    assert anchors(doc) == {"title", "second-part-b"}
    assert links(doc) == ["#second-part-b", "#nowhere", "missing.md"]
    assert named_paths(doc) == ["shared/no_such_module.py", "shared/lifecycle.py"]
