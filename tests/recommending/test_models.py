"""The recommendation model types: popularity and the two-tower, on tiny interaction tables
built here (two groups of users, each taking the items of its own group)."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import sparse

from modelmill.config.recommend import RecommendConfig
from modelmill.errors import BundleError, ConfigError, ModelError
from modelmill.recommending.base import FitContext, RecommenderState, build_recommender
from modelmill.recommending.interactions import Interactions
from modelmill.recommending.popularity import Popularity
from modelmill.recommending.ranking import recommend_codes
from modelmill.recommending.registered import RECOMMENDERS
from modelmill.recommending.towers import TwoTowerNet, item_tokens
from modelmill.recommending.two_tower import TwoTower, _MultinomialLoss

N_USERS, GROUP_ITEMS = 40, 10  # users 0-19 take items 0-9 (group a), users 20-39 items 10-19 (group b)


def config(model: dict[str, Any] | None = None, **training: Any) -> RecommendConfig:
    return RecommendConfig.model_validate({
        "name": "tiny", "data": {"source": "dataset:movielens"},
        "interactions": {"user": "u", "item": "i", "item_features": ["kind", "year"]},
        "model": model or {"type": "two_tower", "factors": 8},
        "training": {"epochs": 40, "batch_size": 64, "progress": False, "threads": 1, "device": "cpu",
                     "early_stopping": {"patience": 40}, **training}})


def groups(seed: int = 0) -> tuple[Interactions, Interactions]:
    """Train and valid parts: each user takes 6 of their group's 10 items (5 train, 1 valid);
    items 20 and 21 are cold (nobody took them), of kind a and b."""
    rng = np.random.default_rng(seed)
    users, items = [], []
    for user in range(N_USERS):
        base = 0 if user < N_USERS // 2 else GROUP_ITEMS
        users += [user] * 6
        items += list(base + rng.choice(GROUP_ITEMS, 6, replace=False))
    users_a, items_a = np.array(users), np.array(items)
    last = np.arange(len(users_a)) % 6 == 5
    features = pd.DataFrame({"kind": ["a"] * 10 + ["b"] * 10 + ["a", "b"],
                             "year": np.r_[np.arange(20) + 1990.0, np.nan, 2000.0]})
    data = Interactions([str(u) for u in range(N_USERS)], [f"m{i:02d}" for i in range(2 * GROUP_ITEMS + 2)],
                        users_a, items_a, np.ones(len(users_a), np.float32), item_features=features)
    return data.subset(~last), data.subset(last)


def test_both_types_are_registered() -> None:
    assert {"popularity", "two_tower"} <= set(RECOMMENDERS.names())
    assert isinstance(build_recommender(config({"type": "popularity"})), Popularity)
    assert isinstance(build_recommender(config()), TwoTower)


def test_popularity_ranks_by_summed_weights_and_survives_a_round_trip() -> None:
    data = Interactions(["u1", "u2"], ["a", "b", "c"], np.array([0, 1, 1]), np.array([2, 2, 0]),
                        np.array([1.0, 3.0, 1.5], np.float32))
    model = Popularity(config({"type": "popularity"})).fit(data, None, FitContext())
    scores = model.scores(np.array([0, -1]), sparse.csr_matrix((2, 3)))
    assert scores.shape == (2, 3) and scores[0].tolist() == [1.5, 0.0, 4.0] and scores[1].tolist() == [1.5, 0, 4]
    again = Popularity.from_state(model.config, model.state())
    assert np.array_equal(again.scores(np.array([0]), sparse.csr_matrix((1, 3))), scores[:1])
    with pytest.raises(BundleError, match="no counts"):
        Popularity.from_state(model.config, RecommenderState(json={"items": 4}, tensors={}))
    with pytest.raises(ModelError, match="before it was fitted"):
        Popularity(model.config).scores(np.array([0]), sparse.csr_matrix((1, 3)))


@pytest.fixture(scope="module")
def fitted() -> tuple[TwoTower, Interactions, Interactions]:
    train, valid = groups()
    model = TwoTower(config(optimizer={"type": "adamw", "lr": 0.03, "weight_decay": 0.0})).fit(
        train, valid, FitContext(seed=1))
    return model, train, valid


def test_two_tower_learns_the_groups(fitted: tuple[TwoTower, Interactions, Interactions]) -> None:
    model, train, valid = fitted
    users = np.arange(N_USERS)
    top, _ = recommend_codes(model, users, train.matrix()[users], 3)
    same_group = (top < GROUP_ITEMS) == (users[:, None] < N_USERS // 2)
    assert same_group.mean() > 0.9, top
    summary = model.describe()
    assert summary["epochs"] >= 1 and summary["valid_ndcg@10"] > 0.3


def test_unknown_users_are_ranked_from_their_history(fitted: tuple[TwoTower, Interactions, Interactions]) -> None:
    model = fitted[0]
    known = sparse.csr_matrix((np.ones(2), ([0, 1], [12, 15])), shape=(2, 22))  # two new users of group b
    top, _ = recommend_codes(model, np.array([-1, N_USERS + 5]), known, 3)  # -1 and a code added later
    assert (top >= GROUP_ITEMS).all() and (top < 2 * GROUP_ITEMS + 2).all(), top


def test_cold_items_are_ranked_by_their_features(fitted: tuple[TwoTower, Interactions, Interactions]) -> None:
    model, train, _ = fitted
    scores = model.scores(np.arange(N_USERS), train.matrix())
    cold_a, cold_b = scores[:, 20], scores[:, 21]  # nobody took them: their kind alone ranks them
    group_a = np.arange(N_USERS) < N_USERS // 2
    assert (cold_a[group_a] > cold_b[group_a]).mean() > 0.8
    assert (cold_b[~group_a] > cold_a[~group_a]).mean() > 0.8


def test_state_round_trip_gives_identical_scores(fitted: tuple[TwoTower, Interactions, Interactions]) -> None:
    model, train, _ = fitted
    state = model.state()
    assert set(state.tensors) == {"users", "history", "items"}
    again = TwoTower.from_state(model.config, RecommenderState(json=dict(state.json), tensors=dict(state.tensors)))
    users = np.array([0, 25, -1])
    known = train.matrix()[[0, 25, 3]]
    assert np.array_equal(again.scores(users, known), model.scores(users, known))
    broken = dict(state.tensors, items=state.tensors["items"][:, :-1])
    with pytest.raises(BundleError, match="items tensor"):
        TwoTower.from_state(model.config, RecommenderState(json=state.json, tensors=broken))
    with pytest.raises(BundleError, match="lacks"):
        TwoTower.from_state(model.config, RecommenderState(json={}, tensors={}))


def test_fits_repeat_with_a_seed_and_sampled_negatives_work() -> None:
    train, valid = groups()
    cfg = config({"type": "two_tower", "factors": 8, "negatives": 5}, epochs=3)
    first = TwoTower(cfg).fit(train, valid, FitContext(seed=3))
    bare = replace(train, item_features=None)  # no item features: ids alone
    second = TwoTower(cfg).fit(bare, None, FitContext(seed=3))  # nothing held out: all epochs run
    again = TwoTower(cfg).fit(train, valid, FitContext(seed=3))
    known = train.matrix()
    assert np.array_equal(first.scores(np.arange(4), known[:4]), again.scores(np.arange(4), known[:4]))
    assert second.describe()["epochs"] == 3 and second.describe()["feature_tokens"] == 0
    exact = TwoTower(config({"type": "two_tower", "factors": 8, "negatives": "all"}, epochs=2))
    assert exact.fit(train, valid, FitContext()).describe()["epochs"] == 2  # the full softmax


def test_the_per_user_softmax_is_the_default_on_a_small_catalogue() -> None:
    train, valid = groups()
    model = TwoTower(config()).fit(train, valid, FitContext(seed=1))
    assert model.settings.negatives == "auto" and model.describe()["valid_ndcg@10"] > 0.3
    known = sparse.csr_matrix(np.array([[1, 1, 0, 0], [0, 0, 1, 0]], dtype=np.float32))
    net = TwoTowerNet(2, 4, None, known, np.ones(4), factors=3, user_id=False, history=True, dropout=0.0,
                      negatives=None, power=0.5, top=2, per_user=True)
    net.train()
    logits = net([torch.tensor([0, 1])])
    assert logits.shape == (2, 4)  # one row per user, the whole catalogue
    loss = _MultinomialLoss(None, known)(logits, torch.tensor([0, 1]))
    log_p = torch.log_softmax(logits, dim=1)
    assert torch.allclose(loss, -(log_p[0, 0] + log_p[0, 1] + log_p[1, 2]) / 2)  # each user's items


def test_the_positive_is_left_out_of_its_users_bag_and_accidental_hits_masked() -> None:
    known = sparse.csr_matrix(np.array([[1, 0, 0, 0], [1, 1, 0, 0]], dtype=np.float32))
    net = TwoTowerNet(2, 4, None, known, np.array([2.0, 1, 1, 1]), factors=3, user_id=False, history=True,
                      dropout=0.0, negatives=50, power=0.5, top=2)
    net.train()
    with torch.no_grad():
        alone = net.user_vectors(torch.tensor([0]), leave_out=torch.tensor([0]))
        assert torch.equal(alone, torch.zeros(1, 3))  # its only item is the target: nothing left
        other = net.user_vectors(torch.tensor([1]), leave_out=torch.tensor([0]))
        assert torch.allclose(other, net.history.weight[1:2]) if net.history is not None else False
        logits = net([torch.tensor([0, 1]), torch.tensor([1, 3])])
    assert logits.shape == (2, 51) and torch.isfinite(logits[:, 0]).all()
    assert torch.isneginf(logits[:, 1:]).any()  # 50 draws from 4 items hit each positive


def test_item_tokens_split_lists_and_bin_numbers() -> None:
    tokens, names = item_tokens(pd.DataFrame({"genres": ["A|B", None, "B"], "year": [1990.0, 2000.0, np.nan]}))
    assert tokens is not None and "genres=A" in names and "genres=B" in names
    assert np.allclose(np.asarray(tokens.sum(axis=1)).ravel(), [1, 1, 1])  # each item: a mean of its tokens
    assert tokens[2].nnz == 1 and tokens[0].nnz == 3
    assert item_tokens(None) == (None, [])


def test_bad_settings_say_what_to_fix() -> None:
    train, valid = groups()
    with pytest.raises(ConfigError, match="no metric of the two-tower"):
        TwoTower(config(early_stopping={"metric": "rmse"})).fit(train, valid, FitContext())
    with pytest.raises(ModelError, match="before it was fitted"):
        TwoTower(config()).scores(np.array([0]), sparse.csr_matrix((1, 22)))


def test_one_user_is_scored_fast_over_nine_thousand_items() -> None:
    rng = np.random.default_rng(0)
    items, factors = 9000, 64
    state = RecommenderState(json={"users": 700, "items": items, "factors": factors},
                             tensors={"users": torch.randn(700, factors), "history": torch.randn(items, factors),
                                      "items": torch.randn(items, factors + 1)})
    model = TwoTower.from_state(config(), state)
    known = sparse.csr_matrix((np.ones(80), (np.zeros(80, int), rng.choice(items, 80, replace=False))),
                              shape=(1, items))
    timings = []
    for _ in range(200):
        started = time.perf_counter()
        model.scores(np.array([3]), known)
        timings.append(time.perf_counter() - started)
    assert np.median(timings) < 0.05  # guards against a per-item Python loop (~10 ms here); the figure is a benchmark's


def test_training_defaults_are_a_recommenders_under_the_keys_given() -> None:
    cfg = config(epochs=3)
    assert cfg.training.epochs == 3 and cfg.training.optimizer.lr == 0.01  # the recommender's lr, not 1e-3
    bare = RecommendConfig.model_validate({"name": "x", "data": {"source": "dataset:movielens"},
                                           "interactions": {"user": "u", "item": "i"}})
    assert bare.training.batch_size == 1024 and bare.training.early_stopping.patience == 15
    with pytest.raises(ValueError, match="users would have no vector"):
        config({"type": "two_tower", "user_id": False, "history": False})
