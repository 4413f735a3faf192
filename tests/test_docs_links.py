"""Every relative link in README.md and docs/*.md points to a file of the repository, and every
``#anchor`` to a heading of its target page (anchors made as GitHub makes them)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]

LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"`[^`]*`")


def prose_lines(text: str) -> List[Tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    lines, in_fence = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if not in_fence:
            lines.append((number, line))
    return lines


def github_anchor(heading: str) -> str:
    """The id GitHub gives a heading: markup dropped, lower case, punctuation removed, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors_of(page: Path) -> Set[str]:
    anchors: Set[str] = set()
    seen: Dict[str, int] = {}
    for _, line in prose_lines(page.read_text(encoding="utf-8")):
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        anchor = github_anchor(match.group(1))
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        anchors.add(anchor if count == 0 else f"{anchor}-{count}")
    return anchors


def relative_links(page: Path) -> List[Tuple[int, str]]:
    links = []
    for number, line in prose_lines(page.read_text(encoding="utf-8")):
        for match in LINK.finditer(INLINE_CODE.sub("", line)):
            target = match.group(1)
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # http:, https:, mailto:, ...
                links.append((number, target))
    return links


def broken_links(page: Path, root: Path = REPO_ROOT) -> List[str]:
    """One line per link whose file or anchor does not exist, naming the page (relative to ``root``) and line."""
    problems = []
    for number, target in relative_links(page):
        path_part, _, anchor = target.partition("#")
        linked = (page.parent / path_part).resolve() if path_part else page
        where = f"{page.relative_to(root)}:{number}: {target}"
        if not linked.exists():
            problems.append(f"{where}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors_of(linked):
            problems.append(f"{where}: no heading with anchor #{anchor}")
    return problems


def test_github_anchor_follows_githubs_rule():
    assert github_anchor("Evaluation (`eval_ssd.py`)") == "evaluation-eval_ssdpy"
    assert github_anchor("numpy + OpenCV, not torchvision.transforms.v2 — measured") == \
        "numpy--opencv-not-torchvisiontransformsv2--measured"
    assert github_anchor("`OnnxPredictor` (Python, without PyTorch)") == "onnxpredictor-python-without-pytorch"


def test_checker_finds_a_broken_file_and_anchor(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Other\n\n## Part two\n", encoding="utf-8")
    page.write_text("# Page\n\n[ok](other.md#part-two) [gone](missing.md) [bad](other.md#part-three)\n"
                    "[self](#page) [web](https://example.com/x.md)\n\n```\n[code](nowhere.md)\n```\n",
                    encoding="utf-8")
    assert broken_links(page, root=tmp_path) == ["page.md:3: missing.md: no such file",
                        "page.md:3: other.md#part-three: no heading with anchor #part-three"]


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(REPO_ROOT)) for p in PAGES])
def test_relative_links_and_anchors_resolve(page):
    assert broken_links(page) == []
