"""The structure stays as docs/architecture.md draws it: small modules, one job each, stated first.

The layers themselves are import-linter's contracts (``[tool.importlinter]`` in pyproject.toml, run by
``.ci/run``); this test keeps the other two rules of the architecture section.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "carbon_node"
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.stat().st_size > 0)
MAX_LINES = 500


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_every_module_is_at_most_500_lines(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(PACKAGE)} has {lines} lines: split it along its jobs"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_every_module_opens_with_the_job_it_does(path: Path) -> None:
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    assert docstring, f"{path.relative_to(PACKAGE)} has no module docstring stating its job"
    assert len(docstring.splitlines()[0]) >= 20


def test_the_architecture_document_names_every_room() -> None:
    text = (PACKAGE.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    rooms = sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists())
    for room in rooms:
        assert f"carbon_node/{room}/" in text, room
