"""Who may import whom: MLflow only in tracking/ and serving/; training/, evaluation/ and tuning/
are handed what records them, so none of them imports tracking/."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "seismic_ml"
MLFLOW_HOMES = ("tracking", "serving")


def imported(path: Path) -> set[str]:
    """Every module a file imports (top level, in functions, or for type checking alone)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def modules_importing(prefix: str) -> list[str]:
    """The package's files that import prefix or one of its submodules."""
    return sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if any(n == prefix or n.startswith(prefix + ".") for n in imported(path))
    )


def test_only_tracking_and_serving_import_mlflow() -> None:
    outside = [m for m in modules_importing("mlflow") if m.split("/")[0] not in MLFLOW_HOMES]
    assert outside == []


def test_training_imports_neither_tracking_nor_evaluation() -> None:
    upward = modules_importing("seismic_ml.tracking") + modules_importing("seismic_ml.evaluation")
    assert [m for m in upward if m.startswith("training/")] == []


def test_evaluation_does_not_import_tracking() -> None:
    assert [
        m for m in modules_importing("seismic_ml.tracking") if m.startswith("evaluation/")
    ] == []
