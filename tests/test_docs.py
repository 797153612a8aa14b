"""The docs site builds strictly, and the README and the docs say nothing the repository contradicts.

- ``mkdocs build --strict`` (a broken link, a missing anchor or a nav entry without its page fails it), into a
  temporary directory; its hook generates the spec reference, one page per spec kind.
- Every relative link of ``README.md`` points at a file of the repository and, for a Markdown file, at a
  heading it has (GitHub's anchors: the README is read there); the README stays a few screens long.
- Every complete spec shown in ``README.md`` or ``docs/*.md`` (a YAML block starting with ``apiVersion:
  orchestrator.dev/v1``) is accepted by the spec loader, so an example cannot go stale silently.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.specs import loader

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
README_MAX_LINES = 250

_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^(```|~~~)")


def prose_lines(text: str) -> list[str]:
    """The lines of a Markdown text outside fenced code blocks."""
    out, fenced = [], False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            out.append(line)
    return out


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in prose_lines(path.read_text(encoding="utf-8")):
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            slug = github_anchor(m.group(1))
            n = seen.get(slug, 0)
            found.add(slug if n == 0 else f"{slug}-{n}")
            seen[slug] = n + 1
    return found


def test_site_builds_strictly(tmp_path: Path) -> None:
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for kind in loader.kinds():
        assert (site / "reference" / kind / "index.html").is_file(), f"no reference page for {kind}"
    assert (site / "index.html").is_file()


def test_readme_links_point_at_what_exists() -> None:
    broken: list[str] = []
    for line in prose_lines(README.read_text(encoding="utf-8")):
        for target in _LINK.findall(line):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
                continue
            path_part, _, anchor = target.partition("#")
            path = (ROOT / path_part) if path_part else README
            if not path.exists():
                broken.append(f"{target}: no such file")
            elif anchor and path.suffix == ".md" and anchor not in anchors(path):
                broken.append(f"{target}: {path.relative_to(ROOT)} has no heading #{anchor}")
    assert broken == []


def test_readme_is_a_few_screens() -> None:
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines: move detail to docs/ and link it"


def complete_specs() -> list[tuple[str, str]]:
    found = []
    for path in [README, *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        for n, m in enumerate(re.finditer(r"^```ya?ml\n(.*?)^```", text, re.S | re.M)):
            if m.group(1).startswith("apiVersion: orchestrator.dev/v1"):
                found.append((f"{path.relative_to(ROOT)}#{n}", m.group(1)))
    return found


@pytest.mark.parametrize(("source", "text"), complete_specs(), ids=[s for s, _ in complete_specs()])
def test_specs_shown_in_the_docs_validate(source: str, text: str) -> None:
    loader.load_text(text, source)
