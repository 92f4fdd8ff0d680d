"""The shape of lib/: stages depend downwards only, nothing imports in a circle, and the
runtime package leaves the development tools alone. `lint-imports` checks the contracts in
pyproject.toml; the cycle check walks every import grimp finds, function-level ones included."""

from __future__ import annotations

import graphlib
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

from tests.helpers import ROOT

PACKAGES = ("movierec", "movierec_embedded")


def test_the_import_contracts_hold():
    lint = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Contracts: 3 kept, 0 broken." in done.stdout


@pytest.mark.parametrize("package", PACKAGES)
def test_no_module_imports_itself_in_a_circle(package):
    graph = grimp.build_graph(package)
    modules = set(graph.modules)
    edges = {m: graph.find_modules_directly_imported_by(m) & modules for m in modules}
    try:
        order = list(graphlib.TopologicalSorter(edges).static_order())
    except graphlib.CycleError as e:
        pytest.fail(f"import cycle: {' -> '.join(e.args[1])}")
    assert len(order) == len(modules) > 1


def test_every_stage_package_says_what_it_owns():
    for package in ("core", "data", "model", "serve"):
        doc = (ROOT / "lib" / "movierec" / package / "__init__.py").read_text()
        assert doc.startswith('"""') and len(doc.splitlines()) >= 3, package


def test_the_architecture_doc_lists_every_table_with_its_writer():
    from movierec.core.delta_io import PRODUCER

    text = (ROOT / "docs" / "architecture.md").read_text()
    documented = {}
    for line in text.split("## Delta tables")[1].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            for name in cells[0].replace("`", "").split(","):
                documented[name.strip()] = cells[1].split(",")[0].split(" (")[0].strip()
    assert documented == PRODUCER


def _dependencies() -> list[str]:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]


def _declared() -> set[str]:
    from packaging.requirements import Requirement

    return {Requirement(r).name.lower().replace("_", "-") for r in _dependencies()}


def test_every_third_party_import_of_the_runtime_package_is_a_pinned_dependency():
    """A module the jobs import but pyproject.toml does not declare works here and fails on a
    fresh install (scipy, imported by drift, was once missing)."""
    import ast
    from importlib.metadata import packages_distributions

    distributions = packages_distributions()
    imported: dict[str, str] = {}
    for path in sorted((ROOT / "lib" / "movierec").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            for name in names:
                imported.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    third_party = {top: where for top, where in imported.items()
                   if top not in sys.stdlib_module_names and top not in PACKAGES}
    assert {"pyspark", "delta", "scipy", "mlflow"} <= set(third_party)
    declared = _declared()
    undeclared = {top: where for top, where in third_party.items()
                  if not {d.lower().replace("_", "-") for d in distributions.get(top, [top])} & declared}
    assert not undeclared, f"imported but not in pyproject.toml's dependencies: {undeclared}"
    assert all("==" in r for r in _dependencies()), [r for r in _dependencies() if "==" not in r]
