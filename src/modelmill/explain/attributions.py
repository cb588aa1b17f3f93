"""Per-record attributions per input column, in the model's raw output space: the logit of
the positive class (binary), the predicted class's score (classes), the standardised value
(numbers). Each record's attributions add up to its output minus the baseline's output, up
to the ``gap`` reported with them.

Which method explains which model:

- ``integrated_gradients``: torch models made of feature encoders, a body and a head (mlp,
  linear), through Captum, from the baseline record of :mod:`modelmill.explain.baseline`;
  see :mod:`modelmill.explain.gradients`.
- ``treeshap``: gbdt, LightGBM's exact TreeSHAP, from the trees' expected value.
- ``linear``: tfidf_logistic, a linear layer over each column's fixed encoding: additive
  over the columns, so switching each column alone from the baseline's value to the
  record's gives its exact attribution.
- ``shapley_sampling``: ensembles (ensemble, auto), and any model on request. An ensemble
  averages its members' *probabilities*, so its members' additive attributions (each in its
  own logit space, from its own baseline) do not add up to the ensemble's output; weighing
  them through the sigmoid would be one more approximation and would mix TreeSHAP's
  expected value with a baseline record. Permutation sampling explains the function the
  ensemble actually computes, from the same baseline record as the torch models, with
  completeness exact for every estimate; it costs ``orders × (columns + 1)`` predictions
  per record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from modelmill.data.validate import check_columns
from modelmill.errors import ConfigError, DataError, ModelError, unknown_choice
from modelmill.explain.baseline import baseline_record
from modelmill.explain.gradients import integrated_gradients
from modelmill.explain.sampling import ORDERS, shapley_sampling
from modelmill.explain.trees import tree_contributions
from modelmill.models.base import TabularNet
from modelmill.models.ensemble import EnsembleNet
from modelmill.models.gbdt import Trees
from modelmill.models.tfidf import TfidfLinear
from modelmill.predictor import Predictor, TorchRuntime

METHODS = {
    "integrated_gradients": "torch models of encoders, body and head (mlp, linear)",
    "treeshap": "gbdt",
    "linear": "models additive over their columns (tfidf_logistic)",
    "shapley_sampling": "any model, from its predictions (ensemble, auto)",
}


@dataclass
class Explanation:
    """Attributions of some records: ``attributions[r, j]`` is column ``columns[j]``'s share
    of record ``r``'s ``output − baseline``; ``gap`` is |Σ attributions − (output − baseline)|."""

    columns: list[str]
    attributions: np.ndarray  # (records, columns)
    output: np.ndarray  # (records,) the raw output explained
    baseline: np.ndarray  # (records,) the same output at the baseline
    gap: np.ndarray  # (records,)
    explained: list[str]  # (records,) which output: "logit of <positive class>", "score of <class>", …
    method: str
    steps: np.ndarray | None = None  # (records,) integral steps (IG) or column orders (sampling)
    baseline_record: dict[str, Any] | None = None  # None: TreeSHAP's expected value
    index: pd.Index = field(default_factory=lambda: pd.RangeIndex(0))

    def frame(self) -> pd.DataFrame:
        """One row per record: one column per input column, then output, baseline, gap,
        steps and what is explained (prefixed ``explain_`` where an input column has that name)."""
        table = pd.DataFrame(self.attributions, columns=self.columns, index=self.index)
        extra = {"output": self.output, "baseline": self.baseline, "gap": self.gap, "explained": self.explained}
        if self.steps is not None:
            extra["steps"] = self.steps
        for name, values in extra.items():
            table[name if name not in self.columns else f"explain_{name}"] = values
        return table

    def ranked(self, record: int) -> list[tuple[str, float]]:
        """One record's columns, largest attribution (in absolute value) first."""
        pairs = [(c, float(v)) for c, v in zip(self.columns, self.attributions[record], strict=True)]
        return sorted(pairs, key=lambda pair: -abs(pair[1]))


def attributions(predictor: Predictor, frame: pd.DataFrame, *, profile: Mapping[str, Any] | None = None,
                 steps: int | str = "auto", method: str = "auto", orders: int = ORDERS, seed: int = 0,
                 source: str = "the frame") -> Explanation:
    """Per-record attributions per input column (see the module docstring for the methods).

    Args:
        predictor: The fitted pipeline.
        frame: The records, with every input column.
        profile: The bundle's reference profile, for the baseline record (None: the profile of
            ``frame`` itself).
        steps: Integrated Gradients' steps: ``"auto"`` (raised per record until the
            completeness gap is at most 0.01) or a fixed number.
        method: ``"auto"`` (the model's own, as above) or one of :data:`METHODS`.
        orders: Column orders per record for ``shapley_sampling``.
        seed: Seed of those orders.
        source: What ``frame`` is, for error messages.

    Raises:
        ConfigError: an unknown method, or steps that are not auto or a number above 0.
        DataError: a column is missing, or there are no rows.
        ModelError: the method does not apply to this model (with those that do).
    """
    if steps != "auto" and (not isinstance(steps, int) or isinstance(steps, bool) or steps < 1):
        raise ConfigError(f"steps {steps!r} must be auto or a whole number above 0")
    names = [f.name for f in predictor.features]
    check_columns(frame, names, source=source)
    if frame.empty:
        raise DataError("0 rows to explain", source=source)
    frame = predictor.privacy.once(frame)  # a raw frame's personal values treated, once
    base = baseline_record(predictor.features, profile if profile is not None else predictor.profile(frame))
    # the baseline comes of the treated profile: the pair is treated, and never treated again
    both = predictor.privacy.mark(pd.concat([frame[names], base[names]], ignore_index=True))
    tensors = predictor.inputs(both)  # one transform, so sequences are padded alike
    inputs, baseline = [t[:-1] for t in tensors], [t[-1:] for t in tensors]
    chosen = _method(predictor, method)
    classes = _classes(predictor, inputs)
    result = _run(predictor, chosen, inputs, baseline, classes, steps=steps, orders=orders, seed=seed)
    return Explanation(columns=names, attributions=result["attributions"], output=result["output"],
                       baseline=result["baseline"], gap=result["gap"], explained=_explained(predictor, classes),
                       method=chosen, steps=result.get("steps"),
                       baseline_record=None if chosen == "treeshap" else base.iloc[0].to_dict(),
                       index=frame.index)


def _module(predictor: Predictor) -> Any:
    return predictor.runtime.module if isinstance(predictor.runtime, TorchRuntime) else None


def _method(predictor: Predictor, method: str) -> str:
    if method != "auto" and method not in METHODS:
        raise ConfigError(unknown_choice("explanation method", method, ["auto", *METHODS]))
    module = _module(predictor)
    applies = ["shapley_sampling"]
    if isinstance(module, TabularNet):
        applies.insert(0, "integrated_gradients")
    elif isinstance(module, Trees):
        applies.insert(0, "treeshap")
    elif isinstance(module, TfidfLinear):
        applies.insert(0, "linear")
    if method == "auto" and (applies[0] != "shapley_sampling" or isinstance(module, EnsembleNet)):
        return applies[0]
    if method in applies:
        return method
    kind = f"model type {predictor.config.model.type!r} on {predictor.runtime.name}"
    wanted = "has no attribution method of its own" if method == "auto" else f"cannot be explained by {method}"
    listed = "; ".join(f"{name} ({METHODS[name]})" for name in applies)
    raise ModelError(f"{kind} {wanted}. Methods that apply to it: {listed}. Fix: pass method "
                     f"{applies[0]!r} (modelmill explain --method {applies[0]})")


def _classes(predictor: Predictor, inputs: list[torch.Tensor]) -> torch.Tensor:
    """Which raw output each record's attributions explain: the predicted class's score for
    classes, the only output otherwise."""
    rows = int(inputs[0].shape[0])
    if predictor.target.output_size == 1:
        return torch.zeros(rows, dtype=torch.int64)
    return predictor.runtime.raw(inputs, predictor.lengths(inputs)).argmax(dim=1).to(torch.int64)


def _explained(predictor: Predictor, classes: torch.Tensor) -> list[str]:
    target = predictor.target
    if target.task == "binary":
        return [f"logit of {target.class_names[-1]}"] * len(classes)
    if target.task == "number":
        return [f"standardised {target.name}"] * len(classes)
    return [f"score of {target.class_names[int(c)]}" for c in classes]


def _run(predictor: Predictor, method: str, inputs: list[torch.Tensor], baseline: list[torch.Tensor],
         classes: torch.Tensor, *, steps: int | str, orders: int, seed: int) -> dict[str, np.ndarray]:
    module = _module(predictor)
    if method == "integrated_gradients":
        return integrated_gradients(module, inputs, baseline, classes, steps)
    if method == "treeshap":
        return tree_contributions(module, inputs, classes)

    def raw(tensors: list[torch.Tensor]) -> torch.Tensor:
        return predictor.runtime.raw(tensors, predictor.lengths(tensors))

    count = 1 if method == "linear" else orders
    return shapley_sampling(raw, inputs, baseline, len(predictor.features), classes, orders=count, seed=seed)
