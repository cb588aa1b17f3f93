"""``model.type: two_tower``: a user tower and an item tower whose dot product ranks the catalogue.

User vector = the user-id embedding (optional) + the mean of the input embeddings of the items
the user interacted with (Koren's SVD++ / Kabbur et al.'s FISM: a user is what they took, so a
new user, or new known items, change the list without retraining). Item vector = the item-id
embedding + the mean of its feature embeddings, with a bias in its last coordinate; an item no
one interacted with in training keeps only its features (cold start).

Training, through the shared trainer, by default (``negatives: auto``, up to 50,000 items) one
row per user (Mult-DAE, Liang et al. 2018): the user's bag with each item dropped with
``dropout``, scored against the whole catalogue, the loss minus the summed log-softmax of the
user's training items. An exact softmax over each user costs about what a sampled one over each
interaction does, and on movielens it beat 1,000 sampled negatives on valid and test (docs/benchmarks.md).
Larger catalogues, or a number of ``negatives``: one row per training interaction; the positive item
is left out of its own user's bag (it could otherwise learn identity, not taste) and each other
known item is dropped with ``dropout`` (a denoising objective, as Mult-DAE's, Liang et al. 2018);
the loss is a softmax over the positive and ``negatives`` items sampled per batch in proportion
to popularity^0.5, with the logQ correction (Bengio & Senécal 2008; Yi et al. 2019) so the
sampled softmax estimates the full one; ``negatives: all`` is the full softmax. Early stopping
watches NDCG@k of the valid part, with each user's training items left out of their list.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import torch
from scipy import sparse
from torch import nn

from modelmill.config.recommend import RecommendConfig, TwoTowerConfig
from modelmill.errors import BundleError, ConfigError, ModelError
from modelmill.models import TensorData
from modelmill.recommending.base import RECOMMENDERS, FitContext, Recommender, RecommenderState
from modelmill.recommending.interactions import Interactions
from modelmill.recommending.towers import TwoTowerNet, item_tokens, ranking_scorer

__all__ = ["TwoTower"]

MAX_VALID_USERS = 2048  # users scored at each epoch's early stopping (their scores: users × items floats)
SAMPLING_POWER = 0.5  # negatives drawn ∝ count^0.5: popular items as hard negatives, the tail still drawn
EXACT_ITEMS = 50_000  # negatives: auto → the per-user exact softmax up to this many items, else sampled
SAMPLED = 1000  # negatives: auto on a larger catalogue


class TwoTower(Recommender):
    """The two-tower recommender; learned state ends in ``_`` (plain arrays: scoring is numpy)."""

    kind = "two_tower"

    def __init__(self, config: RecommendConfig) -> None:
        super().__init__(config)
        self.users_: np.ndarray | None = None  # (n_users, factors) user-id vectors (zeros without user_id)
        self.history_: np.ndarray | None = None  # (n_items, factors) input embeddings of known items
        self.items_: np.ndarray | None = None  # (n_items, factors + 1) item vectors, bias last
        self.summary_: dict[str, Any] = {}

    @property
    def settings(self) -> TwoTowerConfig:
        model = self.config.model
        if not isinstance(model, TwoTowerConfig):
            raise ModelError(f"the two-tower recommender was given a {model.type} config")
        return model

    # ------------------------------------------------------------------ fit

    def fit(self, train: Interactions, valid: Interactions | None, context: FitContext) -> Self:
        """Train through the shared trainer, stopping early on the valid part's NDCG@k."""
        # the trainer only where a fit happens: a server loading a bundle never imports it
        from modelmill.training.backends import BACKENDS
        from modelmill.training.trainer import Trainer

        if len(train) == 0:
            raise ModelError("the two-tower recommender has no training interactions")
        settings, k = self.settings, self.config.evaluation.k[0]
        known = _binary(train.matrix())
        counts = np.bincount(train.items, minlength=train.n_items).astype(np.float64)
        held = valid is not None and len(valid) > 0
        training = self.config.training.model_copy(update={"seed": context.seed})
        if not held:  # nothing held out: all epochs run, the best judged on the training items themselves
            training = training.model_copy(update={"early_stopping": training.early_stopping.model_copy(
                update={"enabled": False})})
        torch.manual_seed(context.seed)  # the initial weights are part of a repeatable fit
        tokens, vocabulary = item_tokens(train.item_features)
        per_user = settings.negatives == "auto" and train.n_items <= EXACT_ITEMS
        sampled = None if per_user or settings.negatives == "all" else \
            SAMPLED if settings.negatives == "auto" else int(settings.negatives)
        full = sampled is None or sampled >= train.n_items
        module = TwoTowerNet(train.n_users, train.n_items, tokens, known, counts, factors=settings.factors,
                             user_id=settings.user_id, history=settings.history, dropout=settings.dropout,
                             negatives=None if full else sampled, power=SAMPLING_POWER, top=k, per_user=per_user)
        relevant, check = self._validation(train, valid if held else None, known, context.seed)
        module.mask_known = held  # on the training items themselves nothing may be masked
        scorer = ranking_scorer(relevant, k, train.n_items)
        loss: nn.Module
        if per_user:  # a batch of users holding about batch_size interactions, as a batch of rows would
            rows = torch.as_tensor(np.flatnonzero(np.diff(known.indptr)), dtype=torch.int64)
            if isinstance(training.batch_size, int):
                per_batch = max(1, round(training.batch_size * len(rows) / len(train)))
                training = training.model_copy(update={"batch_size": per_batch})
            data, loss = TensorData([rows], rows), _MultinomialLoss(scorer, known)
        else:
            users = torch.as_tensor(train.users, dtype=torch.int64)
            items = torch.as_tensor(train.items, dtype=torch.int64)
            target = items if full else torch.zeros(len(items), dtype=torch.int64)  # the positive's column
            data, loss = TensorData([users, items], target), _SoftmaxLoss(scorer)
        trainer = Trainer(training, loss=loss, scorer=scorer, monitor=self._monitor(), mode="max",
                          checkpoint_dir=context.checkpoint_dir)
        result = BACKENDS.get(training.backend, path="training.backend")().fit(
            trainer, module, data, check, resume=context.resume)
        module.eval()
        self.users_, self.history_, self.items_ = (t.detach().cpu().numpy().copy() for t in module.export())
        self.summary_ = {"epochs": result.epochs_run, "best_epoch": result.best_epoch, "stopped": result.stop_reason,
                         "seconds": round(result.seconds, 2), "interactions": len(train),
                         "feature_tokens": len(vocabulary), f"valid_ndcg@{k}": result.best_value}
        return self

    def _validation(self, train: Interactions, valid: Interactions | None, known: sparse.csr_matrix,
                    seed: int) -> tuple[sparse.csr_matrix, TensorData]:
        """The users scored at each epoch (at most MAX_VALID_USERS, a seeded draw) and their
        relevant items: the valid part's, else their training items."""
        part = valid if valid is not None else train
        users = np.unique(part.users)
        if len(users) > MAX_VALID_USERS:
            users = np.sort(np.random.default_rng(seed).choice(users, MAX_VALID_USERS, replace=False))
        relevant = _binary(part.matrix())[users] if valid is not None else known[users]
        rows = torch.arange(len(users), dtype=torch.float32)  # float: the loss tells validation rows by it
        return relevant, TensorData([torch.as_tensor(users, dtype=torch.int64)], rows, held_out=valid is not None)

    def _monitor(self) -> str:
        metric = self.config.training.early_stopping.metric
        if metric in ("auto", "loss", "ndcg"):
            return "ndcg"
        if metric != "recall":
            raise ConfigError(f"{metric!r} is no metric of the two-tower's validation; valid: auto or ndcg "
                              "(NDCG@k, k the first of evaluation.k), recall", path="training.early_stopping.metric")
        return metric

    # ------------------------------------------------------------------ scoring

    def _fitted(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.users_ is None or self.history_ is None or self.items_ is None:
            raise ModelError("the two-tower recommender is used before it was fitted (or loaded)")
        return self.users_, self.history_, self.items_

    def scores(self, users: np.ndarray, known: sparse.csr_matrix, user_features: Any = None) -> np.ndarray:
        """(len(users), n_items) float32: user vector · item vectors + item bias."""
        user_vectors, history, items = self._fitted()
        users = np.asarray(users, dtype=np.int64)
        bag = _binary(sparse.csr_matrix(known))
        sizes = np.diff(bag.indptr).astype(np.float32)  # (n,)
        vectors = np.asarray(bag @ history, dtype=np.float32) / np.maximum(sizes, 1.0)[:, None]
        fitted = (users >= 0) & (users < len(user_vectors))  # -1 or a user added later: history only
        if fitted.any():
            vectors[fitted] += user_vectors[users[fitted]]
        out = vectors @ items[:, :-1].T  # (n, n_items)
        out += items[:, -1]
        return out

    # ------------------------------------------------------------------ state

    def ranks_from(self, items: np.ndarray, *, fitted: bool) -> bool:
        """A user's vector comes from their id (a fitted user, with ``user_id``) and their items (with ``history``)."""
        settings = self.settings
        return (fitted and settings.user_id) or (settings.history and len(items) > 0)

    def state(self) -> RecommenderState:
        user_vectors, history, items = self._fitted()
        return RecommenderState(
            json={"users": len(user_vectors), "items": len(items), "factors": int(history.shape[1]),
                  "summary": self.summary_},
            tensors={name: torch.from_numpy(array.copy()) for name, array in
                     (("users", user_vectors), ("history", history), ("items", items))})

    @classmethod
    def from_state(cls, config: RecommendConfig, state: RecommenderState) -> Self:
        recommender = cls(config)
        try:
            users, items, factors = (int(state.json[key]) for key in ("users", "items", "factors"))
            arrays = {name: state.tensors[name].to(torch.float32).numpy().copy()
                      for name in ("users", "history", "items")}
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"the two-tower recommender's state lacks {exc}. Fix: rebuild the bundle with "
                              "`modelmill train`") from None
        shapes = {"users": (users, factors), "history": (items, factors), "items": (items, factors + 1)}
        for name, shape in shapes.items():
            if arrays[name].shape != shape:
                raise BundleError(f"the two-tower recommender's {name} tensor is {arrays[name].shape}, its state "
                                  f"says {shape}. Fix: rebuild the bundle with `modelmill train`")
        recommender.users_, recommender.history_, recommender.items_ = \
            arrays["users"], arrays["history"], arrays["items"]
        recommender.summary_ = dict(state.json.get("summary", {}))
        return recommender

    def describe(self) -> dict[str, Any]:
        return dict(self.summary_)


class _SoftmaxLoss(nn.Module):
    """Cross-entropy of the positive's column on training rows (integer targets); on the
    validation rows (float targets: row numbers, the outputs top-k lists) 1 − NDCG@k, so that
    the trainer's valid_loss means something too."""

    def __init__(self, scorer: Any) -> None:
        super().__init__()
        self.scorer = scorer

    def forward(self, raw: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if not target.is_floating_point():
            return nn.functional.cross_entropy(raw, target)
        return torch.tensor(1.0 - self.scorer(raw, target)["ndcg"])


class _MultinomialLoss(nn.Module):
    """The per-user loss (Mult-DAE's, Liang et al. 2018): minus the sum of the log-softmax of
    each user's training items, averaged over the batch's users (integer targets: user codes);
    on the validation rows 1 − NDCG@k, as _SoftmaxLoss."""

    def __init__(self, scorer: Any, known: sparse.csr_matrix) -> None:
        super().__init__()
        self.scorer = scorer
        self.register_buffer("indptr", torch.as_tensor(known.indptr, dtype=torch.int64), persistent=False)
        self.register_buffer("indices", torch.as_tensor(known.indices, dtype=torch.int64), persistent=False)

    def forward(self, raw: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.is_floating_point():
            return torch.tensor(1.0 - self.scorer(raw, target)["ndcg"])
        indptr, indices = self.get_buffer("indptr"), self.get_buffer("indices")
        starts, sizes = indptr[target], indptr[target + 1] - indptr[target]
        rows = torch.repeat_interleave(torch.arange(len(target), device=raw.device), sizes)
        position = starts[rows] + torch.arange(len(rows), device=raw.device) - (torch.cumsum(sizes, 0) - sizes)[rows]
        log_p = torch.log_softmax(raw, dim=1)
        return -log_p[rows, indices[position]].sum() / len(target)


def _binary(matrix: sparse.csr_matrix) -> sparse.csr_matrix:
    """The same pattern with every stored value 1 (a known item counts once, whatever its weight)."""
    out = sparse.csr_matrix((np.ones(len(matrix.indices), dtype=np.float32), matrix.indices, matrix.indptr),
                            shape=matrix.shape)
    out.sort_indices()
    return out


RECOMMENDERS.add("two_tower", TwoTower, config=TwoTowerConfig)
