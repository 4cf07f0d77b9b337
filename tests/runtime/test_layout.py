"""The layout keeps its promises: runtime/ is what the box runs (so it imports neither the trainer, nor the
desktop demo, nor matplotlib, none of which the box installs), and the benches import the installed
project instead of patching sys.path."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

NOT_ON_THE_BOX = {"trainer", "desktop", "matplotlib", "bench", "tests"}


def _imported_tops(path: Path) -> set[str]:
    """The top-level names of every module `path` imports, wherever in the file the import sits."""
    tops = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            tops |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            tops.add(node.module.split(".")[0])
    return tops


@pytest.mark.parametrize("path", sorted((REPO / "runtime").glob("*.py")), ids=lambda p: p.name)
def test_the_box_runtime_imports_only_what_the_box_installs(path: Path) -> None:
    assert _imported_tops(path) & NOT_ON_THE_BOX == set()


@pytest.mark.parametrize("path", sorted((REPO / "bench").glob("*.py")), ids=lambda p: p.name)
def test_benches_import_the_installed_project(path: Path) -> None:
    assert "sys.path" not in path.read_text()
