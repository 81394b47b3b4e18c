"""The product stays apart from the dev harness, and Airflow's SDK stays at the product's edge."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from wrapped_dev.config import REPO_ROOT

PRODUCT_DIRS = ("include/weekly_wrapped", "dags", "plugins", "spark")


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def product_files() -> list[Path]:
    return sorted(p for d in PRODUCT_DIRS for p in (REPO_ROOT / d).rglob("*.py"))


@pytest.mark.parametrize("path", product_files(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_the_product_never_imports_the_dev_harness(path):
    harness = sorted(m for m in imported_modules(path) if m == "wrapped_dev" or m.startswith("wrapped_dev."))
    assert not harness, f"{path.relative_to(REPO_ROOT)} imports {harness}"


def test_only_the_airflow_package_reads_connections_and_variables():
    """Stage code gets plain values; `weekly_wrapped.airflow` is where Connections and Variables are read."""
    readers = []
    for path in (REPO_ROOT / "include" / "weekly_wrapped").rglob("*.py"):
        if "airflow" in path.relative_to(REPO_ROOT / "include" / "weekly_wrapped").parts[:1]:
            continue
        if "airflow.sdk" in imported_modules(path):
            readers.append(str(path.relative_to(REPO_ROOT)))
    assert readers == []


def test_the_harness_guard_sees_an_import():
    """The check above is not vacuous: it finds a harness import when there is one."""
    sample = REPO_ROOT / "include" / "wrapped_dev" / "demo.py"
    assert any(m.startswith("wrapped_dev") for m in imported_modules(sample))
