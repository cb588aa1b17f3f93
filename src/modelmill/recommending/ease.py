"""``model.type: ease``: EASE (Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", 2019).

An item-item weight matrix B with a zero diagonal, the closed-form minimiser of
||X − XB||² + λ||B||² over the users' binary item vectors X: with P = (XᵀX + λI)⁻¹,
B = I − P · diag(1 / diag(P)) (off the diagonal, −P_ij / P_jj). A user's scores are the sum of
the rows of B of the items they have, so new known items (a refresh, or items a request sends)
change the list without refitting, as the two-tower's user vector does.

The fit is one Cholesky factorisation per λ tried (``l2: auto`` climbs a grid from 300 by the
valid part's NDCG@k, the training items as history: 3 factorisations or more), in float32, of a
matrix as large as the items squared: it models at most ``max_items`` items, those with the most
training interactions.
Interactions are binary here (the pairs a user has), as the two-tower's bags are.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Self

import numpy as np
import torch
from scipy import sparse

from modelmill.config.recommend import EaseConfig, RecommendConfig
from modelmill.errors import BundleError, ModelError
from modelmill.recommending.base import RECOMMENDERS, FitContext, Recommender, RecommenderState
from modelmill.recommending.interactions import Interactions
from modelmill.recommending.metrics import evaluate_ranking

__all__ = ["L2_GRID", "Ease"]

log = logging.getLogger("modelmill")

L2_GRID = (10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0)  # l2: auto searches these (steps of ~3×)
LINALG_ERROR: type[Exception] = torch.linalg.LinAlgError  # type: ignore[attr-defined]
START_L2 = 300.0  # where the search starts, and l2: auto with no valid part


class Ease(Recommender):
    """The EASE recommender; learned state ends in ``_``."""

    kind = "ease"
    uses_history = True  # a user's list comes from their items, so a new user's sent items rank too

    def __init__(self, config: RecommendConfig) -> None:
        super().__init__(config)
        self.weights_: np.ndarray | None = None  # (m, m) float32 B over the modelled items
        self.modelled_: np.ndarray | None = None  # (m,) int64 catalogue codes of the modelled items
        self.popularity_: np.ndarray | None = None  # (n_items,) float32 training counts: users with no modelled item
        self.summary_: dict[str, Any] = {}

    @property
    def settings(self) -> EaseConfig:
        if not isinstance(self.config.model, EaseConfig):
            raise ModelError(f"the EASE recommender got a {self.config.model.type} model config")
        return self.config.model

    # ------------------------------------------------------------------ fitting

    def fit(self, train: Interactions, valid: Interactions | None, context: FitContext) -> Self:
        """B from the training interactions; with ``l2: auto`` and a valid part, λ of
        :data:`L2_GRID` with the best valid NDCG@k (the first of ``evaluation.k``, the training
        items as history); without a valid part, :data:`START_L2`."""
        started = time.perf_counter()
        settings = self.settings
        counts = np.bincount(train.items, minlength=train.n_items)
        with_interactions = np.flatnonzero(counts)
        if len(with_interactions) > settings.max_items:  # the most interacted items, ties by code
            order = np.lexsort((with_interactions, -counts[with_interactions]))
            modelled = np.sort(with_interactions[order[:settings.max_items]])
            log.warning(f"ease: {len(with_interactions):,} items have interactions, more than model.max_items "
                        f"({settings.max_items:,}): the {settings.max_items:,} with the most are modelled, the "
                        "others ranked after them (raise max_items, or use model.type: two_tower)")
        else:
            modelled = with_interactions
        if len(modelled) == 0:
            raise ModelError("ease: no item has a training interaction, so there is nothing to learn from")
        if self.config.interactions.item_features:
            log.warning("ease does not use item features (interactions.item_features): items no one has "
                        "interacted with come last. Fix: model.type two_tower (or auto) ranks them by their features")
        self.modelled_ = modelled.astype(np.int64)
        self.popularity_ = counts.astype(np.float32)
        gram = _gram(train, modelled)
        tried: dict[str, float] = {}
        if settings.l2 != "auto":
            l2 = float(settings.l2)
            self.weights_ = _solve(gram, l2)
        elif valid is None or not len(valid):
            l2 = START_L2
            self.weights_ = _solve(gram, l2)
        else:
            l2, tried = self._search(gram, train, valid)
        self.summary_ = {"items_modelled": int(len(modelled)), "items_with_interactions": int(len(with_interactions)),
                         "l2": l2, **({"valid_ndcg_by_l2": tried} if tried else {}),
                         "fit_seconds": round(time.perf_counter() - started, 2)}
        return self

    def _search(self, gram: torch.Tensor, train: Interactions, valid: Interactions) -> tuple[float, dict[str, float]]:
        """λ of :data:`L2_GRID` by valid NDCG@k, climbing from :data:`START_L2` towards the
        better neighbour while it improves (the score is unimodal in log λ in practice; each step
        is a factorisation, so the climb costs 3 or more of them, not one per grid point). Leaves the
        best λ's weights in ``weights_``."""
        k = self.config.evaluation.k[0]
        tried: dict[float, float] = {}

        def score(l2: float) -> np.ndarray:
            self.weights_ = _solve(gram, l2)
            tried[l2] = evaluate_ranking(self, train, valid, [k])[f"ndcg@{k}"]
            return self.weights_

        best, best_weights = START_L2, score(START_L2)
        while True:
            at = L2_GRID.index(best)
            for l2 in (L2_GRID[i] for i in (at - 1, at + 1) if 0 <= i < len(L2_GRID)):
                if l2 not in tried:
                    weights = score(l2)
                    if tried[l2] > tried[best]:
                        best, best_weights = l2, weights
            if L2_GRID.index(best) == at:
                break
        self.weights_ = best_weights
        return best, {f"{l2:g}": round(value, 5) for l2, value in sorted(tried.items())}

    # ------------------------------------------------------------------ scoring

    def scores(self, users: np.ndarray, known: sparse.csr_matrix, user_features: Any = None) -> np.ndarray:
        """(len(users), n_items) float32: the summed rows of the user's modelled items; items not
        modelled come after every modelled one, by their training counts (ties by code); a user
        with no modelled item gets the training counts (the popular list). ``users`` is not
        needed: the items say it all."""
        weights, modelled, popularity = self._fitted()
        binary = sparse.csr_matrix(known, dtype=np.float32, copy=True)
        binary.data[:] = 1.0
        inputs = binary[:, modelled]
        ranked = np.asarray(inputs @ weights, dtype=np.float32)  # (n, m)
        out = np.empty((binary.shape[0], len(popularity)), dtype=np.float32)
        out[:, modelled] = ranked
        rest = np.ones(len(popularity), dtype=bool)
        rest[modelled] = False
        if rest.any() and len(ranked):  # below the row's lowest modelled score, the most taken first
            counts = popularity[rest]
            out[:, rest] = ranked.min(axis=1, keepdims=True) - 2.0 + counts / (counts.max() + 1.0)
        empty = np.diff(inputs.indptr) == 0
        if empty.any():
            out[empty] = popularity
        return out

    def ranks_from(self, items: np.ndarray, *, fitted: bool) -> bool:
        """Only the modelled items rank a user (fitted on or not): with none, the list is the popular one."""
        return bool(np.isin(items, self._fitted()[1]).any())

    def _fitted(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.weights_ is None or self.modelled_ is None or self.popularity_ is None:
            raise ModelError("the EASE recommender is used before it was fitted (or loaded)")
        return self.weights_, self.modelled_, self.popularity_

    # ------------------------------------------------------------------ state

    def state(self) -> RecommenderState:
        weights, modelled, popularity = self._fitted()
        return RecommenderState(json={"items": int(len(popularity)), "summary": self.summary_},
                                tensors={"weights": torch.from_numpy(weights.copy()),
                                         "modelled": torch.from_numpy(modelled.copy()),
                                         "popularity": torch.from_numpy(popularity.copy())})

    @classmethod
    def from_state(cls, config: RecommendConfig, state: RecommenderState) -> Self:
        recommender = cls(config)
        tensors, items = state.tensors, int(state.json.get("items", -1))
        weights, modelled, popularity = (tensors.get(name) for name in ("weights", "modelled", "popularity"))
        if not (weights is not None and modelled is not None and popularity is not None and modelled.dim() == 1
                and tuple(weights.shape) == (len(modelled), len(modelled)) and tuple(popularity.shape) == (items,)
                and len(modelled) and int(modelled.min()) >= 0 and int(modelled.max()) < items
                and bool(torch.isfinite(weights).all()) and bool(torch.isfinite(popularity).all())):
            raise BundleError("the EASE recommender's state does not describe an item-item matrix of finite numbers "
                              "over the catalogue's items. Fix: rebuild the bundle with `modelmill train`")
        recommender.weights_ = weights.to(torch.float32).numpy().copy()
        recommender.modelled_ = modelled.to(torch.int64).numpy().copy()
        recommender.popularity_ = popularity.to(torch.float32).numpy().copy()
        recommender.summary_ = dict(state.json.get("summary", {}))
        return recommender

    def describe(self) -> dict[str, Any]:
        return dict(self.summary_)


def _gram(train: Interactions, modelled: np.ndarray) -> torch.Tensor:
    """XᵀX over the modelled items of the users' binary item vectors, dense float32."""
    matrix = sparse.csr_matrix(train.matrix(), dtype=np.float32, copy=True)
    matrix.data[:] = 1.0
    columns = matrix[:, modelled]
    return torch.from_numpy(np.asarray((columns.T @ columns).toarray(), dtype=np.float32))


def _solve(gram: torch.Tensor, l2: float) -> np.ndarray:
    """B = I − P · diag(1 / diag(P)), P = (G + λI)⁻¹, with a zero diagonal, through a Cholesky
    factorisation (G + λI is symmetric positive definite for λ > 0). At most three matrices of
    the size of G are alive at once (G, the factor, P), P's division done in place."""
    regularised = gram.clone()
    regularised.diagonal().add_(l2)
    try:
        factor = torch.linalg.cholesky(regularised)
    except LINALG_ERROR:  # λ too small for float32 against these counts
        raise ModelError(f"ease: the item-item matrix with model.l2 = {l2:g} cannot be factorised in float32. Fix: "
                         "raise model.l2 (or leave it to auto)") from None
    del regularised
    # P is symmetric: its transpose is the same matrix, row-major (LAPACK hands P back column-major,
    # and a user's scores sum rows: column-major rows would be copied on every call)
    inverse = torch.cholesky_inverse(factor).T
    del factor
    inverse.div_(-inverse.diagonal().clone())  # column j divided by −P_jj
    inverse.diagonal().zero_()
    weights = inverse.numpy()
    return weights if weights.flags.c_contiguous else np.ascontiguousarray(weights)


RECOMMENDERS.add("ease", Ease, config=EaseConfig)
