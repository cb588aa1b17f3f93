"""``modelmill export``: a derived bundle that holds the model as an ONNX graph beside its
weights, checked against the model on the original test rows (or ``--data``) before
anything is written. ``serving.runtime: onnxruntime`` (``--runtime``) then runs the graph;
the feature transforms stay in Python, in the predictor."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from modelmill.bundle import derive, read_bundle, runtime_model
from modelmill.bundle.store import ModelFiles
from modelmill.compression.compress import TRACE_ROWS, materialised
from modelmill.compression.graphs import OPSET, check_graph, graph_inputs, to_onnx
from modelmill.compression.rows import gate_rows
from modelmill.errors import BundleError, ConfigError, ModelError
from modelmill.predictor import Predictor
from modelmill.predictor.onnx import GRAPH

FORMATS = ("onnx",)
CHECK_ROWS = 1000  # rows the graph is checked on against the model


def export(bundle_path: str | Path, output: str | Path, *, format: str = "onnx", data: str | None = None,
           say: Callable[[str], None] = lambda message: None, key: bytes | None = None) -> Path:
    """Export the bundle's model into a new bundle at ``output``. ``key``: an encrypted
    bundle's (default: the environment's); the new bundle is sealed with it.

    Raises:
        ModelError: the model cannot be exported, or the graph's outputs differ from the
            model's by more than 1e-4 (nothing is written).
        BundleError: the bundle is damaged or holds a graph already, or ``output`` exists.
    """
    if format not in FORMATS:
        raise ConfigError(f"--format {format!r} is not known; the formats are: {', '.join(FORMATS)}", path="--format")
    out = Path(output)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BundleError(f"{out} already exists; an exported bundle goes to a new folder. Fix: choose another -o")
    parent = read_bundle(bundle_path, key)
    name = runtime_model("onnxruntime")
    if name in parent.models or parent.model().runtime == "onnxruntime":
        raise BundleError(f"bundle {parent.path} holds an ONNX graph already (it was {parent.lineage.action}); "
                          "serve it with --runtime onnxruntime")
    predictor = Predictor.from_bundle(parent)
    if predictor.runtime.name == "torch" and predictor.maker.submodels(predictor.model):
        raise ModelError(f"model type {predictor.config.model.type!r} is an ensemble of several models, which is "
                         "not exported to one graph. Fix: export a bundle of one model type (mlp, gbdt …)")
    rows = gate_rows(parent, data)
    frame = rows.frame.iloc[:CHECK_ROWS]
    sample = materialised(predictor.inputs(frame.iloc[:TRACE_ROWS]))
    if int(sample[0].shape[0]) < 2:
        raise ModelError(f"{rows.described} has fewer than 2 rows: the graph is traced and checked on more")
    say(f"exporting {predictor.config.model.type} to ONNX, checked on {len(frame):,} rows of {rows.described}")
    graph = to_onnx(predictor, sample)
    check = check_graph(graph, predictor, materialised(predictor.inputs(frame)))
    if not check.passed:
        raise ModelError(f"the ONNX graph's outputs differ from the model's by up to {check.max_abs_diff:.2e} on "
                         f"{check.rows} rows (at most 1e-4 plus 1e-4 of the output's size is allowed); nothing "
                         "was written")
    import onnx

    details = {"format": "onnx", "opset": OPSET, "check": check.as_json(), "rows": rows.described,
               "inputs": graph_inputs(predictor, sample), "output": "raw",
               "versions": {"torch": torch.__version__, "onnx": onnx.__version__}}
    model = ModelFiles(predictor.config.model.type, "onnxruntime", {GRAPH: graph})
    return derive(parent, out, action="exported", models={name: model}, details=details)
