"""The import arrows of the packages (README, "Where things are"), read from the source
with ``ast``, lazy imports inside functions included: a cycle or a wrong-way import
fails here before it surprises someone at run time."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("jobs_core", "beat", "worker", "control", "cli", "ui", "extensions")

#: What each package must never import (top-level names).
FORBIDDEN = {
    "jobs_core": {"celery", "kombu", "redis", "click", "beat", "worker", "control", "cli", "ui"},
    "beat": {"worker", "control", "cli", "ui"},
    "worker": {"beat", "control", "cli", "ui"},
    "control": {"cli", "ui"},
    "ui": {"cli"},
    "extensions": {"beat", "worker", "control", "cli", "ui"},
}


def imported(package: str) -> dict[str, set[str]]:
    """Top-level module names imported by each file of ``package`` (relative imports,
    which stay inside the package, left out)."""
    out: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        out[str(path.relative_to(ROOT))] = names
    return out


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_import_against_the_arrows(package: str) -> None:
    wrong = {
        file: sorted(names & FORBIDDEN[package])
        for file, names in imported(package).items()
        if names & FORBIDDEN[package]
    }
    assert wrong == {}


def test_the_rules_cover_every_package_but_the_composition_root() -> None:
    assert set(PACKAGES) - set(FORBIDDEN) == {"cli"}
