"""The code cites the project's own method document, and only sections it has."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METHOD = ROOT / "docs" / "method.md"


def _tracked_text_files():
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    suffixes = {".py", ".smk", ".yaml", ".yml", ".md", ".rst", ".tsv", ".txt", ""}
    return [ROOT / p for p in out.split() if Path(p).suffix in suffixes and not p.startswith("requirements/")]


def test_nothing_cites_a_document_or_tracker_outside_the_repository():
    pattern = re.compile(r"SCIENCE\.md|\.\./shared|\bissues? \d+\b|closing note", re.IGNORECASE)
    hits = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}" for p in _tracked_text_files() if p.is_file()
            for i, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
            if pattern.search(line) and p != Path(__file__)]  # fmt: skip
    assert hits == []


def test_every_cited_section_of_the_method_exists():
    sections = set(re.findall(r"^## (\d+)\.", METHOD.read_text(encoding="utf-8"), flags=re.MULTILINE))
    cited = set()
    for p in _tracked_text_files():
        if p.is_file():
            for ref in re.findall(
                r"docs/method\.md §(\d+)(?:[–-](\d+))?", p.read_text(encoding="utf-8", errors="replace")
            ):
                cited.update(s for s in ref if s)
    assert cited and cited <= sections, sorted(cited - sections)


def test_readme_maps_every_rule_script():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [p.name for p in sorted((ROOT / "scripts").glob("*.py")) if f"`scripts/{p.name}`" not in readme]
    assert missing == []
