"""The feature-type contract.

A feature type owns everything about its column: what counts as missing or unreadable in
it and whether its values can be read (asked before anything is fitted, by cleaning and
validation); how it is fitted (on the training split only) and transformed; what its
fitting did to the data (for the cleaning report); its encoder; its raw view for learners
that want codes and numbers; its fragment of the request contract; its reference profile
and its drift statistic. Fitted state is plain JSON (``state``/``from_state``), so the
same state serves training and serving and preprocessing cannot drift between the two.
Targets follow the same pattern with a head, a loss and a postprocess step.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, Literal, Self, TypeVar

import numpy as np
import pandas as pd
import torch
from torch import nn

from modelmill.config.monitoring import DriftConfig
from modelmill.config.schema import CleaningConfig, OutlierConfig
from modelmill.data.clean import missing_mask
from modelmill.errors import ModelError
from modelmill.features.partials import Partial
from modelmill.features.stats import DEFAULT_DRIFT, DriftResult
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

    def partial(self, column: pd.Series, rows: np.ndarray) -> Partial:
        """What fitting needs from one shard of the training column, mergeable with the other
        shards' (``features.partials``); ``rows`` are the shard's rows' positions in the whole
        column (ascending), which break ties between equal counts as the whole column would.
        ``fit_from`` of the merge gives the state ``fit`` gives on the whole column."""
        raise ModelError(self._not_sharded())

    def fit_from(self, partial: Partial) -> Self:
        """Fit from the merged partials of every shard of the training column."""
        raise ModelError(self._not_sharded())

    def _not_sharded(self) -> str:
        return (f"feature {self.name!r} ({getattr(self.config, 'type', '?')}) cannot be fitted from shards on a "
                "cluster: its state is not a merge of per-shard statistics. Fix: fit this pipeline on one "
                "machine (data.shards: false), or leave the feature out")

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


@dataclass
class FitReport:
    """What fitting did to the training column: entries for the cleaning report (values
    clipped, the fill value, texts cut …) and warnings for the user."""

    entries: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RawColumn:
    """One column of a feature's raw view: a number, or a category code (0 … len(categories)-1)."""

    name: str
    kind: Literal["number", "category"]
    categories: tuple[str, ...] = ()


@dataclass(frozen=True)
class TokenSpace:
    """A sequence feature's token ids: how many there are and which one pads."""

    vocabulary_size: int
    pad_id: int


class Feature(Component[ConfigT]):
    """An input column."""

    cell_noun: ClassVar[str] = "value"  # what one cell holds, in the cleaning report's words
    may_encode_target: ClassVar[bool] = True  # can a column of this type be a recoding of the target?
    raw_kind: ClassVar[Literal["number", "category", "parts"] | None] = None
    """What this type's raw view holds: one number, one category code, several numbers (a
    date's parts), or nothing (None: no raw view, as for text and images)."""
    modality: ClassVar[Literal["table", "text", "image"]] = "table"
    """What kind of data the column holds: which model types suit it (``auto`` asks), and
    whether fitting a model on it costs seconds (a table's) or minutes (text and images)."""

    def __init__(self, config: ConfigT, *, cleaning: CleaningConfig | None = None) -> None:
        super().__init__(config)
        self.cleaning = cleaning or CleaningConfig()

    # ------------------------------------------------ the column, before fitting

    @property
    def missing_strategy(self) -> str:
        return str(getattr(self.config, "missing").strategy)

    def missing(self, column: pd.Series) -> np.ndarray:
        """True where a cell is missing (NaN/None or a missing marker such as "?" or "")."""
        return missing_mask(column)

    def unreadable(self, column: pd.Series) -> dict[int, str]:
        """Positions of present cells that cannot be used at all, with the reason."""
        return {}

    def outliers(self, column: pd.Series, config: OutlierConfig) -> np.ndarray | None:
        """True where a value is an outlier by ``config``; None: no notion of outliers."""
        return None

    def validate(self, column: pd.Series) -> None:
        """Raise a DataError naming the rows whose values this feature cannot read."""

    def resolve_paths(self, column: pd.Series, folder: Path) -> pd.Series:
        """The column with relative file paths made absolute against ``folder`` (the
        folder of the table they came from); the column itself if it holds no paths."""
        return column

    # ------------------------------------------------------------ fitted use

    @abstractmethod
    def transform(self, column: pd.Series) -> torch.Tensor:
        """Encode a column into the tensor the encoder takes: (rows, ...)."""

    def fast_transform(self, values: list[Any]) -> torch.Tensor | None:
        """``transform`` of a few plain values (request records) without building pandas
        objects: exactly the tensor ``transform`` gives for the column of these values, or
        None when these values are outside what the fast path handles (the caller then
        takes the column path, errors and all)."""
        return None

    @abstractmethod
    def encoder(self) -> nn.Module:
        """The module that maps the transformed tensor to (batch, output_dim)."""

    @property
    @abstractmethod
    def output_dim(self) -> int:
        """Width of this feature's encoder output."""

    def fixed_encoder(self) -> nn.Module | None:
        """An encoding with no weights to learn (for learners that fit only a last layer),
        or None when this feature's encoding must be trained."""
        encoder = self.encoder()
        return None if any(True for _ in encoder.parameters()) else encoder

    def token_space(self) -> TokenSpace | None:
        """For a sequence of token ids: its vocabulary and padding id; None otherwise."""
        return None

    def sequence_lengths(self, encoded: torch.Tensor) -> torch.Tensor | None:
        """Tokens per row of a transformed sequence column (None: not a sequence). The
        trainer batches rows of similar length together, so little padding is computed."""
        return None

    def raw_columns(self) -> list[RawColumn]:
        """The columns of the raw view (codes and numbers, as trees want them)."""
        raise ModelError(f"feature {self.name!r} ({getattr(self.config, 'type', '?')}) has no raw view of codes "
                         "and numbers; use a model type that encodes it (mlp, linear)")

    def raw_view(self, column: pd.Series) -> torch.Tensor:
        """float64 (rows, len(raw_columns())): numbers as they are, categories as codes,
        NaN for missing or unseen values; no scaling and no one-hot or piecewise encoding."""
        raise ModelError(f"feature {self.name!r} ({getattr(self.config, 'type', '?')}) has no raw view of codes "
                         "and numbers; use a model type that encodes it (mlp, linear)")

    def fast_raw_view(self, values: list[Any]) -> torch.Tensor | None:
        """``raw_view`` of a few plain values without pandas, exactly; None when these
        values are outside what the fast path handles (as ``fast_transform``)."""
        return None

    def report(self) -> FitReport:
        """What fitting did to the training column, for the cleaning report."""
        return FitReport()

    # ------------------------------------------------------------- requests

    def schema(self) -> dict[str, Any]:
        """This column's entry in the bundle's input schema: name, type, allowed values."""
        return {"name": self.name, "type": str(getattr(self.config, "type"))}

    @abstractmethod
    def request_type(self, *, strict_values: bool) -> Any:
        """The pydantic type of this column's value in a request (always nullable: a
        missing value is filled as in training). Its JSON Schema is the column's fragment
        of the request contract; ``strict_values`` refuses values never seen in training."""

    @abstractmethod
    def example(self, profile: dict[str, Any]) -> Any:
        """An example request value, from this column's reference ``profile``."""

    def form_value(self, text: str) -> Any:
        """A plain multipart form field sent for this column, as the request value."""
        return text

    # ------------------------------------------------------------ monitoring

    def from_log(self, column: pd.Series) -> pd.Series:
        """This column's values as the prediction log stores them (JSON), back as values the
        feature reads (images come back from base64 to bytes)."""
        return column

    def not_comparable(self, column: pd.Series) -> str | None:
        """Why a logged ``column`` cannot be compared with the reference (the log keeps only a
        hash of it, say), or None when it can."""
        return None

    @abstractmethod
    def profile(self, column: pd.Series) -> dict[str, Any]:
        """Reference statistics of the column, for drift monitoring."""

    @abstractmethod
    def drift(self, reference: dict[str, Any], column: pd.Series,
              thresholds: DriftConfig = DEFAULT_DRIFT) -> DriftResult:
        """How far ``column`` (new data) has moved from the ``reference`` profile, and
        whether that is an alarm at ``thresholds``."""


@dataclass
class Predictions:
    """Decoded model outputs: ``labels`` in the original values of the target column,
    ``codes`` the integer classes (or the numbers), ``proba`` (rows, classes) or None."""

    labels: np.ndarray
    codes: np.ndarray
    proba: np.ndarray | None
    class_names: list[str]

    def rows(self, picked: np.ndarray) -> Predictions:
        """These predictions of the rows ``picked`` (positions, or a boolean mask)."""
        return Predictions(labels=np.asarray(self.labels)[picked], codes=np.asarray(self.codes)[picked],
                           proba=None if self.proba is None else self.proba[picked], class_names=self.class_names)


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

    @property
    def class_weights(self) -> list[float] | None:
        """Loss weight per class (configured or balanced), for learners with their own solver."""
        return None

    def labelled(self, column: pd.Series) -> np.ndarray:
        """Mask of the rows whose true value this fitted target knows (for metrics)."""
        codes = self.codes(column)
        return np.asarray(codes >= 0)

    def schema(self) -> dict[str, Any]:
        """The target's entry in the bundle's input schema."""
        return {"name": self.name, "type": self.task, "classes": self.class_names}


FEATURES: Registry[type[Feature[Any]]] = Registry("feature type")
TARGETS: Registry[type[Target[Any]]] = Registry("target type")


def most_common(values: pd.Series) -> str | None:
    counts = values.dropna().value_counts()
    return str(counts.index[0]) if len(counts) else None
