"""Category features (vocabulary with an unknown bucket; one-hot or embedding) and the
multi-class target."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch import nn

from modelmill.config.monitoring import DriftConfig
from modelmill.config.schema import CategoryFeatureConfig
from modelmill.config.targets import CategoryTargetConfig
from modelmill.errors import DataError
from modelmill.data.values import SMALL_COLUMN, as_strings, plain_string
from modelmill.features.base import FEATURES, TARGETS, Feature, FitReport, Predictions, RawColumn, Target, most_common
from modelmill.features.calibration import Calibrator, calibrate_classes
from modelmill.features.partials import Counts, Partial, expect
from modelmill.features.request import category_type
from modelmill.features.stats import DEFAULT_DRIFT, DriftResult, share_drift, share_rose, shares_with_other

# Index 0 of every vocabulary is the bucket for unseen, rare and (by default) missing values.
UNKNOWN = "<unknown>"
ONEHOT_LIMIT = 64


def encode(values: pd.Series, vocabulary: list[str]) -> np.ndarray:
    """Strings → vocabulary index + 1 (0 for anything not in the vocabulary). Vectorised."""
    array = values.array
    if isinstance(array, pd.arrays.ArrowStringArray):  # the hash lookup of pyarrow, without copies
        found = pc.index_in(pa.array(array), value_set=pa.array(vocabulary, pa.string()))
        return np.asarray(found.fill_null(-1), dtype="int64") + 1
    codes = pd.Index(vocabulary).get_indexer(values)  # -1 where absent or missing
    return np.asarray(codes, dtype="int64") + 1


def plain_strings(values: list[Any]) -> list[str | None] | None:
    """The values as :func:`as_strings` reads a short column of them, when every value is a
    string or missing; None otherwise (numbers become strings by the dtype pandas gives
    their column, so those take the column path)."""
    if len(values) > SMALL_COLUMN or not all(v is None or isinstance(v, str) for v in values):
        return None
    return [plain_string(v) for v in values]


def class_weight_vector(
    codes: np.ndarray, names: list[str], setting: str | dict[str, float], *, column: str
) -> list[float] | None:
    """Per-class loss weights: "balanced" = n / (k · count), or given per label."""
    if setting == "none":
        return None
    if isinstance(setting, dict):
        unknown = sorted(set(setting) - set(names))
        if unknown:
            raise DataError(f"class_weights names classes not in the data: {unknown}; classes: {names}", column=column)
        return [float(setting.get(name, 1.0)) for name in names]
    return balanced_weights(np.bincount(codes, minlength=len(names)))


def balanced_weights(counts: np.ndarray) -> list[float]:
    """n / (k · count) for the ``counts`` of k classes (a class never seen counts as one)."""
    counts = np.asarray(counts).astype("float64")
    return (counts.sum() / (len(counts) * np.maximum(counts, 1))).tolist()


class OneHot(nn.Module):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, codes: torch.Tensor) -> torch.Tensor:  # (batch,) -> (batch, size)
        return nn.functional.one_hot(codes, self.size).float()


class CategoryEncoder(nn.Module):
    """One-hot or embedding of the code; a was-missing flag, if present, is appended."""

    def __init__(self, inner: nn.Module, with_indicator: bool) -> None:
        super().__init__()
        self.inner = inner
        self.with_indicator = with_indicator

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (batch,) or (batch, 2) -> (batch, dim)
        if not self.with_indicator:
            return self.inner(x)  # type: ignore[no-any-return]
        return torch.cat([self.inner(x[:, 0]), x[:, 1:].float()], dim=1)


@dataclass(frozen=True)
class CategoryPartial(Partial):
    """A shard of a category column: the counts of its present values (as strings)."""

    counts: Counts

    def merge(self, other: CategoryPartial) -> CategoryPartial:
        return CategoryPartial(self.counts.merge(other.counts))


def string_counts(values: pd.Series, rows: np.ndarray) -> Counts:
    """Counts of the present values of an ``as_strings`` column."""
    return Counts.of([None if value is pd.NA else str(value) for value in values.tolist()], rows)


@FEATURES.register("category", config=CategoryFeatureConfig)
class CategoryFeature(Feature[CategoryFeatureConfig]):
    raw_kind = "category"

    def fit(self, column: pd.Series) -> Self:
        values = as_strings(column)
        counts = values.value_counts()
        kept = counts[counts >= self.config.min_frequency].index[: self.config.max_size]
        if len(kept) == 0:
            raise DataError(
                "has no value frequent enough to keep in the training split "
                f"(min_frequency={self.config.min_frequency})",
                column=self.name,
            )
        self.vocabulary_ = sorted(str(v) for v in kept)
        self.fill_ = self._fill_value(values)
        self.fitted_ = True
        return self

    def partial(self, column: pd.Series, rows: np.ndarray) -> CategoryPartial:
        return CategoryPartial(string_counts(as_strings(column), rows))

    def fit_from(self, partial: Partial) -> Self:
        """``fit`` from the merged counts: the same vocabulary and fill, ties as ``value_counts``."""
        counts = expect(partial, CategoryPartial, self.name).counts
        frequent = [value for value, count in counts.ranked() if count >= self.config.min_frequency]
        kept = frequent[: self.config.max_size]
        if not kept:
            raise DataError(
                "has no value frequent enough to keep in the training split "
                f"(min_frequency={self.config.min_frequency})",
                column=self.name,
            )
        self.vocabulary_ = sorted(kept)
        strategy = self.config.missing.strategy
        self.fill_ = str(self.config.missing.value) if strategy == "constant" else \
            counts.most_common() if strategy in ("mode", "mean", "median") else None
        self.fitted_ = True
        return self

    def _fill_value(self, values: pd.Series) -> str | None:
        """None = missing goes to the unknown bucket (auto); else the value to fill in."""
        strategy = self.config.missing.strategy
        if strategy == "constant":
            return str(self.config.missing.value)
        if strategy in ("mode", "mean", "median"):
            return most_common(values)
        return None

    def transform(self, column: pd.Series) -> torch.Tensor:
        self._check_fitted()
        values = as_strings(column)
        missing = values.isna().to_numpy()
        if self.fill_ is not None:
            values = values.fillna(self.fill_)
        return self._stack(encode(values, self.vocabulary_), missing)

    def fast_transform(self, values: list[Any]) -> torch.Tensor | None:
        self._check_fitted()
        strings = plain_strings(values)
        if strings is None:
            return None
        index = self._index()
        missing = np.array([v is None for v in strings], dtype=bool)
        filled = [self.fill_ if v is None else v for v in strings]
        codes = np.array([index.get(v, 0) if v is not None else 0 for v in filled], dtype="int64")
        return self._stack(codes, missing)

    def _index(self) -> dict[str, int]:
        """Vocabulary entry → its code (index + 1), built once per fitted state."""
        cached: tuple[list[str], dict[str, int]] | None = getattr(self, "_index_cache", None)
        if cached is None or cached[0] is not self.vocabulary_:
            cached = (self.vocabulary_, {word: i + 1 for i, word in enumerate(self.vocabulary_)})
            self._index_cache = cached
        return cached[1]

    def _stack(self, codes: np.ndarray, missing: np.ndarray) -> torch.Tensor:
        if self.config.missing.indicator:
            return torch.from_numpy(np.stack([codes, missing.astype("int64")], axis=1))  # (rows, 2)
        return torch.from_numpy(codes)  # (rows,)

    @property
    def size(self) -> int:
        return len(self.vocabulary_) + 1

    @property
    def one_hot(self) -> bool:
        encoding = self.config.encoding
        return encoding == "onehot" or (encoding == "auto" and self.size <= ONEHOT_LIMIT)

    @property
    def embedding_dim(self) -> int:
        # fast.ai's rule of thumb for embedding sizes: 1.6 · n^0.56, capped.
        return self.config.embedding_dim or int(min(50, round(1.6 * self.size**0.56)))

    def encoder(self) -> nn.Module:
        inner: nn.Module = OneHot(self.size) if self.one_hot else nn.Embedding(self.size, self.embedding_dim)
        return CategoryEncoder(inner, self.config.missing.indicator)

    def fixed_encoder(self) -> nn.Module:
        return CategoryEncoder(OneHot(self.size), self.config.missing.indicator)

    def raw_columns(self) -> list[RawColumn]:
        self._check_fitted()
        return [RawColumn(self.name, "category", tuple(self.vocabulary_))]

    def raw_view(self, column: pd.Series) -> torch.Tensor:
        codes = encode(as_strings(column), self.vocabulary_).astype("float64") - 1
        codes[codes < 0] = np.nan  # missing, or never seen in training
        return torch.from_numpy(codes[:, None])  # (rows, 1) float64

    def fast_raw_view(self, values: list[Any]) -> torch.Tensor | None:
        self._check_fitted()
        strings = plain_strings(values)
        if strings is None:
            return None
        index = self._index()
        codes = [float(index[v] - 1) if v is not None and v in index else np.nan for v in strings]
        return torch.tensor(codes, dtype=torch.float64)[:, None]

    @property
    def output_dim(self) -> int:
        width = self.size if self.one_hot else self.embedding_dim
        return width + (1 if self.config.missing.indicator else 0)

    def state(self) -> dict[str, Any]:
        self._check_fitted()
        return {"vocabulary": self.vocabulary_, "fill": self.fill_}

    def load_state(self, state: dict[str, Any]) -> None:
        self.vocabulary_, self.fill_ = state["vocabulary"], state["fill"]

    def report(self) -> FitReport:
        return FitReport({"filled_with": self.fill_})

    def schema(self) -> dict[str, Any]:
        self._check_fitted()
        return {**super().schema(), "values": self.vocabulary_}

    def request_type(self, *, strict_values: bool) -> Any:
        return category_type([str(v) for v in self.vocabulary_], strict_values, pii=self.config.pii)

    def example(self, profile: dict[str, Any]) -> Any:
        frequencies = profile.get("frequencies") or {}
        if frequencies:
            return str(next(iter(frequencies)))
        return str(self.vocabulary_[0]) if self.vocabulary_ else None

    def profile(self, column: pd.Series) -> dict[str, Any]:
        values = as_strings(column)
        present = values.dropna()
        frequencies = present.value_counts(normalize=True).head(100)
        return {
            "type": "category",
            "missing_rate": float(values.isna().mean()) if len(values) else 0.0,
            "count": int(len(present)),
            "frequencies": {str(k): float(v) for k, v in frequencies.items()},
            # values the vocabulary left out (rare ones): what a window's unseen share is compared with
            "unseen_share": float((~present.isin(self.vocabulary_)).mean()) if len(present) else 0.0,
        }

    def drift(self, reference: dict[str, Any], column: pd.Series,
              thresholds: DriftConfig = DEFAULT_DRIFT) -> DriftResult:
        values = as_strings(column)
        present = values.dropna()
        counts = {str(k): int(v) for k, v in present.value_counts().items()}
        outside = int((~present.isin(self.vocabulary_)).sum())
        unseen = outside / len(present) if len(present) else 0.0
        expected = float(reference.get("unseen_share") or 0.0)
        rose = unseen - expected > thresholds.unseen and share_rose(outside, len(present), expected, thresholds.alpha)
        return share_drift(self.name, shares_with_other(reference.get("frequencies") or {}), counts, thresholds,
                           reference_rows=reference.get("count"),
                           missing_rate=float(values.isna().mean()) if len(values) else 0.0,
                           reference_missing_rate=reference.get("missing_rate"), rows=len(values),
                           extra_alarms=("unseen",) if rose else (), unseen_share=unseen,
                           reference_unseen_share=expected)


@TARGETS.register("category", config=CategoryTargetConfig)
class CategoryTarget(Target[CategoryTargetConfig]):
    """Multi-class classification with softmax outputs."""

    task = "category"

    def fit(self, column: pd.Series) -> Self:
        values = as_strings(column).dropna()
        classes = sorted(str(v) for v in values.unique())
        self.classes_ = self._checked(classes)
        codes = encode(values, classes) - 1
        self.weights_ = class_weight_vector(codes, classes, self.config.class_weights, column=self.name)
        self.calibrators_: list[Calibrator] | None = None
        self.fitted_ = True
        return self

    def partial(self, column: pd.Series, rows: np.ndarray) -> CategoryPartial:
        return CategoryPartial(string_counts(as_strings(column), rows))

    def _checked(self, classes: list[str]) -> list[str]:
        if len(classes) < 2:
            raise DataError(
                f"the target has a single class ({classes[0] if classes else 'none'}): nothing to learn. "
                "Fix: check the data source, or the split",
                column=self.name,
            )
        return classes

    def fit_from(self, partial: Partial) -> Self:
        """``fit`` from the merged counts of the classes."""
        counts = expect(partial, CategoryPartial, self.name).counts.table
        classes = sorted(counts)
        self.classes_ = self._checked(classes)
        setting = self.config.class_weights
        self.weights_ = balanced_weights(np.array([counts[c][0] for c in classes])) if setting == "balanced" else \
            class_weight_vector(np.empty(0, dtype=np.int64), classes, setting, column=self.name)
        self.calibrators_ = None
        self.fitted_ = True
        return self

    def decide(self, calibrators: list[Calibrator] | None) -> None:
        """Set the per-class calibration maps fitted on held-out predictions."""
        self.calibrators_ = calibrators

    def codes(self, column: pd.Series) -> np.ndarray:
        return encode(as_strings(column), self.classes_) - 1  # -1 for an unseen class

    def transform(self, column: pd.Series) -> torch.Tensor:
        self._check_fitted()
        return torch.from_numpy(self.codes(column))  # (rows,) long

    @property
    def output_size(self) -> int:
        return len(self.classes_)

    @property
    def class_names(self) -> list[str]:
        return list(self.classes_)

    @property
    def class_weights(self) -> list[float] | None:
        return self.weights_

    def loss(self) -> nn.Module:
        weight = torch.tensor(self.weights_, dtype=torch.float32) if self.weights_ else None
        return nn.CrossEntropyLoss(weight=weight, label_smoothing=self.config.label_smoothing)

    def postprocess(self, raw: torch.Tensor) -> Predictions:
        proba = torch.softmax(raw.detach().double(), dim=1).cpu().numpy()  # (rows, classes)
        if self.calibrators_:
            proba = calibrate_classes(proba, self.calibrators_)
        codes = proba.argmax(axis=1)
        labels = np.asarray(self.classes_, dtype=object)[codes]
        return Predictions(labels=labels, codes=codes, proba=proba, class_names=self.class_names)

    def state(self) -> dict[str, Any]:
        self._check_fitted()
        return {"classes": self.classes_, "weights": self.weights_,
                "calibration": [c.state() for c in self.calibrators_] if self.calibrators_ else None}

    def load_state(self, state: dict[str, Any]) -> None:
        self.classes_, self.weights_ = state["classes"], state["weights"]
        calibration = state.get("calibration")
        self.decide([Calibrator.from_state(c) for c in calibration] if calibration else None)
