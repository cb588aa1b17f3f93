"""`task: recommend` in Python: fit on a small synthetic table, save, load back with identical
lists; predict leaves out the known items; the fallbacks; evaluate; refresh (new known items
left out, new users added, the lineage recorded); and the errors."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelmill.bundle import read_bundle
from modelmill.errors import BundleError, ConfigError, DataError
from modelmill.recommending.pipeline import RecommendPipeline, refresh_bundle
from modelmill.recommending.predictor import RecommendPredictor
from modelmill.tasks import load_task, pipeline_for


def table(users: int = 40, items: int = 30, per_user: int = 9, seed: int = 0) -> pd.DataFrame:
    """Two tastes: even users rate mostly the first half of the items highly, odd users the
    second half; one rating per user and item, a timestamp per rating."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(users):
        half = np.arange(items // 2) if user % 2 == 0 else np.arange(items // 2, items)
        liked = rng.choice(half, size=per_user, replace=False)
        for step, item in enumerate(liked):
            rows.append({"uid": f"u{user}", "iid": int(item), "stars": 5 if rng.random() < 0.85 else 2,
                         "when": 1_600_000_000 + 3600 * (step + user)})
    return pd.DataFrame(rows)


def config(model: dict[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "task": "recommend", "name": "shop", "data": {"source": "interactions.csv"},
        "interactions": {"user": "uid", "item": "iid", "rating": "stars", "min_rating": 4, "time": "when"},
        "model": model or {"type": "popularity"},
        "training": {"epochs": 3, "batch_size": 64, "progress": False},
        "evaluation": {"k": [5, 10]},
    }
    raw.update(overrides)
    return raw


TWO_TOWER = {"type": "two_tower", "factors": 8, "negatives": 20}


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[RecommendPipeline, Path]:
    pipeline = RecommendPipeline(config()).fit(table())
    return pipeline, pipeline.save(tmp_path_factory.mktemp("recommend") / "bundle")


def known_of(frame: pd.DataFrame, user: str) -> set[str]:
    rows = frame[(frame["uid"] == user) & (frame["stars"] >= 4)]
    return {str(i) for i in rows["iid"]}


def later(frame: pd.DataFrame, users: int = 10, per_user: int = 4, items: int = 30) -> pd.DataFrame:
    """Interactions newer than ``frame``'s: for its first ``users`` users, ``per_user`` items of
    their taste that ``frame`` does not give them (rated 5), after every time in ``frame``; and
    a user it does not know ("fresh")."""
    rows, start = [], int(frame["when"].max()) + 3600
    for user in range(users):
        half = range(items // 2) if user % 2 == 0 else range(items // 2, items)
        had = {int(i) for i in frame.loc[frame["uid"] == f"u{user}", "iid"]}
        for step, item in enumerate([i for i in half if i not in had][:per_user]):
            rows.append({"uid": f"u{user}", "iid": item, "stars": 5, "when": start + 60 * step})
    rows += [{"uid": "fresh", "iid": item, "stars": 5, "when": start + 60 * step}
             for step, item in enumerate([0, 2, 4, 6])]
    return pd.DataFrame(rows)


def test_fit_scores_a_popularity_model_without_repeating_it_as_its_floor(
        fitted: tuple[RecommendPipeline, Path]) -> None:
    pipeline, bundle = fitted
    metrics = json.loads((bundle / "metrics.json").read_text())
    for key in ("recall@5", "ndcg@10", "map@10", "coverage@10"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert not [key for key in metrics if key.startswith("popularity_")]  # the model is the floor: no copy of it
    assert metrics["test_users"] == 40 and metrics["interactions"]["users"] == 40
    schema = json.loads((bundle / "schema.json").read_text())
    assert (schema["task"], schema["user"], schema["item"]) == ("recommend", "uid", "iid")
    assert b"popularity floor" not in (bundle / "report.html").read_bytes().lower()
    assert (bundle / "plots" / "ranking.png").is_file()
    assert read_bundle(bundle).lineage.action == "trained"


@pytest.mark.parametrize("model", [{"type": "popularity"}, TWO_TOWER], ids=["popularity", "two_tower"])
def test_save_load_gives_identical_lists_without_known_items(model: dict[str, Any], tmp_path: Path) -> None:
    frame = table()
    pipeline = pipeline_for(RecommendPipeline(config(model)).config).fit(frame)
    bundle = pipeline.save(tmp_path / "bundle")
    loaded = load_task(bundle)
    users = pd.DataFrame({"uid": ["u0", "u1", "u7", 3]})  # 3: an unknown user, as a number
    before, after = pipeline.predict(users), loaded.predict(users)
    pd.testing.assert_frame_equal(before, after)
    assert list(after.columns) == ["uid", "rank", "iid", "score", "known_user", "fallback"]
    assert after.groupby("uid").size().to_dict() == {"u0": 5, "u1": 5, "u7": 5, "3": 5}
    who = after.drop_duplicates("uid").set_index("uid")
    assert who["known_user"].to_dict() == {"u0": True, "u1": True, "u7": True, "3": False}
    assert who["fallback"].fillna("").to_dict() == {"u0": "", "u1": "", "u7": "", "3": "popular"}
    for user in ("u0", "u1", "u7"):  # nothing the user is known to have; best first
        listed = after[after["uid"] == user]
        assert not known_of(frame, user) & set(listed["iid"]), user
        assert listed["rank"].tolist() == [1, 2, 3, 4, 5] and listed["score"].is_monotonic_decreasing


def test_two_tower_ranks_from_known_items_so_a_refresh_changes_lists(tmp_path: Path) -> None:
    frame = table()
    pipeline = RecommendPipeline(config(TWO_TOWER, evaluation={"k": [5, 10], "plots": False})).fit(frame)
    floor = RecommendPipeline(config(evaluation={"k": [5, 10], "plots": False})).fit(frame).metrics_
    assert {k: v for k, v in pipeline.metrics_.items() if k.startswith("popularity_")} == \
        {f"popularity_{k}": v for k, v in floor.items() if "@" in k and "_" not in k}  # the floor: the popularity model's own
    bundle = pipeline.save(tmp_path / "bundle")
    assert b"popularity floor" in (bundle / "report.html").read_bytes().lower()
    before = RecommendPredictor.from_bundle(read_bundle(bundle)).recommend("u0", 10)
    odd = [i for i in range(15, 30) if str(i) not in before.items[:1]][:4]  # the other taste's items
    refreshed = refresh_bundle(bundle, pd.DataFrame({"uid": ["u0"] * 4 + ["newcomer"] * 2, "iid": odd + [0, 1],
                                                     "stars": 5, "when": 1}), tmp_path / "refreshed")
    parts = RecommendPredictor.from_bundle(read_bundle(refreshed))
    after = parts.recommend("u0", 10)
    assert not {str(i) for i in odd} & set(after.items)
    common = [i for i in after.items if i in before.items]
    changed = [a != b for i in common for a, b in [(after.scores[after.items.index(i)],
                                                     before.scores[before.items.index(i)])]]
    assert common and any(changed)  # the user's vector moved with their known items: no retraining
    newcomer = parts.recommend("newcomer", 5)
    ranked = parts.recommend("someone", 5, items=["0", "1"])
    assert (newcomer.fallback, ranked.fallback) == (None, "history")
    assert (newcomer.items, newcomer.scores) == (ranked.items, ranked.scores)  # both from items 0 and 1


def test_one_user_recommendations_and_fallbacks(fitted: tuple[RecommendPipeline, Path]) -> None:
    parts = RecommendPredictor.from_bundle(read_bundle(fitted[1]))
    known = known_of(table(), "u0")
    mine = parts.recommend("u0", 4, exclude=["29", "nope"])
    assert (mine.known_user, mine.fallback, mine.unknown_items) == (True, None, 0)
    assert len(mine.items) == 4 and not (known | {"29"}) & set(mine.items)
    one, batch = parts.recommend("u0", 4), parts.recommend_many(["u0"], 4)[0]
    assert (one.items, one.scores) == (batch.items, batch.scores)  # one user and a batch agree
    stranger = parts.recommend("someone", 3)
    assert (stranger.known_user, stranger.fallback) == (False, "popular") and len(stranger.items) == 3
    assert stranger.scores == sorted(stranger.scores, reverse=True)
    sent = parts.recommend("someone", 3, items=["0", "1", "unknown-item"])  # popularity: no ranking from items
    assert (sent.fallback, sent.unknown_items) == ("popular", 1) and not {"0", "1"} & set(sent.items)
    everything = parts.recommend("u0", 1000)
    assert len(everything.items) == 30 - len(known) and len(set(everything.items)) == len(everything.items)
    with pytest.raises(DataError, match="k must be a whole number of items of at least 1, got 0"):
        parts.recommend("u0", 0)


def test_one_user_list_is_fast_enough_for_a_catalogue_of_9000_items() -> None:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"uid": rng.integers(0, 600, 20_000), "iid": rng.integers(0, 9_000, 20_000),
                          "stars": 5, "when": np.arange(20_000)})
    parts = RecommendPipeline(config(evaluation={"k": [10], "plots": False})).fit(frame).parts
    parts.recommend("1", 10)
    seconds = []
    for user in range(50):
        started = time.perf_counter()
        parts.recommend(str(user), 10, exclude=["5", "6"])
        seconds.append(time.perf_counter() - started)
    # about 0.3 ms on one idle core (benchmarks/recommend.py measures it); 50 ms only catches a list that
    # scores the catalogue item by item, and stays clear of a loaded CI machine's noise
    assert statistics.median(seconds) <= 0.05, statistics.median(seconds)


def test_evaluate_ranks_newer_interactions_as_served_and_drops_known_held_out_pairs(
        fitted: tuple[RecommendPipeline, Path], tmp_path: Path) -> None:
    frame = later(table())
    liked = sorted(known_of(table(), "u0"))[0]
    frame.loc[len(frame)] = {"uid": "u0", "iid": int(liked), "stars": 5, "when": int(frame["when"].max()) + 60}
    pipeline = load_task(fitted[1])
    metrics = pipeline.evaluate(frame, out_dir=tmp_path)
    assert metrics["test_users"] == 10 and 0 <= metrics["recall@10"] <= 1  # u1..u9 and fresh: u0's latest is known
    assert [w for w in pipeline.warnings_ if w.startswith("1 of the 11 held-out interaction(s) are known")]
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    report = (tmp_path / "report.html").read_bytes()
    assert b"known to the bundle already" in report and b"<img" not in report  # no plot of the training's
    with pytest.raises(DataError, match="already known to the bundle.*Fix: evaluate on interactions newer than"):
        pipeline.evaluate(table())  # the training file: every held-out pair is known (random holdout or not)
    with pytest.raises(DataError, match="Fix: use more interactions per user$"):
        pipeline.evaluate(frame.groupby("uid").head(2))


def test_evaluate_warnings_do_not_leak_into_a_later_saved_report(tmp_path: Path) -> None:
    pipeline = RecommendPipeline(config(evaluation={"k": [5], "plots": False})).fit(table())
    assert pipeline.warnings_ == []
    frame = later(table())
    frame.loc[len(frame)] = {"uid": "u0", "iid": int(sorted(known_of(table(), "u0"))[0]), "stars": 5,
                             "when": int(frame["when"].max()) + 60}
    pipeline.evaluate(frame)
    assert len(pipeline.warnings_) == 1 and "known to the bundle already" in pipeline.warnings_[0]
    assert b"known to the bundle already" not in (pipeline.save(tmp_path / "bundle") / "report.html").read_bytes()
    pipeline.fit(table())
    assert pipeline.warnings_ == []


def test_refresh_adds_known_items_and_users_in_a_derived_bundle(fitted: tuple[RecommendPipeline, Path],
                                                                tmp_path: Path) -> None:
    parent = fitted[1]
    before = RecommendPredictor.from_bundle(read_bundle(parent)).recommend("u0", 3)
    new = pd.DataFrame({"uid": ["u0", "u0", "u0", "newcomer", "newcomer"],
                        "iid": [int(before.items[0]), int(before.items[1]), 999, 0, 1],
                        "stars": [5, 5, 5, 4, 5], "when": [1_700_000_000] * 5})
    derived = refresh_bundle(parent, new, tmp_path / "refreshed")
    bundle = read_bundle(derived)
    assert bundle.lineage.action == "refreshed" and bundle.lineage.parent == read_bundle(parent).digest
    assert bundle.lineage.details["users_added"] == 1 and "999" in " ".join(bundle.lineage.details["warnings"])
    parts = RecommendPredictor.from_bundle(bundle)
    after = parts.recommend("u0", 3)
    assert not set(before.items[:2]) & set(after.items)  # newly known: left out
    newcomer = parts.recommend("newcomer", 3)
    assert newcomer.known_user and newcomer.fallback is None and not {"0", "1"} & set(newcomer.items)
    assert [r.user for r in parts.recommend_many(["newcomer", "u0"], 3)] == ["newcomer", "u0"]
    assert RecommendPredictor.from_bundle(read_bundle(parent)).recommend("u0", 3) == before  # parent unchanged
    with pytest.raises(BundleError, match="never overwritten"):
        refresh_bundle(parent, new, derived)


@pytest.mark.parametrize("duplicates", ["sum", "refuse"])
def test_refresh_skips_known_pairs_so_it_is_idempotent_and_the_model_is_untouched(duplicates: str,
                                                                                  tmp_path: Path) -> None:
    raw = config()
    raw["interactions"]["duplicates"] = duplicates
    parent = RecommendPipeline(raw).fit(table()).save(tmp_path / "bundle")
    export = pd.concat([table(), later(table())])  # everything so far: the known pairs and new ones
    once = refresh_bundle(parent, export, tmp_path / "once")
    twice = refresh_bundle(once, export, tmp_path / "twice")
    first, second = read_bundle(once), read_bundle(twice)
    assert second.lineage.details["known_already"] == first.lineage.details["known_already"] + len(later(table()))
    assert (second.lineage.details["users_added"], second.lineage.details["interactions_added"]) == (0, 0)
    assert "skipped (their weights unchanged)" in " ".join(second.lineage.details["warnings"])
    for name in ("known_items.safetensors", "features.json"):
        assert (once / name).read_bytes() == (twice / name).read_bytes(), name
    assert (parent / "weights.safetensors").read_bytes() == (once / "weights.safetensors").read_bytes() \
        == (twice / "weights.safetensors").read_bytes()
    parts = RecommendPredictor.from_bundle(second)
    assert parts.fitted_users == 40 and len(parts.user_ids) == 41 and parts.user_ids[-1] == "fresh"
    original = RecommendPredictor.from_bundle(read_bundle(parent))
    u0 = original.known.indptr[0], original.known.indptr[1]
    assert np.array_equal(parts.known[0, original.known.indices[u0[0]:u0[1]]].toarray().ravel(),
                          original.known.data[u0[0]:u0[1]])  # known weights unchanged, not doubled


def test_refresh_checks_the_output_before_reading_the_data(fitted: tuple[RecommendPipeline, Path],
                                                          tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(BundleError, match="a-file is a file, not a folder"):
        refresh_bundle(fitted[1], tmp_path / "no-such-data.csv", tmp_path / "a-file" / "refreshed")
    with pytest.raises(BundleError, match="never overwritten"):
        refresh_bundle(fitted[1], tmp_path / "no-such-data.csv", tmp_path / "a-file")


def test_ids_are_read_as_files_are(tmp_path: Path) -> None:
    frame = table().assign(uid=lambda f: f["uid"].str[1:].astype(int))  # users 0..39 as numbers
    parts = RecommendPipeline(config()).fit(frame).parts
    four = parts.recommend("4", 5)
    for same in (4, 4.0, " 4 ", np.int64(4), np.float32(4.0)):
        again = parts.recommend(same, 5)  # type: ignore[arg-type]
        assert (again.user, again.known_user, again.fallback, again.items) == ("4", True, None, four.items), same
    first = four.items[0]
    assert first not in parts.recommend(4, 5, exclude=[float(first), " 7 "]).items  # type: ignore[arg-type, list-item]
    assert [r.user for r in parts.recommend_many([4.0, " 5", 6], 3)] == ["4", "5", "6"]  # type: ignore[list-item]
    assert all(r.known_user for r in parts.recommend_many([4.0, " 5", 6], 3))  # type: ignore[list-item]
    sent = parts.recommend("someone", 5, items=[12.0, " 13"])  # type: ignore[list-item]
    assert sent.unknown_items == 0 and not {"12", "13"} & set(sent.items)
    for bad, match in ((None, "missing id"), (float("nan"), "missing id"), ("  ", "missing id")):
        with pytest.raises(DataError, match=match):
            parts.recommend(bad, 5)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="items must be a list of ids, got one string '12'"):
        parts.recommend("4", 5, items="12")
    with pytest.raises(DataError, match="exclude must be a list of ids"):
        parts.recommend("4", 5, exclude="12")
    with pytest.raises(DataError, match="missing id"):
        parts.recommend_many(["4", None], 5)  # type: ignore[list-item]


def test_an_unknown_user_sending_items_to_a_popularity_model_gets_the_popular_list(
        fitted: tuple[RecommendPipeline, Path]) -> None:
    parts = RecommendPredictor.from_bundle(read_bundle(fitted[1]))
    assert not parts.uses_history
    popular = parts.recommend("someone", 8)
    sent = parts.recommend("someone", 5, items=popular.items[:2])
    assert (sent.known_user, sent.fallback) == (False, "popular")
    assert sent.items == popular.items[2:7]  # the popular list (every known interaction), less the items sent
    assert sent.scores == [float(parts.popularity[parts.item_ids.index(i)]) for i in sent.items]


def test_predict_renames_its_columns_that_the_data_uses(tmp_path: Path) -> None:
    raw = config()
    raw["interactions"]["item"] = "score"
    pipeline = RecommendPipeline(raw).fit(table().rename(columns={"iid": "score"}))
    lists = pipeline.predict(pd.DataFrame({"uid": ["u0", "stranger"]}))
    assert list(lists.columns) == ["uid", "rank", "score", "recommendation_score", "known_user", "fallback"]
    assert lists["score"].map(type).eq(str).all()  # the items, as ids
    assert lists.groupby("uid")["recommendation_score"].apply(lambda s: s.is_monotonic_decreasing).all()


@pytest.mark.parametrize("damage,match", [
    (lambda f, k: f.pop("fitted_users"), "lacks fitted_users"),
    (lambda f, k: f.update(fitted_users=len(f["user_ids"]) + 1), "fitted_users .* is not a count of its 40"),
    (lambda f, k: f.update(user_ids="u0"), "user_ids and item_ids are not lists"),
    (lambda f, k: f.clear(), "lacks recommender, user_ids"),
    (lambda f, k: k.update(indptr=k["indptr"].flip(0)), "does not hold the known items"),
    (lambda f, k: k.update(indices=k["indices"] + 1000), "does not hold the known items"),
], ids=["no fitted_users", "fitted_users too many", "user_ids not a list", "empty", "indptr decreasing",
        "indices out of range"])
def test_a_malformed_bundle_is_a_bundle_error(fitted: tuple[RecommendPipeline, Path], tmp_path: Path,
                                              damage: Any, match: str) -> None:
    from modelmill.bundle import FEATURES, derive
    from modelmill.bundle.weights import encode_weights, parse_weights

    parent = read_bundle(fitted[1])
    features, known = json.loads(parent.files[FEATURES]), parse_weights(parent.files["known_items.safetensors"],
                                                                         where=parent.path)
    damage(features, known)
    broken = derive(parent, tmp_path / "broken", action="damaged", replace={
        FEATURES: json.dumps(features).encode(), "known_items.safetensors": encode_weights(known)})
    with pytest.raises(BundleError, match=match):
        RecommendPredictor.from_bundle(read_bundle(broken))


def test_errors_say_what_and_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="encryption is not available for task: recommend"):
        RecommendPipeline(config()).fit(table(), key=b"\x00" * 32)
    with pytest.raises(ConfigError, match="task: predict"):
        RecommendPipeline({"name": "x", "data": {"source": "a.csv"}, "target": {"name": "y", "type": "binary"},
                           "features": [{"name": "a", "type": "number"}]})
    pipeline = RecommendPipeline(config()).fit(table())
    with pytest.raises(DataError, match="no user column 'uid'"):
        pipeline.predict(pd.DataFrame({"user": ["u0"]}))
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(BundleError, match="cannot write the bundle .*a-file/bundle.*Fix: save to a folder"):
        pipeline.save(tmp_path / "a-file" / "bundle")  # an OSError inside the bundle writer, said as a BundleError
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]  # nothing half-written
    raw = config()
    del raw["interactions"]["time"]  # the holdout drawn at random: the training file's pairs all known still
    untimed = RecommendPipeline(raw).fit(table().drop(columns="when"))
    with pytest.raises(DataError, match="every held-out interaction .* is already known to the bundle"):
        untimed.evaluate(table().drop(columns="when"))
    with pytest.raises(BundleError, match="not a recommend"):
        RecommendPredictor.from_bundle(_forecast_like_bundle(tmp_path))


def _forecast_like_bundle(tmp_path: Path) -> Any:
    from tests.forecasting.test_pipeline import config as forecast_config, shops

    from modelmill.forecasting.pipeline import ForecastPipeline

    return read_bundle(ForecastPipeline(forecast_config()).fit(shops(), evaluate=False).save(tmp_path / "forecast"))
