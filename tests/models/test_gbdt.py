"""The gbdt model type (LightGBM): every task, categories split natively, early stopping on
the validation split, class weights, monotone constraints, seeds, its own text format in
the bundle, and the clear errors for what it cannot take."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import modelmill
from modelmill.bundle import read_bundle
from modelmill.models.gbdt import Trees
from modelmill.training import Callback
from tests.conftest import base_config, make_frame

TABLE = [{"name": "x", "type": "number"}, {"name": "colour", "type": "category"},
         {"name": "flag", "type": "binary"}, {"name": "when", "type": "date"}]


def gbdt_config(target: dict[str, Any] | None = None, **model: Any) -> dict[str, Any]:
    config = base_config(features=list(TABLE), model={"type": "gbdt", **model})
    if target:
        config["target"] = target
    return config


@pytest.mark.parametrize("target,metric,floor", [
    ({"name": "label", "type": "binary"}, "roc_auc", 0.85),
    ({"name": "kind", "type": "category"}, "accuracy", 0.6),
    ({"name": "amount", "type": "number"}, "r2", 0.3),
])
def test_every_task_learns_and_round_trips_bit_for_bit(tmp_path: Path, target: dict[str, Any], metric: str,
                                                       floor: float) -> None:
    pipeline = modelmill.Pipeline(gbdt_config(target)).fit(make_frame(600))
    assert pipeline.metrics_[metric] > floor
    bundle = read_bundle(pipeline.save(tmp_path / "bundle"))
    assert set(bundle.model_artifacts()) == {"trees.txt"} and "weights.safetensors" not in bundle.files
    assert bundle.model_artifacts()["trees.txt"].startswith(b"tree\n")  # LightGBM's own text format
    new = make_frame(200, seed=8)
    pd.testing.assert_frame_equal(modelmill.load(bundle.path).predict(new), pipeline.predict(new), check_exact=True)


def test_categories_go_in_natively_and_boosting_stops_early() -> None:
    frame = make_frame(600)
    frame["colour"] = np.where(frame["label"] == "good", "red", frame["colour"])  # a category that matters
    pipeline = modelmill.Pipeline(gbdt_config(early_stopping_rounds=20, trees=2000)).fit(frame)
    trees = pipeline.parts.model
    assert isinstance(trees, Trees) and [trees.columns[i].name for i in trees.categorical] == ["colour"]
    assert "num_cat=1" in trees.booster.model_to_string()  # split on the category itself, not on one-hot columns
    result = pipeline.result_
    assert result is not None and result.best_epoch < result.epochs_run < 2000
    assert "early stopping" in result.stop_reason
    assert len(result.history) == result.epochs_run and "valid_roc_auc" in result.history[0]


def test_settings_of_the_torch_trainer_are_named_as_ignored(caplog: pytest.LogCaptureFixture) -> None:
    config = gbdt_config(trees=20)
    config["training"] = {"progress": False, "epochs": 20}  # the defaults, as `init` writes them: no warning
    with caplog.at_level("WARNING", logger="modelmill"):
        modelmill.Pipeline(config).fit(make_frame(200))
    assert "own solver" not in caplog.text
    config["training"].update(ema=0.99, grad_clip=1.0, batch_size=64)
    with caplog.at_level("WARNING", logger="modelmill"):
        modelmill.Pipeline(config).fit(make_frame(200))
    assert "model type 'gbdt' fits by its own solver: training.batch_size, training.grad_clip, training.ema " \
           "(settings of the torch trainer, for torch model types) do not apply to it" in caplog.text


def test_on_the_ray_backend_gbdt_fits_here_and_says_why(caplog: pytest.LogCaptureFixture) -> None:
    config = gbdt_config(trees=20)
    config["training"] = {"progress": False, "backend": "ray"}
    with caplog.at_level("INFO", logger="modelmill"):
        pipeline = modelmill.Pipeline(config).fit(make_frame(200))  # no cluster needed: nothing goes to Ray
    assert pipeline.metrics_["roc_auc"] > 0.5
    assert "this learner fits on this machine; not on LightGBM's distributed mode: each of its workers listens " \
           "for the others on every network interface, unauthenticated" in caplog.text


def test_class_weights_trade_precision_for_recall_on_a_rare_class() -> None:
    frame = make_frame(1200)
    frame["label"] = np.where(frame["x"] > 1.3, "good", "bad")  # ~10% positives
    plain = modelmill.Pipeline(gbdt_config()).fit(frame)
    weighted = modelmill.Pipeline(gbdt_config({"name": "label", "type": "binary", "class_weights": "balanced"})) \
        .fit(frame)
    assert weighted.metrics_["recall"] >= plain.metrics_["recall"]
    assert weighted.parts.predict(frame).proba[:, 1].mean() > plain.parts.predict(frame).proba[:, 1].mean()


def test_a_monotone_constraint_holds_across_the_whole_range() -> None:
    frame = make_frame(800)
    frame["amount"] = frame["amount"] + np.sin(frame["x"] * 6) * 80  # wiggles a free model would follow
    config = gbdt_config({"name": "amount", "type": "number"}, monotone={"x": 1})
    pipeline = modelmill.Pipeline(config).fit(frame)
    grid = pd.DataFrame({"x": np.linspace(-3, 3, 200), "colour": "red", "flag": "yes", "when": "2021-01-01"})
    predicted = pipeline.predict(grid)["amount_predicted"].to_numpy()
    assert (np.diff(predicted) >= 0).all()
    free = modelmill.Pipeline(gbdt_config({"name": "amount", "type": "number"})).fit(frame)
    assert (np.diff(free.predict(grid)["amount_predicted"].to_numpy()) < 0).any()


def test_the_seed_decides_and_repeats() -> None:
    def model_text(seed: int) -> str:
        config = gbdt_config(bagging_fraction=0.7)
        config["training"] = {"seed": seed, "progress": False}
        trees = modelmill.Pipeline(config).fit(make_frame(400)).parts.model
        assert isinstance(trees, Trees)
        return str(trees.booster.model_to_string())

    first, again, other = model_text(1), model_text(1), model_text(2)
    assert first == again and first != other


def test_the_fast_path_gives_what_the_frame_path_gives() -> None:
    predictor = modelmill.Pipeline(gbdt_config()).fit(make_frame(400)).parts
    records = [{"x": 0.5, "colour": "red", "flag": "yes", "when": "2021-03-04"},
               {"x": None, "colour": "purple", "flag": None, "when": None},
               {"x": 1e308, "colour": " blue ", "flag": "maybe", "when": "2020-02-29"}]
    fast = predictor.predict_records(records)
    frame = predictor.predict(pd.DataFrame.from_records(records, columns=[f.name for f in predictor.features]))
    assert list(fast.labels) == list(frame.labels) and np.array_equal(fast.proba, frame.proba)


@pytest.mark.parametrize("features,model,fragments", [
    (TABLE + [{"name": "review", "type": "text"}], {}, ["'review' (text) cannot go into gbdt", "mlp"]),
    (TABLE, {"monotone": {"colour": 1}}, ["model.monotone.colour", "category column", "number and binary"]),
    (TABLE, {"monotone": {"when": -1}}, ["model.monotone.when", "date column"]),
    (TABLE, {"monotone": {"size": 1}}, ["'size' is not a feature"]),
])
def test_what_gbdt_cannot_take_is_a_clear_error(features: list[dict[str, Any]], model: dict[str, Any],
                                                 fragments: list[str]) -> None:
    config = base_config(features=features, model={"type": "gbdt", **model})
    with pytest.raises(modelmill.ConfigError) as error:
        modelmill.Pipeline(config).fit(make_frame(100))
    for fragment in fragments:
        assert fragment in str(error.value)


def test_an_image_column_and_a_category_constraint_fail_the_cli_with_nothing_written(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.commands import cli_here
    from tests.e2e.test_cli import cli, expect_user_error, nothing_written

    import yaml

    frame = make_frame(60)
    frame["picture"] = [str(tmp_path / "none.png")] * len(frame)
    frame.to_csv(tmp_path / "data.csv", index=False)
    config = base_config(features=TABLE + [{"name": "picture", "type": "image"}], model={"type": "gbdt"})
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    expect_user_error(cli("train", "tiny.yaml", cwd=tmp_path), "'picture' (image) cannot go into gbdt")
    config = base_config(features=TABLE, model={"type": "gbdt", "monotone": {"colour": -1}})
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    # through the command's entry point in this process (the real command, in its own, refused the first)
    code, _, said = cli_here("train", "tiny.yaml", cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
    assert code == 2 and "Traceback" not in said, said
    assert "model.monotone.colour" in said and "category column" in said, said
    assert nothing_written(tmp_path)


def test_without_lightgbm_the_error_says_how_to_install_it(tmp_path: Path) -> None:
    import yaml

    make_frame(60).to_csv(tmp_path / "data.csv", index=False)
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(gbdt_config()))
    probe = ("import sys; sys.modules['lightgbm'] = None; from modelmill.cli import main; "
             "sys.argv = ['modelmill', 'train', 'tiny.yaml']; main()")
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "needs LightGBM" in done.stderr and "pip install 'modelmill[trees]'" in " ".join(done.stderr.split())
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.json"))


def test_a_gbdt_bundle_serves_over_http_as_it_predicts(tmp_path: Path) -> None:
    import httpx

    from tests.serving.conftest import live_server

    pipeline = modelmill.Pipeline(gbdt_config()).fit(make_frame(400))
    bundle = pipeline.save(tmp_path / "models" / "1")
    records = [{"x": 0.25, "colour": "green", "flag": "no", "when": "2021-05-01"}, {"x": -1.0, "colour": None,
                                                                                     "flag": "yes", "when": None}]
    expected = pipeline.predict(pd.DataFrame.from_records(records))
    with live_server(bundle) as live:
        answer = httpx.post(f"{live.url}/v1/predict", json={"instances": records}).json()["predictions"]
    assert [a["label_predicted"] for a in answer] == expected["label_predicted"].tolist()
    assert [a["label_probability_good"] for a in answer] == expected["label_probability_good"].round(6).tolist()


@pytest.mark.parametrize("refit", [True, False])
def test_with_refit_the_features_know_the_validation_rows_the_trees_learn_from(refit: bool) -> None:
    frame = make_frame(500)
    order = pd.to_datetime(frame["when"]).rank(method="first").to_numpy()
    frame.loc[(order > 0.64 * 500) & (order <= 0.8 * 500), "colour"] = "violet"  # the validation rows only
    config = gbdt_config(refit=refit)
    config["data"]["split"] = {"method": "time", "column": "when", "test": 0.2, "valid": 0.2}
    pipeline = modelmill.Pipeline(config).fit(frame)
    assert ("violet" in pipeline.parts.features[1].state()["vocabulary"]) is refit
    assert pipeline.result_ is not None and ("on the training and validation rows" in pipeline.result_.stop_reason) is refit
    assert pipeline.metrics_["rows"] == {"train": 320, "valid": 80, "test": 100}


def test_compare_puts_trees_beside_the_other_models(tmp_path: Path) -> None:
    from modelmill.compare import compare, default_variants, variant_configs
    from modelmill.config import parse_config

    make_frame(400).to_csv(tmp_path / "data.csv", index=False)
    config = parse_config(base_config(features=list(TABLE)))
    assert default_variants(config) == ["linear", "mlp", "gbdt", "config"]
    rows = compare(config, variant_configs(config, ["linear", "gbdt"]), tmp_path / "out", base_dir=tmp_path)
    by_name = {row["variant"]: row for row in rows}
    assert set(by_name) == {"linear", "gbdt"} and "error" not in by_name["gbdt"]
    assert by_name["gbdt"]["metrics"]["roc_auc"] > 0.8 and by_name["gbdt"]["trainable_parameters"] > 0
    assert by_name["gbdt"]["epochs"] > 1  # boosting rounds, one history row each


def test_without_a_validation_split_nothing_is_fitted_twice_on_the_same_rows() -> None:
    config = gbdt_config(early_stopping_rounds=None, trees=50)
    config["data"]["split"] = {"method": "stratified", "test": 0.25, "valid": 0.0, "seed": 0}
    pipeline = modelmill.Pipeline(config).fit(make_frame(300))
    assert pipeline.result_ is not None and pipeline.result_.stop_reason == "all 50 rounds done"
    assert pipeline.metrics_["rows"]["valid"] == 0 and pipeline.metrics_["roc_auc"] > 0.8


@pytest.mark.parametrize("target,key", [({"name": "label", "type": "binary"}, "valid_roc_auc"),
                                        ({"name": "amount", "type": "number"}, "valid_rmse")])
def test_training_callbacks_see_every_boosting_round(target: dict[str, Any], key: str) -> None:
    seen: list[dict[str, float]] = []
    starts: list[int] = []

    class Rounds(Callback):
        def on_train_start(self, state: Any, total_epochs: int) -> None:
            starts.append(total_epochs)

        def on_epoch_end(self, state: Any, row: dict[str, float]) -> None:
            seen.append(dict(row))

    pipeline = modelmill.Pipeline(gbdt_config(target, early_stopping_rounds=10), callbacks=[Rounds()]).fit(make_frame(600))
    history = pipeline.result_.history if pipeline.result_ else []
    assert len(starts) == 1 and [r["epoch"] for r in seen] == [float(i) for i in range(1, len(history) + 1)]
    best = pipeline.result_.best_epoch - 1 if pipeline.result_ else 0
    # the same curve as the history's, but the best round's row, which holds the fitted model's own scores
    others = [i for i in range(len(history)) if i != best]
    assert [seen[i][key] for i in others] == pytest.approx([history[i][key] for i in others], rel=1e-9)
    assert [seen[i]["valid_loss"] for i in others] == pytest.approx([history[i]["valid_loss"] for i in others])
