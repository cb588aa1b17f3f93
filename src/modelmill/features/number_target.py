"""The regression target: trained on the standardised values, predicted in original units."""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import pandas as pd
import torch
from torch import nn

from modelmill.config.targets import NumberTargetConfig
from modelmill.data.values import as_numbers
from modelmill.errors import DataError
from modelmill.features.base import TARGETS, Predictions, Target
from modelmill.features.number import NumberPartial
from modelmill.features.partials import Partial, expect


@TARGETS.register("number", config=NumberTargetConfig)
class NumberTarget(Target[NumberTargetConfig]):
    """Regression: trained on the standardised target, predictions in original units."""

    task = "number"

    def fit(self, column: pd.Series) -> Self:
        values = as_numbers(column, feature=self.name)
        present = values[~np.isnan(values)]
        if present.size == 0 or np.unique(present).size < 2:
            raise DataError("the target has fewer than 2 distinct values: nothing to learn", column=self.name)
        standardize = self.config.normalization == "zscore"
        self.center_ = float(present.mean()) if standardize else 0.0
        self.scale_ = (float(present.std()) or 1.0) if standardize else 1.0
        self.fitted_ = True
        return self

    def partial(self, column: pd.Series, rows: np.ndarray) -> NumberPartial:
        return NumberPartial.of(as_numbers(column, feature=self.name))

    def fit_from(self, partial: Partial) -> Self:
        """``fit`` from the merged sketch and moments of the present values."""
        merged = expect(partial, NumberPartial, self.name)
        if merged.sketch.values.size < 2:  # a compressed sketch keeps the minimum and maximum apart
            raise DataError("the target has fewer than 2 distinct values: nothing to learn", column=self.name)
        standardize = self.config.normalization == "zscore"
        moments = merged.sketch.moments() if merged.sketch.exact else merged.moments
        self.center_ = moments.mean if standardize else 0.0
        self.scale_ = (moments.std or 1.0) if standardize else 1.0
        self.fitted_ = True
        return self

    def transform(self, column: pd.Series) -> torch.Tensor:
        self._check_fitted()
        values = (as_numbers(column, feature=self.name) - self.center_) / self.scale_
        return torch.from_numpy(values.astype("float32"))  # (rows,)

    @property
    def output_size(self) -> int:
        return 1

    def loss(self) -> nn.Module:
        if self.config.loss == "huber":
            return _Squeezed(nn.HuberLoss(delta=self.config.huber_delta))
        return _Squeezed(nn.MSELoss())

    def postprocess(self, raw: torch.Tensor) -> Predictions:
        values = raw.detach().reshape(-1).double().cpu().numpy() * self.scale_ + self.center_
        return Predictions(labels=values, codes=values, proba=None, class_names=[])

    def codes(self, column: pd.Series) -> np.ndarray:
        return as_numbers(column, feature=self.name)

    def labelled(self, column: pd.Series) -> np.ndarray:
        return ~np.isnan(self.codes(column))

    def untransform(self, encoded: torch.Tensor) -> np.ndarray:
        return encoded.detach().cpu().double().numpy() * self.scale_ + self.center_

    def state(self) -> dict[str, Any]:
        self._check_fitted()
        return {"center": self.center_, "scale": self.scale_}

    def load_state(self, state: dict[str, Any]) -> None:
        self.center_, self.scale_ = state["center"], state["scale"]


class _Squeezed(nn.Module):
    """Applies a loss to (batch, 1) outputs and (batch,) targets."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, raw: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.inner(raw.reshape(-1), target)  # type: ignore[no-any-return]
