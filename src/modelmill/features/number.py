"""Number features (zscore, minmax, robust, log1p; piecewise-linear bins); the regression
target is in ``number_target``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import pandas as pd
import torch
from torch import nn

from modelmill.config.monitoring import DriftConfig
from modelmill.config.schema import NumberFeatureConfig, OutlierConfig
from modelmill.errors import DataError
from modelmill.data.clean import outlier_bounds
from modelmill.data.values import as_numbers
from modelmill.features.base import FEATURES, Feature, FitReport, RawColumn
from modelmill.features.partials import Moments, Partial, Sketch, expect
from modelmill.features.piecewise import PiecewiseLinear
from modelmill.features.request import json_or_text, number_type
from modelmill.features.stats import DEFAULT_DRIFT, DriftResult, distribution_drift, distribution_profile

SCALED_LIMIT = 1e4


class Standardize(nn.Module):
    """Identity on already-normalised numbers; kept as a module so every feature has one."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (batch, k) -> (batch, k)
        return x


def clip(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """``np.clip(values, low, high)``, bit for bit (NaN and the sign of zero too), without the
    Python-level checks of ``np.clip``, which cost more than the work on a few values. Clip
    picks ``x > low ? x : low``, then ``y < high ? y : high``; ``maximum`` and ``minimum`` with
    the bound as their first argument pick exactly the same."""
    return np.minimum(high, np.maximum(low, values))


def plain_numbers(values: list[Any]) -> np.ndarray | None:
    """float64 of plain values when they are all numbers or missing (the values pandas would
    hold as a numeric column), else None. Booleans and numbers past int64 are left to pandas:
    a column holding them is not numeric to it."""
    out = np.empty(len(values), dtype=np.float64)
    for i, value in enumerate(values):
        if value is None:
            out[i] = math.nan
        elif isinstance(value, (float, np.floating)):
            out[i] = value if math.isfinite(value) else math.nan  # ±inf read as missing, as as_numbers does
        elif isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)) \
                and -2**63 <= value < 2**63:
            out[i] = value
        else:
            return None
    return out


def signed_log1p(values: np.ndarray) -> np.ndarray:
    return np.sign(values) * np.log1p(np.abs(values))


@dataclass(frozen=True)
class NumberPartial(Partial):
    """A shard of a number column: its missing count, the sketch of its present values, and
    their moments (raw and after ``log1p``), which stay exact when the sketch is compressed."""

    missing: int
    sketch: Sketch
    moments: Moments
    log_moments: Moments

    @classmethod
    def of(cls, values: np.ndarray) -> NumberPartial:
        present = values[~np.isnan(values)]
        return cls(int(values.size - present.size), Sketch.of(present), Moments.of(present),
                   Moments.of(signed_log1p(present)))

    def merge(self, other: NumberPartial) -> NumberPartial:
        return NumberPartial(self.missing + other.missing, self.sketch.merge(other.sketch),
                             self.moments.merge(other.moments), self.log_moments.merge(other.log_moments))


@FEATURES.register("number", config=NumberFeatureConfig)
class NumberFeature(Feature[NumberFeatureConfig]):
    """A numeric column: outliers clipped (if asked), missing values filled, then scaled."""

    raw_kind = "number"
    piecewise_in_encoder_ = False
    """Where the piecewise encoding runs: in the encoder module, per batch, for every fit now (so
    that the tensors hold one value per number, not one per bin), or in ``transform`` for a
    bundle saved before the encoder could (its state does not say; its weights are the same,
    but an ONNX graph exported from it takes the bins as its input)."""

    def outliers(self, column: pd.Series, config: OutlierConfig) -> np.ndarray | None:
        values = as_numbers(column, feature=self.name)
        bounds = outlier_bounds(values, config)
        if bounds is None:
            return None
        return np.asarray((values < bounds[0]) | (values > bounds[1]))

    def validate(self, column: pd.Series) -> None:
        as_numbers(column, feature=self.name)

    def missing(self, column: pd.Series) -> np.ndarray:
        """Missing cells, ±inf among them (read as missing everywhere: see ``as_numbers``)."""
        return np.isnan(as_numbers(column, feature=self.name))

    def fit(self, column: pd.Series) -> Self:
        values = as_numbers(column, feature=self.name)
        if np.isnan(values).all():
            raise DataError("has no values in the training split; drop it from `features`", column=self.name)
        outliers = self.cleaning.outliers
        bounds = outlier_bounds(values, outliers) if outliers.action == "clip" else None
        self.clip_ = list(bounds) if bounds else None
        self.clipped_ = int(((values < bounds[0]) | (values > bounds[1])).sum()) if bounds else 0
        if bounds:
            values = clip(values, *bounds)
        self.fill_ = self._fill_value(values)
        filled = np.where(np.isnan(values), self.fill_, values)
        self.center_, self.scale_ = self._scaling(filled)
        self.edges_ = self._bin_edges(filled) if self.config.encoding == "piecewise" else None
        self.piecewise_in_encoder_ = self.edges_ is not None
        self.fitted_ = True
        return self

    def _bin_edges(self, values: np.ndarray) -> list[float]:
        """Quantile edges of the scaled values; fewer bins when values repeat."""
        return self._edges(np.quantile(self._scale(values), self._levels()))

    def _levels(self) -> np.ndarray:
        return np.linspace(0, 1, self.config.bins + 1)

    @staticmethod
    def _edges(quantiles: np.ndarray) -> list[float]:
        edges = np.unique(quantiles)
        return edges.tolist() if edges.size >= 2 else [float(edges[0]) - 1.0, float(edges[0]) + 1.0]

    # ------------------------------------------------------------ in shards

    def partial(self, column: pd.Series, rows: np.ndarray) -> NumberPartial:
        return NumberPartial.of(as_numbers(column, feature=self.name))

    def fit_from(self, partial: Partial) -> Self:
        """``fit`` from the merged shards: the same steps on the sketch of the column (clip,
        fill, scale, bin), exact while the sketch is (see ``features.partials``)."""
        merged = expect(partial, NumberPartial, self.name)
        sketch = merged.sketch
        if sketch.n == 0:
            raise DataError("has no values in the training split; drop it from `features`", column=self.name)
        outliers = self.cleaning.outliers
        bounds = self._bounds_from(merged) if outliers.action == "clip" else None
        self.clip_ = list(bounds) if bounds else None
        self.clipped_ = sketch.count_outside(*bounds) if bounds else 0
        clipped = sketch.mapped(lambda v: clip(v, *bounds)) if bounds else sketch
        self.fill_ = self._fill_from(clipped, merged)
        filled = clipped.with_value(self.fill_, merged.missing)
        self.center_, self.scale_ = self._scaling_from(filled, merged, exact_moments=not self.clipped_)
        self.edges_ = self._edges(filled.mapped(self._scale).quantile(self._levels())) \
            if self.config.encoding == "piecewise" else None
        self.piecewise_in_encoder_ = self.edges_ is not None
        self.fitted_ = True
        return self

    def _bounds_from(self, merged: NumberPartial) -> tuple[float, float] | None:
        """``outlier_bounds`` (data.clean) of the present values, from their sketch and moments."""
        outliers = self.cleaning.outliers
        if outliers.method == "none":
            return None
        if outliers.method == "iqr":
            k = outliers.threshold if outliers.threshold is not None else 1.5
            q1, q3 = merged.sketch.quantile([0.25, 0.75])
            return float(q1 - k * (q3 - q1)), float(q3 + k * (q3 - q1))
        z = outliers.threshold if outliers.threshold is not None else 3.0
        moments = merged.sketch.moments() if merged.sketch.exact else merged.moments
        return moments.mean - z * moments.std, moments.mean + z * moments.std

    def _fill_from(self, clipped: Sketch, merged: NumberPartial) -> float:
        strategy = self.config.missing.strategy
        if strategy == "constant":
            return float(self.config.missing.value)  # type: ignore[arg-type]
        if strategy == "mean":
            # a compressed sketch's values are approximate; the moments are exact unless clipping moved values
            use_sketch = clipped.exact or self.clipped_ > 0
            return (clipped.moments() if use_sketch else merged.moments).mean
        if strategy == "mode":
            return clipped.mode()
        return clipped.median()

    def _scaling_from(self, filled: Sketch, merged: NumberPartial, *, exact_moments: bool) -> tuple[float, float]:
        """``_scaling`` of the filled values. A compressed sketch's values are approximate, so
        its means come from the exact moments (the fill a constant group merged in) unless
        clipping changed values, which the moments never saw."""
        method = self.config.normalization
        missing = merged.missing
        if method in ("zscore", "log1p"):
            log = method == "log1p"
            if filled.exact or not exact_moments:
                moments = (filled.mapped(signed_log1p) if log else filled).moments()
            else:
                fill = float(signed_log1p(np.array([self.fill_]))[0]) if log else self.fill_
                moments = (merged.log_moments if log else merged.moments).merge(Moments.constant(fill, missing))
            return moments.mean, moments.std or 1.0
        if method == "minmax":
            low, high = float(filled.values[0]), float(filled.values[-1])
            return low, (high - low) or 1.0
        if method == "robust":
            q1, median, q3 = filled.quantile([0.25, 0.5, 0.75])
            return float(median), float(q3 - q1) or 1.0
        return 0.0, 1.0

    def _scale(self, values: np.ndarray) -> np.ndarray:
        if self.config.normalization == "log1p":
            values = np.sign(values) * np.log1p(np.abs(values))
        # Bounded far outside any real data (10^4 spreads from the centre), so that an
        # absurd input such as 1e308 cannot overflow float32 into inf and NaN predictions.
        return clip((values - self.center_) / self.scale_, -SCALED_LIMIT, SCALED_LIMIT)

    def _piecewise(self, scaled: np.ndarray) -> np.ndarray:
        """(rows,) → (rows, bins): 1 for bins left of the value, the position inside its own
        bin, 0 right of it; the outer bins extend linearly beyond the training range."""
        index, position = self._bin_coordinates(scaled)
        bins = self._edge_array()[1]
        encoded = (bins[None, :] < index[:, None]).astype("float32")  # (rows, bins)
        encoded[np.arange(len(scaled)), index] = position
        return encoded

    def _bin_coordinates(self, scaled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rows,) → each value's bin and its position inside it (0 at the left edge, 1 at the
        right; below 0 or past 1 beyond the training range, in the outer bins), in float64."""
        edges, bins = self._edge_array()
        index = clip(np.searchsorted(edges, scaled, side="right") - 1, 0, len(bins) - 1)  # (rows,)
        return index, (scaled - edges[index]) / (edges[index + 1] - edges[index])

    def _edge_array(self) -> tuple[np.ndarray, np.ndarray]:
        """The fitted edges as an array and the bin numbers, made once per fitted state."""
        cached: tuple[list[float] | None, np.ndarray, np.ndarray] | None = getattr(self, "_edges_cache", None)
        if cached is None or cached[0] is not self.edges_:
            edges = np.asarray(self.edges_)
            cached = (self.edges_, edges, np.arange(len(edges) - 1))
            self._edges_cache = cached
        return cached[1], cached[2]

    def _fill_value(self, values: np.ndarray) -> float:
        strategy = self.config.missing.strategy
        if strategy == "constant":
            return float(self.config.missing.value)  # type: ignore[arg-type]
        if strategy == "mean":
            return float(np.nanmean(values))
        if strategy == "mode":
            uniques, counts = np.unique(values[~np.isnan(values)], return_counts=True)
            return float(uniques[np.argmax(counts)])
        return float(np.nanmedian(values))  # auto, median, and the fallback of "drop"

    def _scaling(self, values: np.ndarray) -> tuple[float, float]:
        method = self.config.normalization
        if method == "log1p":
            values = np.sign(values) * np.log1p(np.abs(values))
        if method in ("zscore", "log1p"):
            return float(values.mean()), float(values.std()) or 1.0
        if method == "minmax":
            low, high = float(values.min()), float(values.max())
            return low, (high - low) or 1.0
        if method == "robust":
            q1, median, q3 = np.quantile(values, [0.25, 0.5, 0.75])
            return float(median), float(q3 - q1) or 1.0
        return 0.0, 1.0

    def transform(self, column: pd.Series) -> torch.Tensor:
        self._check_fitted()
        return self._encode(as_numbers(column, feature=self.name))

    def fast_transform(self, values: list[Any]) -> torch.Tensor | None:
        self._check_fitted()
        numbers = plain_numbers(values)
        return None if numbers is None else self._encode(numbers)

    def _encode(self, values: np.ndarray) -> torch.Tensor:
        """float64 values with NaN for missing (±inf too) → (rows, width) float32: the scaled
        value; with bins, its bin coordinate (the bin's number + the position inside it), which
        the encoder turns into the piecewise encoding, or the bins themselves for a bundle that
        encodes in ``transform``; then the missing-indicator column if asked. The coordinate is
        taken in float64 here: the scaled value in float32 would merge close values of a column
        whose spread a few huge values inflate, and the model would see them in one place."""
        missing = ~np.isfinite(values)
        if self.clip_:
            values = clip(values, self.clip_[0], self.clip_[1])
        scaled = self._scale(np.where(missing, self.fill_, values))
        if self.edges_ and self.piecewise_in_encoder_:
            index, position = self._bin_coordinates(scaled)
            encoded = (index + position)[:, None]
        else:
            encoded = self._piecewise(scaled) if self.edges_ else scaled[:, None]
        if self.config.missing.indicator:
            encoded = np.concatenate([encoded, missing[:, None]], axis=1)
        return torch.from_numpy(encoded.astype("float32"))  # (rows, width)

    def encoder(self) -> nn.Module:
        if self.edges_ and self.piecewise_in_encoder_:
            return PiecewiseLinear(len(self.edges_) - 1, indicator=self.config.missing.indicator)
        return Standardize()

    @property
    def output_dim(self) -> int:
        width = len(self.edges_) - 1 if self.edges_ else 1
        return width + (1 if self.config.missing.indicator else 0)

    def raw_columns(self) -> list[RawColumn]:
        return [RawColumn(self.name, "number")]

    def raw_view(self, column: pd.Series) -> torch.Tensor:
        return torch.from_numpy(np.array(as_numbers(column, feature=self.name))[:, None])  # (rows, 1) float64

    def fast_raw_view(self, values: list[Any]) -> torch.Tensor | None:
        numbers = plain_numbers(values)
        return None if numbers is None else torch.from_numpy(numbers[:, None])

    def report(self) -> FitReport:
        self._check_fitted()
        entries: dict[str, Any] = {}
        if self.clip_:
            entries["outliers_clipped"] = self.clipped_
            entries["clip_bounds"] = [float(b) for b in self.clip_]
        entries["filled_with"] = self.fill_
        return FitReport(entries)

    def state(self) -> dict[str, Any]:
        self._check_fitted()
        return {"fill": self.fill_, "center": self.center_, "scale": self.scale_, "clip": self.clip_,
                "edges": self.edges_, "piecewise_in_encoder": self.piecewise_in_encoder_}

    def load_state(self, state: dict[str, Any]) -> None:
        self.fill_, self.center_, self.scale_ = state["fill"], state["center"], state["scale"]
        self.clip_, self.edges_ = state["clip"], state["edges"]
        self.piecewise_in_encoder_ = bool(state.get("piecewise_in_encoder", False))  # absent: from before
        self.clipped_ = 0  # a count of the training split, known only right after fitting

    def request_type(self, *, strict_values: bool) -> Any:
        return number_type()

    def example(self, profile: dict[str, Any]) -> Any:
        mean = profile.get("mean")
        return round(float(mean), 3) if isinstance(mean, (int, float)) and math.isfinite(mean) else 0.0

    def form_value(self, text: str) -> Any:
        return json_or_text(text)

    def profile(self, column: pd.Series) -> dict[str, Any]:
        return {"type": "number", **distribution_profile(as_numbers(column, feature=self.name))}

    def drift(self, reference: dict[str, Any], column: pd.Series,
              thresholds: DriftConfig = DEFAULT_DRIFT) -> DriftResult:
        return distribution_drift(self.name, reference, as_numbers(column, feature=self.name), thresholds)
