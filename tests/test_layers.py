"""The architecture's rules, checked on the source itself: no module imports from a layer
above its own, and nothing outside ``features/`` (type inference aside) asks which type a
feature is — it asks the feature."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src" / "modelmill"

# Lower never imports higher; modules of one layer may import each other.
LAYERS: dict[str, int] = {
    "modelmill.errors": 1, "modelmill.files": 1, "modelmill.paths": 1, "modelmill.registry": 1,
    "modelmill._version": 1, "modelmill.machine": 1, "modelmill.encryption": 1,
    "modelmill.cluster": 1,  # connecting to a Ray cluster (Ray imported lazily)
    "modelmill.quick_exit": 1,  # the console script's exit, without the interpreter's finalisation
    "modelmill.config": 2,
    "modelmill.bundle": 3, "modelmill.evaluation": 3,
    "modelmill.data": 4, "modelmill.privacy": 4,  # PII detectors (init) and the policy (predictor, serving)
    "modelmill.encoders": 5,
    "modelmill.features": 6,
    "modelmill.models": 7,
    "modelmill.predictor": 8,
    "modelmill.training": 9,
    "modelmill.serving": 10, "modelmill.sharding": 10, "modelmill.explain": 10, "modelmill.monitoring": 10, "modelmill.container": 10, "modelmill.scoring": 10, "modelmill.runs": 10,
    "modelmill.forecasting": 10,  # task: forecast (its deep model trains through the shared trainer)
    "modelmill.recommending": 10,  # task: recommend (its two-tower model trains through the shared trainer)
    "modelmill.tracking": 10,  # MLflow: tracked runs, the model registry, lineage (MLflow imported lazily)
    "modelmill.api": 11, "modelmill.tasks": 11,  # the task seam: task → pipeline
    "modelmill.compare": 12, "modelmill.tuning": 12, "modelmill.retraining": 12, "modelmill.compression": 12,  # they fit whole pipelines
    "modelmill.cli": 12, "modelmill.cli_init": 12, "modelmill.cli_monitoring": 12, "modelmill.cli_build": 12, "modelmill.cli_compression": 12, "modelmill.cli_explain": 12, "modelmill.cli_encryption": 12,
    "modelmill.cli_recommend": 12, "modelmill.cli_registry": 12, "modelmill.cli_lineage": 12, "modelmill.cli_tracking": 12,
    "modelmill.cli_search": 12, "modelmill.cli_output": 12,
    "modelmill": 13,  # the package face (modelmill/__init__.py)
}
FEATURE_TYPES = {"number", "category", "binary", "date", "text", "image"}
FEATURE_CLASSES = {"NumberFeature", "CategoryFeature", "BinaryFeature", "DateFeature", "TextFeature", "ImageFeature"}
TYPE_INFERENCE = {"data/schema.py", "data/infer_config.py"}  # where telling types apart is the job


def layer_of(module: str) -> int:
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        name = ".".join(parts[:end])
        if name in LAYERS:
            return LAYERS[name]
    raise AssertionError(f"{module} is in no layer; add it to LAYERS (and to the map in ARCHITECTURE.md)")


def module_name(path: Path) -> str:
    relative = path.relative_to(SOURCE.parent).with_suffix("")
    parts = list(relative.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """Every modelmill import, also those inside functions and TYPE_CHECKING blocks."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "modelmill"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "modelmill":
            if node.module == "modelmill":  # `from modelmill import x`: a submodule, or the package face
                found += [(node.lineno, f"modelmill.{a.name}" if (SOURCE / a.name).exists()
                           or (SOURCE / f"{a.name}.py").exists() else "modelmill") for a in node.names]
            else:
                found.append((node.lineno, node.module))
    return found


SOURCES = sorted(SOURCE.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(SOURCE)))
def test_no_import_runs_upward(path: Path) -> None:
    own = module_name(path)
    level = layer_of(own)
    upward = [f"line {line}: {module} (layer {layer_of(module)})" for line, module in
              imported_modules(ast.parse(path.read_text())) if layer_of(module) > level]
    assert not upward, f"{own} (layer {level}) imports from above: {upward}"


def _is_type_of_feature(node: ast.AST) -> bool:
    """``x.type`` or ``x["type"]``, but not the target's (``config.target.type``)."""
    if isinstance(node, ast.Attribute) and node.attr == "type":
        return "target" not in ast.unparse(node.value)
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and node.slice.value == "type":
        return "target" not in ast.unparse(node.value)
    return False


def _names_feature_type(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return node.value in FEATURE_TYPES
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return any(_names_feature_type(e) for e in node.elts)
    return False


def feature_type_branches(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(_is_type_of_feature(s) for s in sides) and any(_names_feature_type(s) for s in sides):
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.Name) and node.id in FEATURE_CLASSES:
            found.append(f"line {node.lineno}: uses {node.id}")
    return found


@pytest.mark.parametrize("path", [p for p in SOURCES if p.relative_to(SOURCE).parts[0] != "features"
                                  and str(p.relative_to(SOURCE)) not in TYPE_INFERENCE],
                         ids=lambda p: str(p.relative_to(SOURCE)))
def test_no_branch_on_a_feature_type_outside_features(path: Path) -> None:
    branches = feature_type_branches(ast.parse(path.read_text()))
    assert not branches, f"{path.relative_to(SOURCE)} asks which type a feature is; ask the feature: {branches}"


def test_the_checks_catch_what_they_look_for() -> None:
    assert feature_type_branches(ast.parse('if f.type == "image": pass'))
    assert feature_type_branches(ast.parse('if f["type"] in ("number", "date"): pass'))
    assert feature_type_branches(ast.parse('isinstance(x, TextFeature)'))
    assert not feature_type_branches(ast.parse('if config.target.type != "number": pass'))
    assert not feature_type_branches(ast.parse('if device.type == "cuda": pass'))
    assert imported_modules(ast.parse("def f():\n    from modelmill.api import Pipeline\n")) == [(2, "modelmill.api")]
    assert layer_of("modelmill.bundle.store") == 3 and layer_of("modelmill") == 13
