"""The package layering of DESIGN.md holds: stitching <- backends <- scheduler <- sparseloom."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ALLOWED = {
    "stitching": set(),
    "backends": {"stitching"},
    "scheduler": {"stitching", "backends"},
    "sparseloom": {"stitching", "backends", "scheduler"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_layers_below(repo_root: Path, package: str) -> None:
    files = sorted((repo_root / package).rglob("*.py"))
    assert files, f"package {package} has no modules"
    bad = []
    for file in files:
        for name in _imports(file) & set(ALLOWED):
            if name != package and name not in ALLOWED[package]:
                bad.append(f"{file.relative_to(repo_root)} imports {name}")
    assert not bad, "\n".join(bad)
