"""EASE (model.type: ease) and the default model.type: auto that picks it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import sparse

from modelmill.bundle import read_bundle
from modelmill.config.io import parse_task_config
from modelmill.config.recommend import RecommendConfig
from modelmill.errors import BundleError, ModelError
from modelmill.recommending.auto import resolved
from modelmill.recommending.base import FitContext, RecommenderState, build_recommender
from modelmill.recommending.ease import L2_GRID, START_L2, Ease
from modelmill.recommending.interactions import Interactions
from modelmill.recommending.pipeline import RecommendPipeline, refresh_bundle
from modelmill.recommending.predictor import RecommendPredictor
from modelmill.tasks import load_task
from tests.recommending.test_pipeline import config, known_of, table


def interactions(pairs: list[tuple[int, int]], n_users: int, n_items: int) -> Interactions:
    users, items = (np.array(column, dtype=np.int64) for column in zip(*pairs, strict=True))
    return Interactions(users=users, items=items, weights=np.ones(len(pairs), dtype=np.float32), times=None,
                        user_ids=[f"u{i}" for i in range(n_users)], item_ids=[str(i) for i in range(n_items)])


def ease_config(**model: Any) -> RecommendConfig:
    parsed = parse_task_config(config({"type": "ease", **model}))
    assert isinstance(parsed, RecommendConfig)
    return parsed


def random_pairs(n_users: int, n_items: int, density: float, seed: int) -> list[tuple[int, int]]:
    taken = np.random.default_rng(seed).random((n_users, n_items)) < density
    return [(int(u), int(i)) for u, i in zip(*np.nonzero(taken), strict=True)]


def test_the_weights_are_steck_s_closed_form() -> None:
    """B = I − P·diag(1/diag P), P = (XᵀX + λI)⁻¹, zero diagonal: computed apart in float64."""
    pairs = random_pairs(60, 25, 0.2, seed=1)
    train = interactions(pairs, 60, 25)
    model = Ease(ease_config(l2=7.5)).fit(train, None, FitContext())
    x = np.zeros((60, 25))
    for u, i in pairs:
        x[u, i] = 1.0
    seen = np.flatnonzero(x.sum(axis=0))
    inverse = np.linalg.inv(x[:, seen].T @ x[:, seen] + 7.5 * np.eye(len(seen)))
    expected = np.eye(len(seen)) - inverse / np.diag(inverse)
    np.fill_diagonal(expected, 0.0)
    assert model.modelled_ is not None and model.weights_ is not None
    assert model.modelled_.tolist() == seen.tolist()
    np.testing.assert_allclose(model.weights_, expected, atol=2e-5)
    assert model.weights_.flags.c_contiguous  # rows summed per user: column-major would be copied on every call
    assert model.describe()["l2"] == 7.5 and "valid_ndcg_by_l2" not in model.describe()


def test_items_taken_together_are_recommended_together() -> None:
    """Items 0-3 go together, as do 4-7: a user with 0 and 1 gets 2 and 3 first."""
    rng = np.random.default_rng(0)
    pairs = []
    for user in range(80):
        group = range(0, 4) if user % 2 == 0 else range(4, 8)
        pairs += [(user, int(i)) for i in rng.choice(list(group), size=3, replace=False)]
    model = Ease(ease_config(l2=1.0)).fit(interactions(pairs, 80, 10), None, FitContext())
    known = sparse.csr_matrix(([1.0, 1.0], ([0, 0], [0, 1])), shape=(1, 10))
    scores = model.scores(np.array([-1]), known)[0]
    ranked = [int(i) for i in np.argsort(-scores, kind="stable") if i not in (0, 1)]  # what the user lacks
    assert set(ranked[:2]) == {2, 3}
    assert scores[8] == scores[9] < scores[:8].min()  # no one took 8 or 9: ranked after every modelled item
    assert scores[[2, 3]].min() > scores[[4, 5, 6, 7]].max()


def test_a_user_with_no_modelled_item_gets_the_popular_list_and_max_items_keeps_the_most_taken() -> None:
    pairs = [(u, 0) for u in range(6)] + [(u, 1) for u in range(4)] + [(u, 2) for u in range(3)] + [(0, 3), (1, 4)]
    model = Ease(ease_config(l2=1.0, max_items=3)).fit(interactions(pairs, 6, 6), None, FitContext())
    assert model.modelled_ is not None and model.modelled_.tolist() == [0, 1, 2]  # the three most taken
    known = sparse.csr_matrix(([1.0], ([0], [4])), shape=(1, 6))  # item 4 exists but is not modelled
    scores = model.scores(np.array([1]), known)[0]
    assert scores.tolist() == [6.0, 4.0, 3.0, 1.0, 1.0, 0.0]  # the training counts
    known = sparse.csr_matrix(([1.0], ([0], [0])), shape=(1, 6))
    scores = model.scores(np.array([0]), known)[0]
    assert np.isfinite(scores).all() and scores[[3, 4, 5]].max() < scores[[0, 1, 2]].min()
    assert scores[3] == scores[4] > scores[5]  # the items left out by their training counts: 1, 1, 0


@pytest.mark.parametrize("l2", [0.0, 1e-4, float("inf"), float("nan"), 1e12])
def test_an_l2_out_of_range_is_a_config_error(l2: float) -> None:
    from modelmill.errors import ConfigError

    with pytest.raises(ConfigError, match="model.l2"):
        ease_config(l2=l2)


def test_l2_auto_climbs_the_grid_on_the_valid_part_and_keeps_the_best() -> None:
    train = interactions(random_pairs(120, 40, 0.15, seed=2), 120, 40)
    valid = interactions(random_pairs(120, 40, 0.03, seed=3), 120, 40)
    model = Ease(ease_config()).fit(train, valid, FitContext())
    summary = model.describe()
    tried = {float(k): v for k, v in summary["valid_ndcg_by_l2"].items()}
    assert START_L2 in tried and len(tried) >= 3 and set(tried) <= set(L2_GRID)
    assert summary["l2"] == max(tried, key=lambda l2: tried[l2])
    index = L2_GRID.index(summary["l2"])  # a local best: its neighbours were tried and are no better
    for neighbour in (index - 1, index + 1):
        if 0 <= neighbour < len(L2_GRID):
            assert tried[L2_GRID[neighbour]] <= tried[summary["l2"]]
    chosen = Ease(ease_config(l2=summary["l2"])).fit(train, None, FitContext())
    assert chosen.weights_ is not None and model.weights_ is not None
    np.testing.assert_array_equal(chosen.weights_, model.weights_)  # the weights kept are the chosen λ's


def test_a_state_that_does_not_describe_the_catalogue_is_a_bundle_error() -> None:
    model = Ease(ease_config(l2=1.0)).fit(interactions(random_pairs(20, 8, 0.4, seed=4), 20, 8), None, FitContext())
    state = model.state()
    again = Ease.from_state(model.config, state)
    assert again.weights_ is not None and model.weights_ is not None
    np.testing.assert_array_equal(again.weights_, model.weights_)
    hostile = [{"modelled": torch.tensor([0, 99])}, {"modelled": torch.tensor(3)},
               {"weights": torch.full_like(state.tensors["weights"], float("nan"))},
               {"popularity": torch.zeros(9)}, {"weights": torch.zeros(2, 3)}]
    for change in hostile:
        with pytest.raises(BundleError, match="rebuild the bundle"):
            Ease.from_state(model.config, RecommenderState(json=dict(state.json), tensors={**state.tensors, **change}))
    with pytest.raises(BundleError, match="rebuild the bundle"):
        Ease.from_state(model.config, RecommenderState(json=dict(state.json), tensors={}))
    with pytest.raises(ModelError, match="before it was fitted"):
        Ease(model.config).scores(np.array([0]), sparse.csr_matrix((1, 8)))


@pytest.mark.parametrize(("overrides", "picked"), [
    ({}, "ease"),
    ({"interactions": {"user": "uid", "item": "iid", "time": "when", "item_features": ["kind"]}}, "two_tower"),
    ({"model": {"type": "auto", "max_items": 5}}, "two_tower"),
], ids=["small catalogue", "item features", "more items than max_items"])
def test_auto_picks_ease_unless_item_features_or_too_many_items(overrides: dict[str, Any], picked: str) -> None:
    raw = config()
    raw.pop("model")  # the default: auto
    raw.update(overrides)
    parsed = parse_task_config(raw)
    assert isinstance(parsed, RecommendConfig) and parsed.model.type == "auto"
    train = interactions([(u, i) for u in range(4) for i in range(8)], 4, 8)
    chosen, why = resolved(parsed, train)
    assert chosen.model.type == picked and why is not None and why.startswith(f"auto picked {picked}")
    assert resolved(chosen, train) == (chosen, None)  # a model named is kept as it is
    with pytest.raises(ModelError, match="resolved from the training data"):
        build_recommender(parsed)
    if picked == "ease":  # the whole pipeline: the bundle's config names the model fitted
        pipeline = RecommendPipeline(parsed).fit(table())
        assert pipeline.config.model.type == "auto"  # the user's config is left as it was given
        assert pipeline.metrics_["model"]["picked"].startswith("auto picked ease")
        assert pipeline.parts.config.model.type == "ease"


def test_an_ease_bundle_loads_to_identical_lists_and_ranks_from_refreshed_and_sent_items(tmp_path: Path) -> None:
    frame = table()
    pipeline = RecommendPipeline(config({"type": "ease"}, evaluation={"k": [5, 10], "plots": False})).fit(frame)
    assert pipeline.metrics_["ndcg@10"] > pipeline.metrics_["popularity_ndcg@10"]  # two tastes: items tell them apart
    bundle = pipeline.save(tmp_path / "bundle")
    assert read_bundle(bundle).task_config().model.type == "ease"
    assert b"type: ease" in (bundle / "report.html").read_bytes()  # the report shows the config fitted
    users = pd.DataFrame({"uid": ["u0", "u1", "u7", "stranger"]})
    pd.testing.assert_frame_equal(pipeline.predict(users), load_task(bundle).predict(users))
    before = RecommendPredictor.from_bundle(read_bundle(bundle)).recommend("u0", 10)
    assert not known_of(frame, "u0") & set(before.items)
    odd = [i for i in range(15, 30) if str(i) not in before.items[:1]][:4]  # the other taste's items
    refreshed = refresh_bundle(bundle, pd.DataFrame({"uid": ["u0"] * 4, "iid": odd, "stars": 5, "when": 1}),
                               tmp_path / "refreshed")
    after = RecommendPredictor.from_bundle(read_bundle(refreshed)).recommend("u0", 10)
    assert not {str(i) for i in odd} & set(after.items)
    others = sum(int(item) >= 15 for item in after.items) - sum(int(item) >= 15 for item in before.items)
    assert others > 0  # the other taste's items moved up: ranked from the refreshed items, no refit
    parts = RecommendPredictor.from_bundle(read_bundle(bundle))
    sent = parts.recommend("someone", 5, items=["0", "2", "4"])  # an even taste: the first half's items
    assert sent.fallback == "history" and all(int(item) < 15 for item in sent.items)
    assert parts.recommend("someone", 5).fallback == "popular"
    capped = RecommendPipeline(config({"type": "ease", "max_items": 6}, evaluation={"k": [5], "plots": False}))
    parts = capped.fit(frame).parts
    assert isinstance(parts.recommender, Ease) and parts.recommender.modelled_ is not None
    left_out = next(item for item in parts.item_ids if parts.item_ids.index(item) not in parts.recommender.modelled_)
    only_left_out = parts.recommend("someone", 5, items=[left_out])
    assert only_left_out.fallback == "popular" and left_out not in only_left_out.items  # not ranked from it


def test_a_fitted_user_with_no_modelled_item_is_said_to_get_the_popular_list_one_by_one_and_in_a_batch() -> None:
    capped = RecommendPipeline(config({"type": "ease", "max_items": 2}, evaluation={"k": [5], "plots": False}))
    parts = capped.fit(table()).parts
    assert isinstance(parts.recommender, Ease) and parts.recommender.modelled_ is not None
    modelled = set(parts.recommender.modelled_.tolist())
    users = parts.user_ids[:parts.fitted_users]
    batch = parts.recommend_many(users, 5)
    labels = set()
    for code, (user, listed) in enumerate(zip(users, batch, strict=True)):
        single = parts.recommend(user, 5)
        expected = None if set(parts.known[code].indices.tolist()) & modelled else "popular"
        assert single.fallback == listed.fallback == expected, user
        assert single.items == listed.items, user
        labels.add(expected)
    assert labels == {None, "popular"}  # both kinds of user are in the table


def test_an_ease_bundle_is_served_over_http_as_it_lists_in_memory(tmp_path: Path) -> None:
    import httpx

    from tests.serving.conftest import live_server

    frame = table()
    raw = config(None, evaluation={"k": [5], "plots": False, "report": False})
    raw.pop("model")  # the default, auto: EASE here
    pipeline = RecommendPipeline(raw).fit(frame)
    bundle = pipeline.save(tmp_path / "bundle")
    local = pipeline.parts
    with live_server(bundle) as live, httpx.Client(base_url=live.url, timeout=30) as http:
        assert http.get("/v1/model").json()["model_type"] == "ease"
        body = http.post("/v1/recommend", json={"user": "u3", "k": 7}).json()
        assert [entry["item"] for entry in body["items"]] == local.recommend("u3", 7).items
        assert (body["known_user"], body["fallback"]) == (True, None)
        sent = http.post("/v1/recommend", json={"user": "new", "items": ["16", "18"], "k": 5}).json()
        assert sent["fallback"] == "history" and all(int(entry["item"]) >= 15 for entry in sent["items"])
        assert http.post("/v1/recommend", json={"user": "u3", "k": 0}).status_code == 422
        assert http.post("/v1/recommend", json={"user": "u3", "exclude": "16"}).status_code == 422


def test_user_features_are_read_but_said_to_be_unused() -> None:
    frame = table().assign(segment=lambda f: f["uid"].str[1:].astype(int) % 2)
    interactions_spec = {"user": "uid", "item": "iid", "rating": "stars", "min_rating": 4, "time": "when",
                         "user_features": ["segment"]}
    pipeline = RecommendPipeline(config({"type": "ease"}, interactions=interactions_spec,
                                        evaluation={"k": [5], "plots": False})).fit(frame)
    assert any("no model uses them yet" in warning for warning in pipeline.fit_warnings_)
