"""TreeSHAP (Lundberg et al. 2020) for ``gbdt``: LightGBM's own exact contributions
(``pred_contrib``), no other library. The baseline is the trees' expected raw score over the
training data (what the contributions start from), not one record."""

from __future__ import annotations

import numpy as np
import torch

from modelmill.errors import ModelError
from modelmill.models.gbdt import Trees


def tree_contributions(trees: Trees, inputs: list[torch.Tensor], classes: torch.Tensor) -> dict[str, np.ndarray]:
    """Per record and feature contributions to the raw score ``classes`` picks.

    Args:
        trees: The fitted gbdt module.
        inputs: The features' raw views, one (records, k) tensor each; a feature with
            several raw columns (a date's parts) gets the sum of theirs.
        classes: (records,) int64: which raw output each record's contributions explain.

    Returns:
        ``attributions`` (records, features), ``output``, ``baseline`` (the expected value)
        and ``gap`` (records,): |Σ contributions + expected value − raw score|.
    """
    if trees.booster is None:
        raise ModelError("the gbdt model is explained before it was fitted")
    x = torch.cat(inputs, dim=1).to(torch.float64).numpy()  # (records, raw columns)
    rows, columns = x.shape
    contributions = np.asarray(trees.booster.predict(x, pred_contrib=True), dtype=np.float64)
    contributions = contributions.reshape(rows, trees.outputs, columns + 1)  # per class: columns, then expected
    raw = np.asarray(trees.booster.predict(x, raw_score=True), dtype=np.float64).reshape(rows, trees.outputs)
    picked = classes.numpy()
    chosen = contributions[np.arange(rows), picked]  # (records, columns + 1)
    widths = [int(t.shape[1]) for t in inputs]
    bounds = np.cumsum([0] + widths)
    attributions = np.stack([chosen[:, bounds[i]:bounds[i + 1]].sum(axis=1) for i in range(len(widths))], axis=1)
    expected, output = chosen[:, -1], raw[np.arange(rows), picked]
    gap = np.abs(attributions.sum(axis=1) + expected - output)
    return {"attributions": attributions, "output": output, "baseline": expected, "gap": gap}
