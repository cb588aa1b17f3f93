"""The recommender contract, and the registry of recommendation model types (``model.type``).

A recommender fits on :class:`~modelmill.recommending.interactions.Interactions` and scores every
item of the catalogue for users described by their code (-1: a user it was not fitted on) and
their known items, which need not be the items it was fitted on: an evaluation hands it the
interactions before the held-out ones, the service the bundle's known items (refreshed without
retraining) or those a request sends. Its fitted state is plain data (JSON and tensors), never
pickle.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import torch
from scipy import sparse

from modelmill.config.recommend import RecommendConfig
from modelmill.errors import ModelError
from modelmill.recommending.interactions import Interactions
from modelmill.registry import Registry

__all__ = ["RECOMMENDERS", "FitContext", "Recommender", "RecommenderState", "build_recommender"]


@dataclass
class RecommenderState:
    """A fitted recommender as plain data: ``json`` (numbers, lists, strings) and ``tensors``
    (saved as safetensors)."""

    json: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class FitContext:
    """What a fit may use besides the data.

    Attributes:
        checkpoint_dir: Where the shared trainer keeps its checkpoints (None: none kept).
        resume: Continue from the checkpoint there.
        seed: The seed of every random draw of the fit.
    """

    checkpoint_dir: Path | None = None
    resume: bool = False
    seed: int = 0


class Recommender(ABC):
    """Base of every recommendation model type.

    ``__init__`` only stores the whole config; ``fit`` learns; ``scores`` rates every item of the
    catalogue for each user asked about (higher: recommended first). Leaving out the items a user
    already has, and taking the top k, is :func:`modelmill.recommending.ranking.top_k`'s job.
    """

    kind: ClassVar[str]

    def __init__(self, config: RecommendConfig) -> None:
        self.config = config

    @abstractmethod
    def fit(self, train: Interactions, valid: Interactions | None, context: FitContext) -> Self:
        """Learn from ``train``; ``valid`` (the interactions just after each user's training ones,
        same id spaces) may stop the training early. None: nothing held out."""

    @abstractmethod
    def scores(self, users: np.ndarray, known: sparse.csr_matrix, user_features: Any = None) -> np.ndarray:
        """Scores of every catalogue item, (len(users), n_items) float32.

        Args:
            users: User codes (int64); -1 for a user the model was not fitted on.
            known: (len(users), n_items): each user's known items (weights as values), the items
                the user's vector is computed from where the model uses them.
            user_features: For models that use them, a frame of the configured user-feature
                columns, one row per user asked about (None: the fitted users' own features;
                nothing for unknown users).
        """

    @abstractmethod
    def state(self) -> RecommenderState:
        """The fitted state as plain data."""

    @classmethod
    @abstractmethod
    def from_state(cls, config: RecommendConfig, state: RecommenderState) -> Self:
        """A fitted recommender from :meth:`state`'s output."""

    def describe(self) -> dict[str, Any]:
        """What the fit did, for the report (epochs, best epoch, seconds …)."""
        return {}

    def ranks_from(self, items: np.ndarray, *, fitted: bool) -> bool:
        """Whether the model ranks a user known by these item codes (``fitted``: a user it was
        fitted on) from what it knows of them; False: the list is a popular one, and is said to be."""
        return fitted or len(items) > 0


RECOMMENDERS: Registry[type[Recommender]] = Registry("recommendation model type")


def build_recommender(config: RecommendConfig) -> Recommender:
    """An unfitted recommender of ``config.model.type`` (``auto`` resolved first: see
    :func:`modelmill.recommending.auto.resolved`)."""
    if config.model.type == "auto":
        raise ModelError("model.type auto is resolved from the training data before a recommender is built "
                         "(modelmill.recommending.auto.resolved)")
    return RECOMMENDERS.get(config.model.type, path="model.type")(config)
