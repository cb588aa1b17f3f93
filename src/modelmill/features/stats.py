"""Statistics of columns shared by the feature types: reference profiles and the drift
measures that compare new data against them.

* Normalised Wasserstein distance (numbers, dates, text lengths): the earth mover's distance
  between the reference's and the window's distributions, in units of the reference's
  standard deviation; 0.1 is the threshold (Evidently's default for large samples). Unlike a
  test statistic it does not grow with the sample: measured on normal data, a KS test at
  n = 100,000 flags a 0.02σ shift every time, while this distance never exceeds 0.1 there
  and still exceeds it for a 0.5σ shift at n = 1,000 every time.
* Jensen–Shannon distance (base 2, so 0 … 1) between shares of categories; 0.1 is the
  threshold (Evidently's default for categorical columns). Categories the window is too
  small to see five times are pooled first, as for a chi-square test, so that rare
  categories do not make noise look like drift in small windows.
* Population stability index (PSI) over the reference's quantile bins: Σ (aᵢ − eᵢ)·ln(aᵢ/eᵢ)
  of the shares per bin, reported beside the distance (the usual reading: below 0.1 stable,
  0.1–0.25 a moderate shift, above 0.25 a large one; Siddiqi, *Credit Risk Scorecards*).

An effect above its threshold raises an alarm only when it is also beyond chance for the
window's size (a chi-square test over the same bins at ``alpha``): at large samples the
effect size decides, at small ones the test keeps sampling noise from crying wolf.
"""


from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelmill.config.monitoring import DriftConfig

PSI_THRESHOLD = 0.2
JS_THRESHOLD = 0.1
WASSERSTEIN_THRESHOLD = 0.1
QUANTILES = 200  # reference quantiles kept per column: the distance's error is far below 0.01σ
_FLOOR = 1e-4  # share given to an empty bin, so that the logarithms stay finite
OTHER = "<other>"  # the categories a profile or a pooled comparison does not list one by one
_MIN_EXPECTED = 5.0  # the chi-square rule: a bin the window expects fewer rows in is pooled


DEFAULT_DRIFT = DriftConfig()  # the thresholds when no config names them (monitoring.drift)


@dataclass(frozen=True)
class DriftResult:
    """How far a column of new data moved from its reference profile.

    Attributes:
        feature: the column.
        statistic: which measure ``value`` is (``wasserstein``, ``jensen_shannon``, …).
        value: the measure; None when the reference or the new data hold nothing to compare.
        threshold: ``value`` above this is a large enough change.
        drifted: whether any alarm fired for the column.
        details: the numbers behind it (missing rates, means, shares, PSI …), JSON-ready.
        p_value: the chi-square test's p-value of "no change", when one was made.
        alarms: why it drifted: ``distribution``, ``missing``, ``out_of_range``,
            ``unseen``, ``unknown_tokens`` (empty when it did not).
    """

    feature: str
    statistic: str
    value: float | None
    threshold: float
    drifted: bool
    details: dict[str, Any] = field(default_factory=dict)
    p_value: float | None = None
    alarms: tuple[str, ...] = ()
    divergence: float | None = None

    @property
    def score(self) -> float:
        """How much the column moved on one scale for every column type, so that columns
        rank by it: the Jensen–Shannon distance between the binned distributions (quantile
        bins of numbers, categories as pooled, missing values a bin of their own). When the
        window is reweighted by one column's values (more old people, more of one job), every
        other column's distribution is that column's passed through a fixed channel, so by the
        data-processing inequality none moves further than the column that was shifted.
        A feature type without bins scores its value in units of its threshold, scaled to
        the Jensen–Shannon threshold."""
        if self.value is not None and not math.isfinite(self.value):
            return 1.0  # a constant training column that moved: as far as the scale goes
        if self.divergence is not None:
            return self.divergence
        if self.value is None or self.threshold <= 0:
            return 0.0
        return self.value / self.threshold * JS_THRESHOLD

    @classmethod
    def measured(cls, feature: str, statistic: str, value: float | None, threshold: float, *,
                 p_value: float | None = None, thresholds: DriftConfig = DEFAULT_DRIFT,
                 missing_rate: float | None = None, reference_missing_rate: float | None = None,
                 rows: int | None = None, extra_alarms: tuple[str, ...] = (), divergence: float | None = None,
                 **details: Any) -> DriftResult:
        """The verdict: the distribution moved when the effect passes ``threshold`` and
        (when a test was made) the test rejects at ``thresholds.alpha``; the missing-value
        share alarms when it rose by more than ``missing_rise``, beyond chance for the
        window's ``rows``; ``extra_alarms`` are the feature type's own checks."""
        alarms = []
        large = value is not None and (not math.isfinite(value) or value > threshold)
        if large and (p_value is None or p_value < thresholds.alpha):
            alarms.append("distribution")
        expected_missing = float(reference_missing_rate or 0.0)
        if missing_rate is not None and missing_rate - expected_missing > thresholds.missing_rise \
                and (rows is None or share_rose(round(missing_rate * rows), rows, expected_missing, thresholds.alpha)):
            alarms.append("missing")
        alarms.extend(extra_alarms)
        if missing_rate is not None:
            details = {"missing_rate": missing_rate, "reference_missing_rate": reference_missing_rate, **details}
        return cls(feature, statistic, value, threshold, bool(alarms), details, p_value, tuple(alarms), divergence)


# ------------------------------------------------------------------ profiles


def histogram_profile(values: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Quantile-binned histogram of the present values (edges from the data itself). A value
    that holds several quantiles (the zeros of a mostly-zero column) gets a bin of its own,
    so that a change of its share can be seen and tested."""
    present = values[~np.isnan(values)]
    if present.size == 0:
        return {"edges": [], "counts": []}
    quantiles = np.quantile(present, np.linspace(0, 1, bins + 1))
    edges = np.unique(quantiles)
    masses = [value for value in edges[:-1] if np.count_nonzero(quantiles == value) > 1]
    if masses:
        edges = np.unique(np.concatenate([edges, np.nextafter(np.asarray(masses), np.inf)]))
    counts, _ = np.histogram(present, bins=edges) if edges.size > 1 else (np.array([present.size]), edges)
    return {"edges": edges.tolist(), "counts": counts.tolist()}


def distribution_profile(values: np.ndarray) -> dict[str, Any]:
    """What the distance and the range check of a numeric column need: the missing share,
    mean, spread, range, ``QUANTILES`` mid-point quantiles and the quantile histogram."""
    values = np.asarray(values, dtype=np.float64)
    present = values[~np.isnan(values)]
    profile: dict[str, Any] = {
        "missing_rate": float(np.isnan(values).mean()) if values.size else 0.0,
        "mean": float(present.mean()) if present.size else None,
        "std": float(present.std()) if present.size else None,
        "min": float(present.min()) if present.size else None,
        "max": float(present.max()) if present.size else None,
        "histogram": histogram_profile(values),
    }
    if present.size:
        profile["quantiles"] = np.quantile(present, (np.arange(QUANTILES) + 0.5) / QUANTILES).tolist()
    return profile


def distribution_drift(feature: str, reference: Mapping[str, Any], values: np.ndarray,
                       thresholds: DriftConfig = DEFAULT_DRIFT, *, missing_rate: float | None = None,
                       reference_missing_rate: float | None = None, extra_alarms: tuple[str, ...] = (),
                       range_alarm: bool = True, **details: Any) -> DriftResult:
    """A numeric column against its :func:`distribution_profile`: the normalised
    Wasserstein distance (PSI for a profile without quantiles), tested over the quantile
    bins; the share of values outside the training range (an alarm unless ``range_alarm`` is
    off); the missing share."""
    values = np.asarray(values, dtype=np.float64)
    present = values[~np.isnan(values)]
    histogram = reference.get("histogram") or {}
    psi_value = histogram_psi(histogram, values)
    p_value = binned_p_value(histogram, values)
    rows = int(values.size)
    extra: list[str] = list(extra_alarms)
    low, high = reference.get("min"), reference.get("max")
    outside = None
    if low is not None and high is not None and present.size:
        outside = float(((present < low) | (present > high)).mean())
        if range_alarm and outside > thresholds.out_of_range:
            extra.append("out_of_range")
    window_missing = (float(np.isnan(values).mean()) if values.size else 0.0) if missing_rate is None else missing_rate
    expected_missing = reference.get("missing_rate") if missing_rate is None else reference_missing_rate
    divergence = None
    edges = list(histogram.get("edges") or [])
    if edges and values.size:
        divergence = binned_divergence(np.asarray(histogram["counts"], dtype=np.float64), float(expected_missing or 0.0),
                                       binned_counts(present, edges), window_missing)
    quantiles = reference.get("quantiles")
    if quantiles:
        statistic, threshold = "wasserstein", thresholds.wasserstein
        value = normalised_wasserstein(quantiles, reference.get("std"), present)
    else:
        statistic, threshold, value = "psi", thresholds.psi, psi_value
    return DriftResult.measured(
        feature, statistic, value, threshold, p_value=p_value, thresholds=thresholds,
        missing_rate=window_missing, reference_missing_rate=expected_missing, rows=rows, extra_alarms=tuple(extra),
        divergence=divergence,
        psi=psi_value, out_of_range_share=outside,
        mean=float(present.mean()) if present.size else None, reference_mean=reference.get("mean"), **details)


def normalised_wasserstein(quantiles: list[float], std: float | None, present: np.ndarray) -> float | None:
    """Wasserstein-1 distance between the reference (its mid-point quantiles) and the
    present values, divided by the reference's standard deviation."""
    from scipy.stats import wasserstein_distance

    if present.size == 0 or not quantiles:
        return None
    distance = float(wasserstein_distance(np.asarray(quantiles, dtype=np.float64), present))
    scale = float(std or 0.0)
    if scale <= 0:  # a constant training column: any move at all is infinitely large
        return 0.0 if distance == 0 else math.inf
    return distance / scale


# ------------------------------------------------------------------ measures


def binned_counts(values: np.ndarray, edges: list[float]) -> np.ndarray:
    """Counts of the present values in the reference's bins; values outside the reference
    range fall into the outer bins (a shift there is what PSI should see)."""
    present = values[~np.isnan(values)]
    if len(edges) < 2:
        return np.array([present.size], dtype=np.float64)
    inner = np.asarray(edges[1:-1], dtype=np.float64)
    index = np.searchsorted(inner, present, side="right")  # bin i holds edges[i] <= v < edges[i+1]
    return np.bincount(index, minlength=len(edges) - 1).astype(np.float64)


def binned_divergence(reference_counts: np.ndarray, reference_missing: float, counts: np.ndarray,
                      missing: float) -> float | None:
    """Jensen–Shannon distance between two binned distributions, the missing values a bin
    of their own (:attr:`DriftResult.score`); a window of nothing but missing values too."""
    if reference_counts.sum() <= 0 and reference_missing <= 0:
        return None
    present = counts / counts.sum() if counts.sum() > 0 else np.zeros_like(counts, dtype=np.float64)
    reference_present = reference_counts / reference_counts.sum() if reference_counts.sum() > 0 \
        else np.zeros_like(reference_counts, dtype=np.float64)
    expected = np.r_[reference_missing, (1 - reference_missing) * reference_present]
    actual = np.r_[missing, (1 - missing) * present]
    if actual.sum() <= 0:  # no rows at all
        return None
    return jensen_shannon({str(i): v for i, v in enumerate(expected)}, {str(i): v for i, v in enumerate(actual)})


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


def binned_p_value(reference: Mapping[str, Any], values: np.ndarray) -> float | None:
    """Chi-square test of the present values' counts in a :func:`histogram_profile`'s bins
    against the reference's counts there."""
    edges = list(reference.get("edges") or [])
    if len(edges) < 2:
        return None
    return chi_square_p(np.asarray(reference["counts"], dtype=np.float64), binned_counts(values, edges))


def chi_square_p(reference_counts: np.ndarray, counts: np.ndarray) -> float | None:
    """p-value of "the window's values come from the reference's distribution": a two-sample
    chi-square test of the 2 × k table of counts (the reference is a sample too, so its own
    noise is allowed for), with the bins the window expects fewer than five rows in pooled
    into one; None when fewer than two bins remain (nothing to test)."""
    from scipy.stats import chi2_contingency

    total, reference_total = float(counts.sum()), float(reference_counts.sum())
    if total <= 0 or reference_total <= 0:
        return None
    small = reference_counts / reference_total * total < _MIN_EXPECTED
    reference_bins = list(reference_counts[~small])
    window_bins = list(counts[~small])
    if small.any():
        reference_bins.append(float(reference_counts[small].sum()))
        window_bins.append(float(counts[small].sum()))
    table = np.array([reference_bins, window_bins], dtype=np.float64)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return None
    return float(chi2_contingency(table, correction=False).pvalue)


def share_rose(count: int, rows: int, expected: float, alpha: float) -> bool:
    """Whether ``count`` of ``rows`` is more than a share ``expected`` explains (one-sided
    binomial test at ``alpha``): a rise of a missing or unseen share beyond chance."""
    from scipy.stats import binomtest

    if rows <= 0 or count <= 0:
        return False
    if expected <= 0:
        return True
    if expected >= 1:
        return False
    return bool(binomtest(int(count), int(rows), float(expected), alternative="greater").pvalue < alpha)


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
        shares[OTHER] = rest
    return shares



def share_drift(feature: str, reference: Mapping[str, float], counts: Mapping[str, int],
                thresholds: DriftConfig = DEFAULT_DRIFT, *, reference_rows: float | None = None,
                **measured: Any) -> DriftResult:
    """Categories (or the two values of a binary) of a window against the reference's
    shares (of ``reference_rows`` present values): Jensen–Shannon distance and a chi-square
    test over the same categories, those the window expects fewer than five times pooled
    into ``<other>`` on both sides."""
    total = float(sum(counts.values()))
    expected = dict(reference)
    pooled_reference: dict[str, float] = {}
    pooled_counts: dict[str, float] = {}
    for key, share in expected.items():
        name = key if share * total >= _MIN_EXPECTED and key != OTHER else OTHER
        pooled_reference[name] = pooled_reference.get(name, 0.0) + share
    for key, count in counts.items():
        name = key if key in pooled_reference and key != OTHER else OTHER
        pooled_counts[name] = pooled_counts.get(name, 0.0) + float(count)
    keys = sorted(set(pooled_reference) | set(pooled_counts))
    reference_shares = np.array([pooled_reference.get(k, 0.0) for k in keys])
    window_counts = np.array([pooled_counts.get(k, 0.0) for k in keys])
    value = p_value = divergence = None
    if total > 0:
        value = jensen_shannon(pooled_reference, {k: v / total for k, v in pooled_counts.items()})
        # shares times the reference's rows are its counts (profiles from before they kept
        # the rows: a large reference, as if its shares were exact)
        scale = float(reference_rows) if reference_rows else 1e9
        p_value = chi_square_p(reference_shares * scale, window_counts)
    if pooled_reference:
        divergence = binned_divergence(reference_shares, float(measured.get("reference_missing_rate") or 0.0),
                                       window_counts, float(measured.get("missing_rate") or 0.0))
    return DriftResult.measured(feature, "jensen_shannon", value, thresholds.jensen_shannon,
                                p_value=p_value, thresholds=thresholds, divergence=divergence, **measured)
