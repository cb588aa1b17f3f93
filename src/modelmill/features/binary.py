"""Binary features (0/1) and the binary-classification target."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import pandas as pd
import torch
from torch import nn

from modelmill.config.monitoring import DriftConfig
from modelmill.config.schema import BinaryFeatureConfig
from modelmill.config.targets import BinaryTargetConfig
from modelmill.errors import DataError
from modelmill.data.values import as_strings
from modelmill.features.base import FEATURES, TARGETS, Feature, FitReport, Predictions, RawColumn, Target, most_common
from modelmill.features.category import balanced_weights, class_weight_vector, plain_strings
from modelmill.features.calibration import Calibrator
from modelmill.features.partials import Counts, Partial, expect
from modelmill.features.request import binary_type, json_or_text
from modelmill.features.stats import DEFAULT_DRIFT, DriftResult, share_drift

_TRUTHY = ("true", "yes", "y", "t", "1", "positive", "pos")


def binary_strings(column: pd.Series) -> pd.Series:
    """Canonical strings, so that 1, 1.0, "1" and True from a request all mean the same."""
    if pd.api.types.is_bool_dtype(column):
        return column.map({True: "true", False: "false"}).astype("string")
    if pd.api.types.is_numeric_dtype(column):
        numbers = pd.to_numeric(column, errors="coerce")
        whole = numbers.dropna().mod(1).eq(0).all()
        return (numbers.astype("Int64") if whole else numbers).astype("string")
    return as_strings(column)


def pick_positive(values: list[str], configured: str | None, *, column: str) -> tuple[str, str]:
    """(negative, positive): the configured one, else true/yes/1, else the later in sort order."""
    if len(values) != 2:
        shown = ", ".join(values[:5])
        if len(values) < 2:
            raise DataError(
                f"has a single value ({shown or 'none'}) in the training split: nothing to learn from it",
                column=column,
            )
        raise DataError(
            f"is declared binary but has {len(values)} distinct values ({shown}...). "
            "Fix: declare it as `type: category`",
            column=column,
        )
    ordered = sorted(values)
    if configured is not None:
        if configured not in values:
            raise DataError(f"positive value {configured!r} is not among its values {ordered}", column=column)
        positive = configured
    else:
        truthy = [v for v in ordered if v.lower() in _TRUTHY]
        positive = truthy[0] if len(truthy) == 1 else ordered[1]
    negative = ordered[0] if ordered[1] == positive else ordered[1]
    return negative, positive


@dataclass(frozen=True)
class BinaryPartial(Partial):
    """A shard of a binary column: counts of its canonical strings, and of its numbers kept as
    numbers (``binary_strings`` writes 1 as "1" or "1.0" by whether the *whole* column holds
    only whole numbers, which one shard cannot tell)."""

    strings: Counts
    numbers: Counts  # keys: repr of the float

    @classmethod
    def of(cls, column: pd.Series, rows: np.ndarray) -> BinaryPartial:
        if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            numbers = pd.to_numeric(column, errors="coerce").astype("float64")
            keys = [None if np.isnan(v) else repr(float(v)) for v in numbers.tolist()]
            return cls(Counts(), Counts.of(keys, rows))
        values = binary_strings(column)
        return cls(Counts.of([None if v is pd.NA else str(v) for v in values.tolist()], rows), Counts())

    def merge(self, other: BinaryPartial) -> BinaryPartial:
        return BinaryPartial(self.strings.merge(other.strings), self.numbers.merge(other.numbers))

    def counts(self) -> Counts:
        """The counts of the canonical strings of the whole column."""
        if not self.numbers.table:
            return self.strings
        numbers = pd.Series([float(key) for key in self.numbers.table], dtype="float64")
        # the very conversion of binary_strings, on the distinct numbers of the whole column
        strings = binary_strings(numbers).tolist()
        table: dict[str, tuple[int, int]] = {}
        for text, (count, first) in zip(strings, self.numbers.table.values()):
            seen = table.get(str(text))
            table[str(text)] = (count, first) if seen is None else (seen[0] + count, min(seen[1], first))
        return self.strings.merge(Counts(table))


def to_codes(values: pd.Series, negative: str, positive: str) -> np.ndarray:
    """1.0 for positive, 0.0 for negative, NaN for anything else (missing or unseen)."""
    mapped = values.map({positive: 1.0, negative: 0.0})
    return mapped.to_numpy(dtype="float64", na_value=np.nan)


@FEATURES.register("binary", config=BinaryFeatureConfig)
class BinaryFeature(Feature[BinaryFeatureConfig]):
    raw_kind = "number"

    def fit(self, column: pd.Series) -> Self:
        values = binary_strings(column)
        distinct = [str(v) for v in values.dropna().unique()]
        self.negative_, self.positive_ = pick_positive(distinct, self.config.positive, column=self.name)
        strategy = self.config.missing.strategy
        if strategy == "constant":
            fill = str(self.config.missing.value)
        else:
            fill = most_common(values) or self.negative_
        self.fill_ = 1.0 if fill == self.positive_ else 0.0
        self.fitted_ = True
        return self

    def partial(self, column: pd.Series, rows: np.ndarray) -> BinaryPartial:
        return BinaryPartial.of(column, rows)

    def fit_from(self, partial: Partial) -> Self:
        """``fit`` from the merged counts: the same two values and fill (ties as ``value_counts``)."""
        counts = expect(partial, BinaryPartial, self.name).counts()
        self.negative_, self.positive_ = pick_positive(counts.in_order(), self.config.positive, column=self.name)
        fill = str(self.config.missing.value) if self.config.missing.strategy == "constant" \
            else counts.most_common() or self.negative_
        self.fill_ = 1.0 if fill == self.positive_ else 0.0
        self.fitted_ = True
        return self

    def transform(self, column: pd.Series) -> torch.Tensor:
        self._check_fitted()
        return self._encode(to_codes(binary_strings(column), self.negative_, self.positive_))

    def fast_transform(self, values: list[Any]) -> torch.Tensor | None:
        codes = self._plain_codes(values)
        return None if codes is None else self._encode(codes)

    def _plain_codes(self, values: list[Any]) -> np.ndarray | None:
        """:func:`to_codes` of a short column of strings or missing values (which pandas holds
        as strings, not bools or numbers); None for other values."""
        self._check_fitted()
        strings = plain_strings(values)
        if strings is None:
            return None
        codes = {self.positive_: 1.0, self.negative_: 0.0}
        return np.array([codes.get(v, np.nan) if v is not None else np.nan for v in strings], dtype="float64")

    def _encode(self, codes: np.ndarray) -> torch.Tensor:
        missing = np.isnan(codes)
        filled = np.where(missing, self.fill_, codes)
        columns = [filled, missing.astype("float64")] if self.config.missing.indicator else [filled]
        return torch.from_numpy(np.stack(columns, axis=1).astype("float32"))  # (rows, 1 or 2)

    def encoder(self) -> nn.Module:
        return nn.Identity()

    @property
    def output_dim(self) -> int:
        return 2 if self.config.missing.indicator else 1

    def raw_columns(self) -> list[RawColumn]:
        return [RawColumn(self.name, "number")]

    def raw_view(self, column: pd.Series) -> torch.Tensor:
        codes = to_codes(binary_strings(column), self.negative_, self.positive_)
        return torch.from_numpy(np.array(codes)[:, None])  # (rows, 1) float64, a writable copy

    def fast_raw_view(self, values: list[Any]) -> torch.Tensor | None:
        codes = self._plain_codes(values)
        return None if codes is None else torch.from_numpy(codes[:, None])

    def state(self) -> dict[str, Any]:
        self._check_fitted()
        return {"negative": self.negative_, "positive": self.positive_, "fill": self.fill_}

    def load_state(self, state: dict[str, Any]) -> None:
        self.negative_, self.positive_, self.fill_ = state["negative"], state["positive"], state["fill"]

    def report(self) -> FitReport:
        return FitReport({"filled_with": self.fill_})

    def schema(self) -> dict[str, Any]:
        self._check_fitted()
        return {**super().schema(), "values": [self.negative_, self.positive_]}

    def request_type(self, *, strict_values: bool) -> Any:
        return binary_type([str(self.negative_), str(self.positive_)])

    def example(self, profile: dict[str, Any]) -> Any:
        allowed = [str(self.negative_), str(self.positive_)]
        if set(allowed) == {"false", "true"}:
            return True
        return int(allowed[-1]) if set(allowed) == {"0", "1"} else allowed[-1]

    def form_value(self, text: str) -> Any:
        return json_or_text(text)

    def profile(self, column: pd.Series) -> dict[str, Any]:
        codes = to_codes(binary_strings(column), self.negative_, self.positive_)
        present = codes[~np.isnan(codes)]
        return {
            "type": "binary",
            "missing_rate": float(np.isnan(codes).mean()) if codes.size else 0.0,
            "count": int(present.size),
            "positive_rate": float(present.mean()) if present.size else None,
        }

    def drift(self, reference: dict[str, Any], column: pd.Series,
              thresholds: DriftConfig = DEFAULT_DRIFT) -> DriftResult:
        codes = to_codes(binary_strings(column), self.negative_, self.positive_)
        present = codes[~np.isnan(codes)]
        expected = reference.get("positive_rate")
        shares = {} if expected is None else {"positive": float(expected), "negative": 1 - float(expected)}
        counts = {"positive": int(present.sum()), "negative": int(present.size - present.sum())}
        return share_drift(self.name, shares, counts, thresholds, reference_rows=reference.get("count"),
                           rows=int(codes.size), missing_rate=float(np.isnan(codes).mean()) if codes.size else 0.0,
                           reference_missing_rate=reference.get("missing_rate"),
                           positive_rate=float(present.mean()) if present.size else None,
                           reference_positive_rate=expected)


class WeightedBCE(nn.Module):
    """Binary cross-entropy on logits with an optional weight per class."""

    def __init__(self, weights: list[float] | None) -> None:
        super().__init__()
        self.class_weights: torch.Tensor
        self.register_buffer("class_weights", torch.tensor(weights or [1.0, 1.0], dtype=torch.float32))

    def forward(self, raw: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = raw.reshape(-1)  # (batch,)
        losses = nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
        weights = self.class_weights[target.long()]
        return (losses * weights).sum() / weights.sum()


@TARGETS.register("binary", config=BinaryTargetConfig)
class BinaryTarget(Target[BinaryTargetConfig]):
    """Binary classification: one logit, P(positive) through a sigmoid."""

    task = "binary"

    def fit(self, column: pd.Series) -> Self:
        values = binary_strings(column)
        distinct = [str(v) for v in values.dropna().unique()]
        self.negative_, self.positive_ = pick_positive(distinct, self.config.positive, column=self.name)
        codes = to_codes(values, self.negative_, self.positive_)
        present = codes[~np.isnan(codes)].astype("int64")
        self.weights_ = class_weight_vector(present, self.class_names, self.config.class_weights, column=self.name)
        self.decide(None, None)
        self.fitted_ = True
        return self

    def partial(self, column: pd.Series, rows: np.ndarray) -> BinaryPartial:
        return BinaryPartial.of(column, rows)

    def fit_from(self, partial: Partial) -> Self:
        """``fit`` from the merged counts of the two values."""
        counts = expect(partial, BinaryPartial, self.name).counts()
        self.negative_, self.positive_ = pick_positive(counts.in_order(), self.config.positive, column=self.name)
        setting = self.config.class_weights
        self.weights_ = balanced_weights(np.array([counts.table[v][0] for v in self.class_names])) \
            if setting == "balanced" else \
            class_weight_vector(np.empty(0, dtype=np.int64), self.class_names, setting, column=self.name)
        self.decide(None, None)
        self.fitted_ = True
        return self

    def decide(self, threshold: float | None, calibrator: Calibrator | None) -> None:
        """Set what was chosen on held-out predictions: the threshold (None: the configured
        one, or 0.5 until one is chosen) and the calibration map."""
        configured = self.config.threshold
        self.threshold_ = threshold if threshold is not None else configured if isinstance(configured, float) else 0.5
        self.calibrator_ = calibrator

    def positive_probability(self, raw: torch.Tensor) -> np.ndarray:
        """P(positive) of raw outputs, calibrated when a map was fitted."""
        positive = torch.sigmoid(raw.detach().double().reshape(-1)).cpu().numpy()
        return self.calibrator_.apply(positive) if self.calibrator_ is not None else positive

    @property
    def class_names(self) -> list[str]:
        return [self.negative_, self.positive_]

    def codes(self, column: pd.Series) -> np.ndarray:
        codes = to_codes(binary_strings(column), self.negative_, self.positive_)
        return np.where(np.isnan(codes), -1, codes).astype("int64")  # -1 for missing/unseen

    def transform(self, column: pd.Series) -> torch.Tensor:
        self._check_fitted()
        return torch.from_numpy(self.codes(column).astype("float32"))  # (rows,)

    @property
    def output_size(self) -> int:
        return 1

    @property
    def class_weights(self) -> list[float] | None:
        return self.weights_

    def loss(self) -> nn.Module:
        return WeightedBCE(self.weights_)

    def postprocess(self, raw: torch.Tensor) -> Predictions:
        positive = self.positive_probability(raw)
        codes = (positive >= self.threshold_).astype("int64")
        labels = np.asarray(self.class_names, dtype=object)[codes]
        proba = np.stack([1 - positive, positive], axis=1)  # (rows, 2)
        return Predictions(labels=labels, codes=codes, proba=proba, class_names=self.class_names)

    def state(self) -> dict[str, Any]:
        self._check_fitted()
        return {"negative": self.negative_, "positive": self.positive_, "weights": self.weights_,
                "threshold": self.threshold_,
                "calibration": self.calibrator_.state() if self.calibrator_ is not None else None}

    def load_state(self, state: dict[str, Any]) -> None:
        self.negative_, self.positive_ = state["negative"], state["positive"]
        self.weights_ = state["weights"]
        calibration = state.get("calibration")  # bundles written before calibration have neither
        self.decide(state.get("threshold"), Calibrator.from_state(calibration) if calibration else None)
