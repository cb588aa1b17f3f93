"""Statistics of columns shared by the feature types: reference histograms and the drift
measures that compare new data against them.

* Population stability index (PSI) over the reference's quantile bins: Σ (aᵢ − eᵢ)·ln(aᵢ/eᵢ)
  of the shares per bin. The usual reading: below 0.1 stable, 0.1–0.25 a moderate shift,
  above 0.25 a large one (Siddiqi, *Credit Risk Scorecards*, 2006); 0.2 is our threshold.
* Jensen–Shannon distance (base 2, so 0 … 1) between shares of categories; 0.1 is the
  threshold Evidently and others use by default for categorical columns.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PSI_THRESHOLD = 0.2
JS_THRESHOLD = 0.1
_FLOOR = 1e-4  # share given to an empty bin, so that the logarithms stay finite


@dataclass(frozen=True)
class DriftResult:
    """How far a column of new data moved from its reference profile.

    Attributes:
        feature: the column.
        statistic: which measure ``value`` is (``psi``, ``jensen_shannon``, …).
        value: the measure; None when the reference or the new data hold nothing to compare.
        threshold: ``value`` above this counts as drift.
        drifted: whether it does.
        details: the numbers behind it (missing rates, means, shares …), JSON-ready.
    """

    feature: str
    statistic: str
    value: float | None
    threshold: float
    drifted: bool
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def measured(cls, feature: str, statistic: str, value: float | None, threshold: float,
                 **details: Any) -> DriftResult:
        drifted = value is not None and math.isfinite(value) and value > threshold
        return cls(feature, statistic, value, threshold, drifted, details)


def histogram_profile(values: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Quantile-binned histogram of the present values (edges from the data itself)."""
    present = values[~np.isnan(values)]
    if present.size == 0:
        return {"edges": [], "counts": []}
    edges = np.unique(np.quantile(present, np.linspace(0, 1, bins + 1)))
    counts, _ = np.histogram(present, bins=edges) if edges.size > 1 else (np.array([present.size]), edges)
    return {"edges": edges.tolist(), "counts": counts.tolist()}


def binned_counts(values: np.ndarray, edges: list[float]) -> np.ndarray:
    """Counts of the present values in the reference's bins; values outside the reference
    range fall into the outer bins (a shift there is what PSI should see)."""
    present = values[~np.isnan(values)]
    if len(edges) < 2:
        return np.array([present.size], dtype=np.float64)
    inner = np.asarray(edges[1:-1], dtype=np.float64)
    index = np.searchsorted(inner, present, side="right")  # bin i holds edges[i] <= v < edges[i+1]
    return np.bincount(index, minlength=len(edges) - 1).astype(np.float64)


def psi(reference_counts: np.ndarray, counts: np.ndarray) -> float | None:
    """Population stability index of two count vectors over the same bins."""
    if reference_counts.sum() <= 0 or counts.sum() <= 0:
        return None
    expected = np.maximum(reference_counts / reference_counts.sum(), _FLOOR)
    actual = np.maximum(counts / counts.sum(), _FLOOR)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def histogram_psi(reference: Mapping[str, Any], values: np.ndarray) -> float | None:
    """PSI of ``values`` against a :func:`histogram_profile`."""
    edges = list(reference.get("edges") or [])
    if not edges:
        return None
    counts = np.asarray(reference["counts"], dtype=np.float64)
    return psi(counts, binned_counts(values, edges))


def jensen_shannon(reference: Mapping[str, float], current: Mapping[str, float]) -> float | None:
    """Jensen–Shannon distance (base 2) between two share tables (keys: categories)."""
    keys = sorted(set(reference) | set(current))
    p = np.array([max(float(reference.get(k, 0.0)), 0.0) for k in keys])
    q = np.array([max(float(current.get(k, 0.0)), 0.0) for k in keys])
    if p.sum() <= 0 or q.sum() <= 0:
        return None
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def divergence(a: np.ndarray) -> float:
        present = a > 0
        return float(np.sum(a[present] * np.log2(a[present] / m[present])))

    return math.sqrt(max((divergence(p) + divergence(q)) / 2, 0.0))


def shares_with_other(frequencies: Mapping[str, float]) -> dict[str, float]:
    """Shares of the listed categories plus ``<other>`` for the rest (profiles keep the top
    100), so both sides of a comparison sum to one."""
    shares = {str(k): float(v) for k, v in frequencies.items()}
    rest = 1.0 - sum(shares.values())
    if rest > 1e-9:
        shares["<other>"] = rest
    return shares
