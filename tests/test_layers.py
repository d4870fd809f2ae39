"""The layers stay apart: models/ and pipeline/lib/ never import luigi, nor the task modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

# package folder -> module prefixes its files may import from this project
ALLOWED_PROJECT_IMPORTS = {"models": ("models",), "pipeline/lib": ("models", "pipeline.lib")}


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function-level imports included)."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
    return modules


@pytest.mark.parametrize("package", sorted(ALLOWED_PROJECT_IMPORTS))
def test_plain_layers_import_no_luigi_and_no_tasks(package: str) -> None:
    allowed = ALLOWED_PROJECT_IMPORTS[package]
    files = sorted((REPO / package).rglob("*.py"))
    assert files
    for path in files:
        for module in imported_modules(path):
            top = module.split(".")[0]
            assert top != "luigi", f"{path.relative_to(REPO)} imports {module}"
            if top in ("models", "pipeline"):
                assert module.startswith(allowed), f"{path.relative_to(REPO)} imports {module} (only {allowed})"
