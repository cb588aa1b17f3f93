"""``model.type: popularity``: every user gets the items with the most interactions.

The floor of every recommender (and the list an unknown user with no history is shown): a model
that cannot beat the same list for everyone has learnt nothing about the users. Weights are
summed, so with a weight column an item is as popular as its plays or quantities say.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import torch
from scipy import sparse

from modelmill.config.recommend import PopularityConfig, RecommendConfig
from modelmill.errors import BundleError, ModelError
from modelmill.recommending.base import RECOMMENDERS, FitContext, Recommender, RecommenderState
from modelmill.recommending.interactions import Interactions

__all__ = ["Popularity"]


class Popularity(Recommender):
    """Scores = each item's summed interaction weights in the training part; learned state ends in ``_``."""

    kind = "popularity"

    def __init__(self, config: RecommendConfig) -> None:
        super().__init__(config)
        self.counts_: np.ndarray | None = None  # (n_items,) float32

    def fit(self, train: Interactions, valid: Interactions | None, context: FitContext) -> Self:
        """Sum each item's weights (valid is not needed: there is nothing to stop early)."""
        counts = np.bincount(train.items, weights=train.weights, minlength=train.n_items)
        self.counts_ = counts.astype(np.float32)
        return self

    def _counts(self) -> np.ndarray:
        if self.counts_ is None:
            raise ModelError("the popularity recommender is used before it was fitted (or loaded)")
        return self.counts_

    def scores(self, users: np.ndarray, known: sparse.csr_matrix, user_features: Any = None) -> np.ndarray:
        """The same row for every user, (len(users), n_items) float32 (a read-only broadcast view)."""
        counts = self._counts()
        return np.broadcast_to(counts, (len(users), len(counts)))

    def state(self) -> RecommenderState:
        return RecommenderState(json={"items": int(len(self._counts()))},
                                tensors={"counts": torch.from_numpy(self._counts().copy())})

    @classmethod
    def from_state(cls, config: RecommendConfig, state: RecommenderState) -> Self:
        recommender = cls(config)
        counts = state.tensors.get("counts")
        if counts is None or counts.dim() != 1 or int(counts.shape[0]) != int(state.json.get("items", -1)):
            raise BundleError("the popularity recommender's state has no counts of the catalogue's items. Fix: "
                              "rebuild the bundle with `modelmill train`")
        recommender.counts_ = counts.to(torch.float32).numpy().copy()
        return recommender

    def describe(self) -> dict[str, Any]:
        counts = self._counts()
        return {"items_with_interactions": int((counts > 0).sum())}


RECOMMENDERS.add("popularity", Popularity, config=PopularityConfig)
