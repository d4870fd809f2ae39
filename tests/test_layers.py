"""The layers stay apart: models/ and pipeline/lib/ never import luigi, nor the task modules, and
each models/ sub-package imports only the sub-packages at or below its own level."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

# package folder -> module prefixes its files may import from this project
ALLOWED_PROJECT_IMPORTS = {"models": ("models",), "pipeline/lib": ("models", "pipeline.lib")}

# models/ sub-packages from the bottom up: each imports only those at or below its own level.
# utils: plain helpers; sample: one person as a sample; evaluation: how good a mask is (metrics,
# quality); classical: classical segmenters (the dense CRF tunes by evaluation's IoU); network:
# the U-Net (its data is sample's); people: photos of people, which uses everything below.
MODEL_LAYERS = ("utils", "sample", "evaluation", "classical", "network", "people")


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


# Modules users run by name (`torchrun -m models.train_dist`), kept at the top of models/: each only
# calls its package's entry point.
ENTRY_POINTS = ("train_dist.py",)


def test_models_is_made_of_the_layered_sub_packages_only() -> None:
    """Every module of models/ lives in one of MODEL_LAYERS (models/__init__.py, a docstring, and
    the ENTRY_POINTS users run by name, aside)."""
    packages = {path.parent.name for path in (REPO / "models").glob("*/__init__.py")}
    assert packages == set(MODEL_LAYERS)
    assert sorted(path.name for path in (REPO / "models").glob("*.py")) == sorted(["__init__.py", *ENTRY_POINTS])
    assert not imported_modules(REPO / "models" / "__init__.py")


@pytest.mark.parametrize("package", MODEL_LAYERS)
def test_each_models_package_imports_only_packages_at_or_below_its_level(package: str) -> None:
    allowed = MODEL_LAYERS[: MODEL_LAYERS.index(package) + 1]
    files = sorted((REPO / "models" / package).rglob("*.py"))
    assert files
    for path in files:
        for module in imported_modules(path):
            parts = module.split(".")
            assert parts[0] != "luigi", f"{path.relative_to(REPO)} imports {module}"
            if parts[0] == "models":
                assert len(parts) > 1 and parts[1] in allowed, (
                    f"{path.relative_to(REPO)} imports {module}: {package} may import only {', '.join(allowed)}"
                )
