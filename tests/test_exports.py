"""The public surface is what the docs say: docs/architecture.md's "Python API" table against each
module's ``__all__`` (like websockets' tests/test_exports.py)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def documented() -> dict[str, list[str]]:
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    out = {}
    for line in section.splitlines():
        if line.startswith("| `racecast"):
            cells = line.split("|")
            out[cells[1].strip().strip("`")] = re.findall(r"`([^`]+)`", cells[2])
    return out


def test_the_table_lists_modules() -> None:
    assert len(documented()) >= 10


@pytest.mark.parametrize("module", sorted(documented()))
def test_module_exports_what_the_docs_say(module: str) -> None:
    mod = importlib.import_module(module)
    assert hasattr(mod, "__all__"), f"{module} has no __all__"
    assert sorted(mod.__all__) == sorted(documented()[module]), f"{module}: __all__ and docs/architecture.md differ"
    assert len(set(mod.__all__)) == len(mod.__all__), f"{module}: a name twice in __all__"


@pytest.mark.parametrize("module", sorted(documented()))
def test_every_exported_name_exists(module: str) -> None:
    mod = importlib.import_module(module)
    missing = [name for name in mod.__all__ if not hasattr(mod, name)]
    assert not missing, f"{module}.__all__ names what it does not define: {missing}"
