"""The report's plot of a recommender: its ranking metrics at each list length beside the
popularity floor's, on the same held-out interactions (a popularity model alone: it is its own floor)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["ranking_plots"]

METRICS = ("recall", "ndcg", "map")


def ranking_plots(metrics: dict[str, Any], floor: dict[str, Any] | None, ks: list[int], *,
                  model: str) -> dict[str, bytes]:
    """PNG bytes by file name: ``ranking.png``, grouped bars of recall, NDCG and MAP at each k,
    the model's beside the popularity floor's (None: the model's alone)."""
    labels = [f"{name}@{k}" for k in ks for name in METRICS if f"{name}@{k}" in metrics]
    if not labels:
        return {}
    figure = Figure(figsize=(max(5.0, 1.2 * len(labels) + 2), 3.4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    at = np.arange(len(labels))
    width = 0.38 if floor is not None else 0.6
    axes.bar(at - width / 2 if floor is not None else at, [metrics[label] for label in labels], width,
             color="#0969da", label=model)
    if floor is not None:
        axes.bar(at + width / 2, [floor.get(label, np.nan) for label in labels], width, color="#8c959f",
                 label="popularity (floor)")
    axes.set_xticks(at, labels, fontsize=9)
    axes.set_ylabel("on the held-out interactions")
    axes.set_title("Ranking metrics, each user's latest interactions held out", fontsize=10)
    axes.legend(fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return {"ranking.png": buffer.getvalue()}
