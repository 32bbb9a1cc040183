"""The layout's promises that a linter cannot see: stack names and stack-file patterns are spelled in one module."""

from __future__ import annotations

import ast
from pathlib import Path

from edgefm.model.stacks import SITE_PREFIX
from tests.harness import ROOT

STACKS_MODULE = ROOT / "edgefm" / "model" / "stacks.py"
PROJECT_FILE = "Pulumi.yaml"


def _string_literals(path: Path) -> list[tuple[int, str]]:
    """Every string literal of a module except docstrings (prose may mention a stack file)."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def test_stack_names_and_files_are_spelled_in_one_module() -> None:
    offenders = []
    for path in sorted([*(ROOT / "edgefm").rglob("*.py"), *(ROOT / "components").rglob("*.py")]):
        if path == STACKS_MODULE:
            continue
        for line, text in _string_literals(path):
            # `hub` is also a config key (`edgefm:hub`), so only the site prefix and file patterns are searched.
            if text == SITE_PREFIX or (text.startswith("Pulumi.") and text != PROJECT_FILE) or "Pulumi.site" in text:
                offenders.append(f"{path.relative_to(ROOT)}:{line}: {text!r}")
    assert not offenders, "spell stack names through edgefm.model.stacks:\n" + "\n".join(offenders)


def test_the_check_sees_a_stray_spelling(tmp_path: Path) -> None:
    stray = tmp_path / "stray.py"
    stray.write_text('"""Docs may say stacks/Pulumi.site-x.yaml."""\nPREFIX = "site-"\n')
    assert _string_literals(stray) == [(2, "site-")]
