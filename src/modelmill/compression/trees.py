"""Gradient-boosted trees (model type ``gbdt``) as an ONNX graph, and with fewer trees.

The graph follows the contract of :mod:`modelmill.predictor.onnx`: inputs ``input_0`` …
(each feature's raw view, float64 (batch, k)), output ``raw`` (batch, outputs) float64, the
booster's raw scores (log-odds, class scores, the standardised target) exactly as
``Trees.forward`` gives them.

onnxmltools translates the trees (LightGBM's category sets unrolled into chains of
``BRANCH_EQ`` nodes, its missing-value rules into ``nodes_missing_value_tracks_true``). Its
own graph is not kept: it takes float32 inputs and stores split thresholds as float32, and a
float64 value between a threshold and its float32 rounding takes the other branch (a whole
leaf value off, far past 1e-4). The attributes it computes are captured instead and written
into one ``TreeEnsembleRegressor`` (ai.onnx.ml opset 3) with double inputs and the thresholds
and leaf values as double tensors (``nodes_values_as_tensor``, ``target_weights_as_tensor``),
with no post-transform (raw margins, not probabilities). ONNX Runtime then compares in double,
as LightGBM does, and sums the leaves in double before its float32 output (≈1e-7 off the
booster's float64 scores). Before the trees, values with |x| ≤ 1e-35 become 0, as LightGBM
reads them. (ai.onnx.ml opset 5 ``TreeEnsemble`` would give double outputs and category sets
as ``BRANCH_MEMBER``, and ONNX Runtime 1.32 runs it, but onnxmltools does not write it and
older runtimes do not read it.)
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from modelmill.errors import ModelError
from modelmill.models.gbdt import Trees, lightgbm
from modelmill.predictor import Predictor, TorchRuntime
from modelmill.predictor.onnx import OUTPUT, input_name

OPSET = 18  # the default domain's opset (Concat, Cast); trees are ai.onnx.ml opset 3
ML_OPSET = 3  # the first with double thresholds and leaf values (the *_as_tensor attributes)
IR_VERSION = 9  # what ONNX Runtime has read since 1.15
ZERO_THRESHOLD = float(np.float32(1e-35))  # LightGBM's kZeroThreshold (1e-35f, in meta.h)
PROBE_ROWS = 512  # rows drawn at the trees' own split points for the check on export
_NODE_KEYS = ("nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_modes", "nodes_truenodeids",
              "nodes_falsenodeids", "nodes_missing_value_tracks_true")


def trees_to_onnx(predictor: Predictor) -> bytes:
    """The predictor's gbdt model as ONNX bytes (see the module docstring for the graph).

    The graph is checked on export against the booster on rows drawn at the trees' own split
    points (each threshold, the doubles next to it, missing values, every category code):
    the rows where a precision or missing-value difference would show.

    Raises:
        ModelError: the model is not a fitted gbdt model, onnx or onnxmltools is missing,
            or the graph does not give the booster's raw scores within 1e-4.
    """
    module = _trees(predictor, "exported to ONNX by trees_to_onnx")
    ensemble = _ensemble_attributes(module)
    widths = [len(feature.raw_columns()) for feature in predictor.features]
    graph = _graph(ensemble, widths, module.outputs)
    _check_at_splits(graph, predictor, module, ensemble, widths)
    return graph


def prune_trees(predictor: Predictor, *, sparsity: float) -> tuple[Predictor, dict[str, Any]]:
    """Keep the first ``round((1 - sparsity) × iterations)`` boosting iterations (at least one).

    Boosting adds each tree to correct the ones before it, so the first iterations are a
    complete, smaller model (the last ones add the least); dropping trees from the middle
    would not be. The given predictor is left untouched.

    Args:
        predictor: a fitted predictor of model type gbdt.
        sparsity: the share of boosting iterations to drop, in (0, 1).

    Returns:
        The predictor with the smaller booster (its model type saves only the kept trees),
        and JSON-ready details: iterations and trees before and after, model text sizes.

    Raises:
        ModelError: the sparsity is outside (0, 1), or the model is not a fitted gbdt model.
    """
    if not 0 < sparsity < 1:
        raise ModelError(f"sparsity must be between 0 and 1 (exclusive), got {sparsity}. Fix: --sparsity 0.5 "
                         "keeps the first half of the boosting iterations")
    module = _trees(predictor, "pruned by prune_trees")
    started = time.perf_counter()
    booster = module.booster
    iterations = int(booster.current_iteration())
    keep = max(1, round((1 - sparsity) * iterations))
    before = booster.model_to_string()
    after = booster.model_to_string(num_iteration=keep)
    smaller = Trees(module.columns, module.outputs)
    smaller.booster = lightgbm().Booster(model_str=after)
    smaller.eval()
    details: dict[str, Any] = {
        "method": "trees", "sparsity": sparsity,
        "iterations_before": iterations, "iterations_kept": keep,
        "trees_before": int(booster.num_trees()), "trees_after": int(smaller.booster.num_trees()),
        "model_bytes_before": len(before.encode("utf-8")), "model_bytes_after": len(after.encode("utf-8")),
        "seconds": round(time.perf_counter() - started, 3),
    }
    return dataclasses.replace(predictor, runtime=TorchRuntime(smaller)), details


# ------------------------------------------------------------- applicability


def _trees(predictor: Predictor, what: str) -> Trees:
    model_type = predictor.config.model.type
    if model_type != "gbdt":
        raise ModelError(f"only gbdt models (LightGBM trees) are {what}; this predictor's model type is "
                         f"{model_type!r}. Fix: use modelmill export / compress, which pick the way for each type")
    module = predictor.model  # a ModelError when the predictor runs an exported graph, not the booster
    if not isinstance(module, Trees) or module.booster is None:
        raise ModelError(f"the gbdt model is {what} before it was fitted")
    return module


# ------------------------------------------------------------------- export


def _onnxmltools() -> Any:
    try:
        import onnxmltools  # it needs onnx: one import checks both
    except ImportError:
        raise ModelError("exporting gbdt models to ONNX needs the onnx and onnxmltools packages, which are not "
                         "installed. Fix: pip install 'modelmill[onnx]' (or pip install onnxmltools)") from None
    return onnxmltools


class _Capturing:
    """A stand-in for onnxmltools' graph container that keeps the tree ensemble's attributes
    (Python floats, before ONNX rounds them to float32) and passes everything on."""

    def __init__(self, container: Any, captured: dict[str, Any]) -> None:
        self._container, self._captured = container, captured

    def add_node(self, op_type: str, inputs: Any, outputs: Any, op_domain: str = "", op_version: int = 1,
                 **attrs: Any) -> Any:
        if op_type in ("TreeEnsembleClassifier", "TreeEnsembleRegressor"):
            self._captured.update(attrs)
        return self._container.add_node(op_type, inputs, outputs, op_domain=op_domain, op_version=op_version,
                                        **attrs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._container, name)


def _ensemble_attributes(module: Trees) -> dict[str, Any]:
    """onnxmltools' tree ensemble of the booster, as plain lists (thresholds and leaf values
    in double)."""
    onnxmltools = _onnxmltools()
    from onnxmltools.convert.common.data_types import FloatTensorType
    from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm as convert_trees

    captured: dict[str, Any] = {}

    def capture(scope: Any, operator: Any, container: Any) -> None:
        convert_trees(scope, operator, _Capturing(container, captured))

    columns = int(module.booster.num_feature())
    try:
        onnxmltools.convert_lightgbm(module.booster, initial_types=[("X", FloatTensorType([None, columns]))],
                                     zipmap=False, target_opset=15,
                                     custom_conversion_functions={"LgbmClassifier": capture,
                                                                  "LgbmRegressor": capture})
    except Exception as exc:  # onnxmltools raises many kinds; say which conversion failed and why
        raise ModelError(f"onnxmltools could not convert this LightGBM model: {' '.join(str(exc).split())[:400]}. "
                         "Fix: serve the bundle on its torch runtime (LightGBM), which needs no export") from None
    if not captured:
        raise ModelError("onnxmltools wrote no tree ensemble for this LightGBM model")
    prefix = "class_" if "class_ids" in captured else "target_"
    return {**{key: list(captured[key]) for key in (*_NODE_KEYS, "nodes_values")},
            **{key.replace(prefix, "target_"): list(captured[key.replace("target_", prefix)])
               for key in ("target_treeids", "target_nodeids", "target_ids", "target_weights")}}


def _graph(ensemble: Mapping[str, list[Any]], widths: list[int], outputs: int) -> bytes:
    """inputs → Concat (batch, columns) double → tiny values to 0 → TreeEnsembleRegressor → Cast → raw."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    names = [input_name(i) for i in range(len(widths))]
    inputs = [helper.make_tensor_value_info(name, TensorProto.DOUBLE, ["batch", width])
              for name, width in zip(names, widths)]
    attributes: dict[str, Any] = {key: ensemble[key] for key in (*_NODE_KEYS, "target_treeids", "target_nodeids",
                                                                 "target_ids")}
    attributes["nodes_values_as_tensor"] = numpy_helper.from_array(np.asarray(ensemble["nodes_values"], np.float64))
    attributes["target_weights_as_tensor"] = numpy_helper.from_array(np.asarray(ensemble["target_weights"],
                                                                                np.float64))
    trees = helper.make_node("TreeEnsembleRegressor", ["columns"], ["scores"], domain="ai.onnx.ml", name="trees",
                             n_targets=outputs, post_transform="NONE", aggregate_function="SUM", **attributes)
    nodes = [helper.make_node("Concat", names, ["values"], name="values", axis=1),  # (batch, columns)
             # LightGBM reads |x| <= kZeroThreshold as 0 (it keeps rows sparse); so does the graph
             helper.make_node("Abs", ["values"], ["magnitude"], name="magnitude"),
             helper.make_node("LessOrEqual", ["magnitude", "zero_threshold"], ["tiny"], name="tiny"),
             helper.make_node("Where", ["tiny", "zero", "values"], ["columns"], name="columns"),
             trees,  # (batch, outputs) float32, summed in double
             helper.make_node("Cast", ["scores"], [OUTPUT], name="raw", to=TensorProto.DOUBLE)]
    constants = [numpy_helper.from_array(np.array(ZERO_THRESHOLD), "zero_threshold"),
                 numpy_helper.from_array(np.array(0.0), "zero")]
    output = helper.make_tensor_value_info(OUTPUT, TensorProto.DOUBLE, ["batch", outputs])
    model = helper.make_model(helper.make_graph(nodes, "modelmill_gbdt", inputs, [output], constants),
                              opset_imports=[helper.make_opsetid("", OPSET),
                                             helper.make_opsetid("ai.onnx.ml", ML_OPSET)],
                              producer_name="modelmill")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model.SerializeToString()  # type: ignore[no-any-return]


def _check_at_splits(graph: bytes, predictor: Predictor, module: Trees, ensemble: Mapping[str, list[Any]],
                     widths: list[int]) -> None:
    """Raise when the graph and the booster differ on rows at the trees' split points."""
    from modelmill.compression.graphs import check_graph

    rows = _probe_rows(module, ensemble)  # (rows, columns)
    edges = np.cumsum([0, *widths])
    inputs = [torch.from_numpy(np.ascontiguousarray(rows[:, a:b])) for a, b in zip(edges[:-1], edges[1:])]
    check = check_graph(graph, predictor, inputs)
    if not check.passed:
        raise ModelError(f"the ONNX graph of these trees differs from LightGBM by up to {check.max_abs_diff:.3g} "
                         f"on {check.rows} rows at the trees' split points (at most {check.tolerance} is allowed); "
                         "nothing was written. Fix: serve the bundle on its torch runtime (LightGBM)")


def _probe_rows(module: Trees, ensemble: Mapping[str, list[Any]]) -> np.ndarray:
    """float64 (PROBE_ROWS, columns): each column drawn from its thresholds and the doubles
    next to them, 0, ±kZeroThreshold and NaN (numbers), or its codes and NaN (categories)."""
    thresholds: dict[int, list[float]] = {}
    for feature, mode, value in zip(ensemble["nodes_featureids"], ensemble["nodes_modes"], ensemble["nodes_values"]):
        if mode != "LEAF":
            thresholds.setdefault(int(feature), []).append(float(value))
    rng = np.random.default_rng(0)
    columns = []
    for i, column in enumerate(module.columns):
        if column.kind == "category":
            pool = np.arange(max(len(column.categories), 1), dtype=np.float64)
        else:
            at = np.asarray(thresholds.get(i, []), dtype=np.float64)
            pool = np.concatenate([at, np.nextafter(at, -np.inf), np.nextafter(at, np.inf),
                                   [0.0, ZERO_THRESHOLD, -ZERO_THRESHOLD]])
        columns.append(rng.choice(np.append(pool, np.nan), size=PROBE_ROWS))
    return np.stack(columns, axis=1) if columns else np.zeros((PROBE_ROWS, 0))
