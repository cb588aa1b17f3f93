"""The feature-type contract.

A feature type owns everything about its column: how it is fitted (on the training split
only) and transformed, how it is encoded into a vector (``encoder``), and its reference
profile for drift. Fitted state is plain JSON (``state``/``from_state``), so the same
state serves training and serving and preprocessing cannot drift between the two.
Targets follow the same pattern with a head, a loss and a postprocess step.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Literal, Self, TypeVar

import numpy as np
import pandas as pd
import torch
from torch import nn

from modelmill.errors import ModelError
from modelmill.registry import Registry

ConfigT = TypeVar("ConfigT")
Task = Literal["binary", "category", "number"]


class Component(ABC, Generic[ConfigT]):
    """Shared by input features and targets: stores the config, refuses use before fit."""

    def __init__(self, config: ConfigT) -> None:
        self.config = config
        self.fitted_ = False

    @property
    def name(self) -> str:
        return str(getattr(self.config, "name"))

    def _check_fitted(self) -> None:
        if not self.fitted_:
            raise ModelError(f"feature {self.name!r} is used before it was fitted; call fit() first")

    @abstractmethod
    def fit(self, column: pd.Series) -> Self:
        """Learn the state from the training split's column."""

    @abstractmethod
    def state(self) -> dict[str, Any]:
        """The fitted state as plain JSON-serialisable data."""

    @abstractmethod
    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what ``state`` returned."""

    @classmethod
    def from_state(cls, config: ConfigT, state: dict[str, Any]) -> Self:
        component = cls(config)
        component.load_state(state)
        component.fitted_ = True
        return component


class Feature(Component[ConfigT]):
    """An input column."""

    @abstractmethod
    def transform(self, column: pd.Series) -> torch.Tensor:
        """Encode a column into the tensor the encoder takes: (rows, ...)."""

    @abstractmethod
    def encoder(self) -> nn.Module:
        """The module that maps the transformed tensor to (batch, output_dim)."""

    @property
    @abstractmethod
    def output_dim(self) -> int:
        """Width of this feature's encoder output."""

    @abstractmethod
    def profile(self, column: pd.Series) -> dict[str, Any]:
        """Reference statistics of the column, for drift monitoring."""

    def sequence_lengths(self, encoded: torch.Tensor) -> torch.Tensor | None:
        """Tokens per row of a transformed sequence column (None: not a sequence). The
        trainer batches rows of similar length together, so little padding is computed."""
        return None


@dataclass
class Predictions:
    """Decoded model outputs: ``labels`` in the original values of the target column,
    ``codes`` the integer classes (or the numbers), ``proba`` (rows, classes) or None."""

    labels: np.ndarray
    codes: np.ndarray
    proba: np.ndarray | None
    class_names: list[str]


class Target(Component[ConfigT]):
    """The column to predict."""

    task: ClassVar[Task]

    @abstractmethod
    def transform(self, column: pd.Series) -> torch.Tensor:
        """The training target tensor: float (rows,) or long (rows,)."""

    @property
    @abstractmethod
    def output_size(self) -> int:
        """Width of the model's raw output."""

    @abstractmethod
    def loss(self) -> nn.Module:
        """Loss on (raw outputs, transformed target)."""

    @abstractmethod
    def postprocess(self, raw: torch.Tensor) -> Predictions:
        """Raw outputs (rows, output_size) → decoded predictions."""

    @abstractmethod
    def codes(self, column: pd.Series) -> np.ndarray:
        """True values as class ids (or numbers), for metrics."""

    def untransform(self, encoded: torch.Tensor) -> np.ndarray:
        """A transformed target tensor back to codes (class ids) or numbers."""
        return encoded.detach().cpu().numpy().astype("int64")

    @property
    def class_names(self) -> list[str]:
        return []


FEATURES: Registry[type[Feature[Any]]] = Registry("feature type")
TARGETS: Registry[type[Target[Any]]] = Registry("target type")


# ---------------------------------------------------------------- shared helpers


def most_common(values: pd.Series) -> str | None:
    counts = values.dropna().value_counts()
    return str(counts.index[0]) if len(counts) else None


def histogram_profile(values: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Quantile-binned histogram of the present values (edges from the data itself)."""
    present = values[~np.isnan(values)]
    if present.size == 0:
        return {"edges": [], "counts": []}
    edges = np.unique(np.quantile(present, np.linspace(0, 1, bins + 1)))
    counts, _ = np.histogram(present, bins=edges) if edges.size > 1 else (np.array([present.size]), edges)
    return {"edges": edges.tolist(), "counts": counts.tolist()}
