"""docs/architecture.md's module table lists every module under src/racecast, and nothing that is gone."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "racecast"


def table_modules() -> set[str]:
    """Paths named in the first column of the "## Modules" table, relative to src/racecast."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("\n## Modules\n", 1)[1].split("\n## ", 1)[0]
    named = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            for path in re.findall(r"`([^`]+)`", line.split("|")[1]):
                named.add(path.removeprefix("racecast/"))
    return named


def tree_modules() -> set[str]:
    """Every Python and viewer JavaScript module (package ``__init__`` files and vendored code aside)."""
    out = set()
    for p in PACKAGE.rglob("*"):
        if p.suffix in (".py", ".js") and p.name != "__init__.py" and "vendor" not in p.parts and "__pycache__" not in p.parts:
            out.add(p.relative_to(PACKAGE).as_posix())
    return out


def test_every_module_is_in_the_table() -> None:
    missing = sorted(tree_modules() - table_modules())
    assert not missing, f"add a row to docs/architecture.md's module table for: {missing}"


def test_the_table_names_no_module_that_is_gone() -> None:
    gone = sorted(m for m in table_modules() if m.endswith((".py", ".js")) and not (PACKAGE / m).is_file())
    assert not gone, f"docs/architecture.md's module table names modules that do not exist: {gone}"
