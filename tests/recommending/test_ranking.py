"""Top-k lists (exclusion, padding, ties, chunks) and the ranking metrics, checked against values
worked out by hand on tiny cases."""

from __future__ import annotations

import math
from typing import Any, Self

import numpy as np
import pytest
from scipy import sparse

from modelmill.config.recommend import RecommendConfig
from modelmill.recommending.base import FitContext, Recommender, RecommenderState
from modelmill.recommending.interactions import Interactions
from modelmill.recommending import ranking
from modelmill.recommending.metrics import evaluate_ranking, ranking_metrics
from modelmill.recommending.ranking import recommend_codes, top_k


def csr(rows: list[list[int]], n_items: int) -> sparse.csr_matrix:
    """Users × items with a 1 at each listed item."""
    indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])])
    indices = np.array([i for r in rows for i in r], dtype=np.int64)
    return sparse.csr_matrix((np.ones(len(indices), dtype=np.float32), indices, indptr), shape=(len(rows), n_items))


class Fixed(Recommender):
    """Scores from a table (one row per user code), recording the calls it gets."""

    kind = "fixed"

    def __init__(self, table: np.ndarray) -> None:
        super().__init__(RecommendConfig.model_validate({"name": "t", "data": {"source": "x.csv"},
                                                         "interactions": {"user": "u", "item": "i"}}))
        self.table = table
        self.calls: list[tuple[list[int], int]] = []

    def fit(self, train: Interactions, valid: Interactions | None, context: FitContext) -> Self:
        return self

    def scores(self, users: np.ndarray, known: sparse.csr_matrix, user_features: Any = None) -> np.ndarray:
        self.calls.append((users.tolist(), known.shape[0]))
        return np.broadcast_to(self.table[users], (len(users), self.table.shape[1]))  # read-only, on purpose

    def state(self) -> RecommenderState:
        return RecommenderState()

    @classmethod
    def from_state(cls, config: RecommendConfig, state: RecommenderState) -> Self:
        raise NotImplementedError


# ------------------------------------------------------------------------- top k


def test_top_k_best_first_and_excluded_never() -> None:
    scores = np.array([[0.1, 0.9, 0.5, 0.7], [4.0, 3.0, 2.0, 1.0]])
    assert top_k(scores, 2).tolist() == [[1, 3], [0, 1]]
    assert top_k(scores, 2, csr([[1], [0, 2]], 4)).tolist() == [[3, 2], [1, 3]]
    assert scores[0, 1] == 0.9  # the caller's scores are left alone


def test_top_k_pads_with_minus_one() -> None:
    scores = np.array([[1.0, 2.0, 3.0], [1.0, np.nan, -np.inf]])
    assert top_k(scores, 5).tolist() == [[2, 1, 0, -1, -1], [0, -1, -1, -1, -1]]  # NaN and -inf: never listed
    assert top_k(scores, 2, csr([[0, 1, 2], [0]], 3)).tolist() == [[-1, -1], [-1, -1]]
    assert top_k(np.zeros((0, 3)), 2).shape == (0, 2)


def test_top_k_breaks_ties_by_the_lower_code() -> None:
    scores = np.array([[1.0, 2.0, 2.0, 1.0, 2.0, 0.0], [5.0, 5.0, 5.0, 5.0, 5.0, 5.0]])
    assert top_k(scores, 2).tolist() == [[1, 2], [0, 1]]
    assert top_k(scores, 4).tolist() == [[1, 2, 4, 0], [0, 1, 2, 3]]
    assert top_k(scores, 4, csr([[2], [0, 3]], 6)).tolist() == [[1, 4, 0, 3], [1, 2, 4, 5]]


def test_top_k_matches_a_plain_sort_on_random_ties() -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, (40, 15)).astype(np.float64)
    scores[scores == 0] = -np.inf
    exclude = sparse.random(40, 15, density=0.3, format="csr", random_state=1)
    for k in (1, 5, 15, 20):
        got = top_k(scores, k, exclude)
        for row in range(40):
            left_out = set(exclude[row].indices.tolist())
            ranked = sorted((-v, c) for c, v in enumerate(scores[row]) if c not in left_out and v > -np.inf)
            expected = [c for _, c in ranked[:k]]
            assert got[row].tolist() == expected + [-1] * (k - len(expected))


def test_many_tied_scores_keep_the_lowest_codes() -> None:
    # flat scores (a cold user, items no one took): each row keeps k of its 50,000 ties, not all of them
    n, n_items = 64, 50_000
    scores = np.zeros((n, n_items), dtype=np.float32)
    scores[1, 49_990:] = 1.0  # 10 above the ties
    scores[2, 7] = 2.0  # one above, then the lowest tied codes
    scores[3] = -np.inf  # nothing to recommend
    scores[3, [40_000, 123]] = 0.0
    exclude = csr([[0, 2]] + [[]] * (n - 1), n_items)
    got = top_k(scores, 5, exclude)
    assert got[0].tolist() == [1, 3, 4, 5, 6]
    assert got[1].tolist() == [49_990, 49_991, 49_992, 49_993, 49_994]
    assert got[2].tolist() == [7, 0, 1, 2, 3]
    assert got[3].tolist() == [123, 40_000, -1, -1, -1]
    assert (got[4:] == np.arange(5)).all()


def test_top_k_refuses_an_empty_list_and_a_misshapen_exclude() -> None:
    with pytest.raises(ValueError, match="at least one item, got k=0"):
        top_k(np.zeros((1, 3)), 0)
    with pytest.raises(ValueError, match=r"exclude is \(1, 2\), the scores \(1, 3\)"):
        top_k(np.zeros((1, 3)), 1, csr([[0]], 2))


def test_recommend_codes_leaves_out_known_and_excluded_items_chunk_by_chunk() -> None:
    model = Fixed(np.array([[0.9, 0.8, 0.7, 0.6], [0.1, 0.2, 0.3, 0.4], [1.0, 1.0, 0.0, 0.0]], dtype=np.float32))
    users = np.array([0, 1, 2])
    known = csr([[0], [], [0, 1]], 4)
    items, scores = recommend_codes(model, users, known, 3, csr([[2], [3], []], 4), chunk=2)
    assert items.tolist() == [[1, 3, -1], [2, 1, 0], [2, 3, -1]]
    assert items.dtype == np.int64 and scores.dtype == np.float32
    np.testing.assert_allclose(scores, [[0.8, 0.6, np.nan], [0.3, 0.2, 0.1], [0.0, 0.0, np.nan]])
    assert model.calls == [([0, 1], 2), ([2], 1)]  # two chunks, each with its users' known rows


def test_recommend_codes_leaves_out_entries_stored_as_zero() -> None:
    # an exclude (or known) entry whose value is 0 is still an item to leave out: the stored entry counts
    model = Fixed(np.array([[3.0, 2.0, 1.0, 0.5]], dtype=np.float32))
    zero = sparse.csr_matrix((np.zeros(1, np.float32), (np.array([0]), np.array([0]))), shape=(1, 4))
    none = sparse.csr_matrix((1, 4), dtype=np.float32)
    assert recommend_codes(model, np.array([0]), none, 2, zero)[0].tolist() == [[1, 2]]
    assert recommend_codes(model, np.array([0]), zero, 2)[0].tolist() == [[1, 2]]
    # known 1 and exclude -1 at the same item: the sum is 0, the item still left out
    known = csr([[1]], 4)
    minus = sparse.csr_matrix((np.array([-1.0], np.float32), (np.array([0]), np.array([1]))), shape=(1, 4))
    assert recommend_codes(model, np.array([0]), known, 2, minus)[0].tolist() == [[0, 2]]
    assert top_k(np.array([[3.0, 2.0, 1.0]]), 1, zero[:, :3]).tolist() == [[1]]


def test_recommend_codes_sizes_chunks_to_the_catalogue(monkeypatch: pytest.MonkeyPatch) -> None:
    # at most ranking._CELLS scores at a time: 10 cells over 4 items is 2 users a chunk, whatever `chunk` says
    monkeypatch.setattr(ranking, "_CELLS", 10)
    model = Fixed(np.tile(np.array([[0.1, 0.4, 0.3, 0.2]], dtype=np.float32), (5, 1)))
    items, _ = recommend_codes(model, np.arange(5), csr([[]] * 5, 4), 2, chunk=2048)
    assert items.tolist() == [[1, 2]] * 5
    assert [users for users, _ in model.calls] == [[0, 1], [2, 3], [4]]
    monkeypatch.setattr(ranking, "_CELLS", 3)  # a catalogue larger than the budget: one user at a time
    model.calls.clear()
    recommend_codes(model, np.arange(2), csr([[]] * 2, 4), 2)
    assert [users for users, _ in model.calls] == [[0], [1]]


def test_recommend_codes_never_changes_the_models_scores() -> None:
    class Shared(Fixed):
        def scores(self, users: np.ndarray, known: sparse.csr_matrix, user_features: Any = None) -> np.ndarray:
            return self.table[: len(users)]  # a writeable view of the model's own array

    model = Shared(np.array([[0.9, 0.1, 0.5]], dtype=np.float32))
    assert recommend_codes(model, np.array([0]), csr([[0]], 3), 1)[0].tolist() == [[2]]
    assert model.table[0].tolist() == pytest.approx([0.9, 0.1, 0.5])  # item 0 was not set to -inf in it


# ------------------------------------------------------------------------- metrics


def test_metrics_by_hand() -> None:
    # user 0: relevant {1, 3}, list [1, 2, 3]: hits at ranks 1 and 3
    # user 1: relevant {0, 2, 4}, list [5, 0, -1]: a hit at rank 2, then padding
    # user 2: no relevant item: not scored
    top = np.array([[1, 2, 3], [5, 0, -1], [0, 1, 2]])
    relevant = csr([[1, 3], [0, 2, 4], []], 6)
    got = ranking_metrics(top, relevant, [1, 3], n_items=6)
    log2_3, log2_4 = math.log2(3), math.log2(4)
    expected = {
        "recall@1": (1 / 2 + 0) / 2,
        "ndcg@1": (1 + 0) / 2,
        "map@1": (1 + 0) / 2,
        "coverage@1": 2 / 6,  # items 1 and 5
        "recall@3": (2 / 2 + 1 / 3) / 2,
        "ndcg@3": ((1 + 1 / log2_4) / (1 + 1 / log2_3) + (1 / log2_3) / (1 + 1 / log2_3 + 1 / log2_4)) / 2,
        "map@3": ((1 / 1 + 2 / 3) / 2 + (1 / 2) / 3) / 2,
        "coverage@3": 5 / 6,  # items 1, 2, 3 and 5, 0 (user 2's list is not scored, padding is no item)
        "users": 2.0,
    }
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value), key


def test_a_perfect_ranking_scores_one() -> None:
    relevant = csr([[4, 2], [0], [1, 3, 5]], 6)
    top = np.array([[2, 4, 0], [0, 1, 2], [5, 3, 1]])
    got = ranking_metrics(top, relevant, [3], n_items=6)
    assert got["recall@3"] == got["ndcg@3"] == got["map@3"] == pytest.approx(1.0)
    # more relevant items than the list holds: ndcg and map stay 1, recall is k / |R|
    got = ranking_metrics(np.array([[3, 1]]), csr([[1, 3, 5]], 6), [2], n_items=6)
    assert got["ndcg@2"] == got["map@2"] == pytest.approx(1.0) and got["recall@2"] == pytest.approx(2 / 3)


def test_padding_is_never_a_hit() -> None:
    # user 1's list is padded with -1; user 0's relevant item is the last code (5): keyed as user × n_items + item,
    # user 1's padding (1 × 6 - 1 = 5) would collide with user 0's item 5 without the padding mask
    top = np.array([[0, 1], [2, -1]])
    relevant = csr([[5], [2]], 6)
    got = ranking_metrics(top, relevant, [2], n_items=6)
    assert got["recall@2"] == 0.5 and got["ndcg@2"] == 0.5 and got["map@2"] == 0.5 and got["coverage@2"] == 0.5
    got = ranking_metrics(np.array([[-1, -1], [-1, -1]]), csr([[5], [0]], 6), [2], n_items=6)
    assert got["recall@2"] == got["ndcg@2"] == got["map@2"] == got["coverage@2"] == 0.0


def test_metrics_of_a_list_shorter_than_k_and_of_no_user() -> None:
    got = ranking_metrics(np.array([[0]]), csr([[0, 1]], 3), [2], n_items=3)
    assert got["recall@2"] == 0.5 and got["ndcg@2"] == pytest.approx(1 / (1 + 1 / math.log2(3)))
    empty = ranking_metrics(np.array([[0]]), csr([[]], 3), [2], n_items=3)
    assert empty["users"] == 0 and math.isnan(empty["recall@2"])


def test_evaluate_ranking_excludes_the_history_and_scores_the_heldout() -> None:
    def part(users: list[int], items: list[int]) -> Interactions:
        return Interactions(user_ids=["a", "b", "c"], item_ids=list("pqrs"), users=np.array(users),
                            items=np.array(items), weights=np.ones(len(users), dtype=np.float32))

    model = Fixed(np.array([[4, 3, 2, 1], [4, 3, 2, 1], [4, 3, 2, 1]], dtype=np.float32))
    history = part([0, 0, 1, 2], [0, 1, 0, 3])
    heldout = part([0, 1], [2, 3])  # user c has nothing held out: not scored
    got = evaluate_ranking(model, history, heldout, [1, 2])
    # a's list [2, 3] (0 and 1 known): hit at 1; b's list [1, 2] (0 known): no hit in the top 2
    assert got["recall@1"] == 0.5 and got["recall@2"] == 0.5 and got["users"] == 2
    assert got["coverage@2"] == 3 / 4 and model.calls == [([0, 1], 2)]
