"""NDCG and MAP checked against a peer implementation, the ``implicit`` package's
``implicit.evaluation.ranking_metrics_at_k``, on fixed top-k lists: the same definitions (binary
gains, ideal DCG over min(k, |R|) hits, AP normalised by min(k, |R|), means over the users with a
held-out item) must give the same numbers. Its ``precision`` is pooled over users and it has no
recall, so those are not compared."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from scipy import sparse

from modelmill.recommending.metrics import ranking_metrics

evaluation = pytest.importorskip("implicit.evaluation", reason="implicit is not installed (pip install implicit): "
                                 "the cross-check of ndcg and map against implicit's ranking_metrics_at_k needs it")
recommender_base = pytest.importorskip("implicit.recommender_base", reason="implicit is not installed")


class Lists(recommender_base.RecommenderBase):  # type: ignore[misc,name-defined]
    """Hands implicit the fixed lists, whatever it asks (filtering is already done in them)."""

    def __init__(self, lists: np.ndarray) -> None:
        super().__init__()
        self.lists = lists

    def recommend(self, userid: Any, user_items: Any, N: int = 10, **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
        ids = self.lists[np.asarray(userid), :N].astype(np.int32)
        return ids, np.zeros(ids.shape, dtype=np.float32)

    def fit(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError

    def similar_users(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError

    def similar_items(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError

    def save(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError


def fixed_case(seed: int, n_users: int = 60, n_items: int = 40, k: int = 10) -> tuple[np.ndarray, sparse.csr_matrix]:
    """Random lists of k distinct items (some padded with -1 at the end) and relevant sets of
    0 to 15 items (more than k for some users, none for others)."""
    rng = np.random.default_rng(seed)
    lists = np.stack([rng.permutation(n_items)[:k] for _ in range(n_users)])
    short = rng.random(n_users) < 0.2
    lists[short, k - 3:] = -1  # a list shorter than k: its tail is padding
    rows = [rng.choice(n_items, size=rng.integers(0, 16), replace=False) for _ in range(n_users)]
    indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])])
    indices = np.concatenate(rows).astype(np.int32)
    relevant = sparse.csr_matrix((np.ones(len(indices), np.float32), indices, indptr), shape=(n_users, n_items))
    relevant.sort_indices()
    return lists, relevant


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k", [1, 5, 10])
def test_ndcg_and_map_match_implicit(seed: int, k: int) -> None:
    lists, relevant = fixed_case(seed)
    train = sparse.csr_matrix(relevant.shape, dtype=np.float32)  # nothing to filter: the lists are final
    theirs = evaluation.ranking_metrics_at_k(Lists(lists), train, relevant, K=k, show_progress=False)
    ours = ranking_metrics(lists, relevant, [k], n_items=relevant.shape[1])
    assert ours["users"] == (np.diff(relevant.indptr) > 0).sum() > 0
    assert ours[f"ndcg@{k}"] == pytest.approx(theirs["ndcg"], rel=1e-9)
    assert ours[f"map@{k}"] == pytest.approx(theirs["map"], rel=1e-9)
    assert 0 < ours[f"map@{k}"] < 1  # neither trivially 0 nor 1: the check has something to compare
