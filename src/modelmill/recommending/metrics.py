"""Ranking metrics of top-k lists against each user's held-out items.

Definitions (binary relevance: an item is relevant when the user interacted with it in the
held-out part; means over the users with at least one relevant item), for a list of length k
and a user's relevant set R:

- ``recall@k`` = hits in the top k / |R|. It is below 1 when |R| > k even for a perfect list.
- ``ndcg@k`` = DCG / IDCG, DCG = Σ_{r=1..k} hit_r / log2(r + 1), IDCG the DCG of min(k, |R|)
  hits at the top (Järvelin & Kekäläinen 2002, binary gains).
- ``map@k`` = mean of AP@k, AP@k = Σ_{r=1..k} hit_r · precision@r / min(k, |R|), so a perfect
  list scores 1 whatever |R| is.
- ``coverage@k`` = distinct items in the users' top k / catalogue size: how much of the
  catalogue the recommender ever shows (a popularity list covers k items).
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from modelmill.recommending.base import Recommender
from modelmill.recommending.interactions import Interactions
from modelmill.recommending.ranking import recommend_codes

__all__ = ["evaluate_ranking", "ranking_metrics"]


def ranking_metrics(top: np.ndarray, relevant: sparse.csr_matrix, ks: list[int], n_items: int) -> dict[str, float]:
    """Recall, NDCG, MAP and coverage at each k (see the module's definitions), and ``users``.

    Args:
        top: (n, K) item codes, best first, -1 padding; a list shorter than k counts as padded.
        relevant: (n, n_items) each user's relevant items (its entries with a value above 0).
        ks: List lengths to score.
        n_items: Catalogue size (the denominator of coverage).

    Returns:
        ``recall@k``, ``ndcg@k``, ``map@k``, ``coverage@k`` for each k and ``users`` (users with a
        relevant item: the ones averaged over); the means are NaN when there is no such user.
    """
    top = np.asarray(top, dtype=np.int64)
    relevant = sparse.csr_matrix(relevant)
    relevant.eliminate_zeros()
    sizes = np.diff(relevant.indptr)  # (n,) |R| per user
    scored = sizes > 0
    top, sizes = top[scored], sizes[scored].astype(np.float64)
    hits = _hits(top, relevant[scored], n_items)  # (users, K) bool
    out: dict[str, float] = {}
    for k in ks:
        hit = np.zeros((len(top), k), dtype=bool)
        width = min(k, top.shape[1])
        hit[:, :width] = hits[:, :width]  # (users, k)
        ideal = np.minimum(k, sizes)  # (users,)
        gains = 1.0 / np.log2(np.arange(1, k + 1) + 1)  # (k,) the discount of positions 1..k
        idcg = np.cumsum(gains)[ideal.astype(np.int64) - 1]  # (users,) min(k, |R|) hits at the top
        precision = np.cumsum(hit, axis=1) / np.arange(1, k + 1)  # (users, k) precision@r
        shown = top[:, :width]
        out[f"recall@{k}"] = _mean(hit.sum(axis=1) / sizes)
        out[f"ndcg@{k}"] = _mean((hit * gains).sum(axis=1) / idcg)
        out[f"map@{k}"] = _mean((hit * precision).sum(axis=1) / ideal)
        out[f"coverage@{k}"] = len(np.unique(shown[shown >= 0])) / n_items if n_items else float("nan")
    out["users"] = float(len(top))
    return out


def evaluate_ranking(recommender: Recommender, history: Interactions, heldout: Interactions,
                     ks: list[int]) -> dict[str, float]:
    """The metrics of ``recommender``'s lists for the users with a held-out interaction.

    Args:
        recommender: A fitted recommender.
        history: The interactions known before the held-out ones (same id spaces): a user's
            vector is computed from them, and they are left out of the user's list.
        heldout: The held-out interactions: each user's relevant items.
        ks: List lengths to score.
    """
    users = np.unique(heldout.users)  # (n,) codes with at least one held-out interaction
    known = history.matrix()[users]
    relevant = heldout.matrix()[users]
    top, _ = recommend_codes(recommender, users, known, max(ks))
    return ranking_metrics(top, relevant, ks, history.n_items)


def _hits(top: np.ndarray, relevant: sparse.csr_matrix, n_items: int) -> np.ndarray:
    """(users, K): whether each listed item is one of the user's relevant items."""
    rows = np.repeat(np.arange(relevant.shape[0], dtype=np.int64), np.diff(relevant.indptr))
    wanted = rows * n_items + relevant.indices.astype(np.int64)  # one key per (user, relevant item)
    listed = np.arange(len(top), dtype=np.int64)[:, None] * n_items + top  # (users, K)
    return np.isin(listed, wanted) & (top >= 0)


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else float("nan")
