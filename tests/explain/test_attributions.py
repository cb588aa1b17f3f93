"""modelmill explain: completeness of Integrated Gradients (mlp), TreeSHAP sums (gbdt) and
permutation sampling (ensembles), permutation importance finding the columns that carry the
signal, Pipeline.explain from a bundle, the CLI's files, and the errors for bad input."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

import modelmill
from modelmill.errors import ConfigError, DataError, ModelError
from modelmill.explain import importance
from tests.conftest import base_config, make_frame

TABLE = [{"name": "x", "type": "number"}, {"name": "colour", "type": "category"},
         {"name": "flag", "type": "binary"}, {"name": "when", "type": "date"}]
COLUMNS = ["x", "colour", "flag", "when"]
QUICK = {"plots": False, "report": False}  # no plots nor report: these tests fit many small models


def fitted(model: dict[str, Any], target: dict[str, Any] | None = None, rows: int = 400,
           features: list[dict[str, Any]] | None = None, frame: pd.DataFrame | None = None) -> modelmill.Pipeline:
    config = base_config(features=features or list(TABLE), model=model, evaluation=QUICK)
    if target:
        config["target"] = target
    return modelmill.Pipeline(config).fit(frame if frame is not None else make_frame(rows))


@pytest.fixture(scope="module")
def mlp() -> modelmill.Pipeline:
    return fitted({"type": "mlp", "hidden": [16]})


@pytest.mark.parametrize("target", [None, {"name": "kind", "type": "category"},
                                    {"name": "amount", "type": "number"}], ids=["binary", "category", "number"])
def test_integrated_gradients_are_complete_for_an_mlp(target: dict[str, Any] | None) -> None:
    pipeline = fitted({"type": "mlp", "hidden": [16, 8]}, target)
    records = make_frame(40, seed=5)
    explanation = pipeline.explain(records)
    assert explanation.method == "integrated_gradients" and explanation.columns == COLUMNS
    assert explanation.attributions.shape == (40, 4)
    assert explanation.gap.max() <= 0.01  # |Σ attributions − (f(x) − f(baseline))|, raw output space
    assert explanation.steps is not None and explanation.steps.min() >= 32
    sums = explanation.attributions.sum(axis=1)
    np.testing.assert_allclose(sums, explanation.output - explanation.baseline, atol=0.01)
    raw = pipeline.parts.raw(records).double().numpy()
    picked = raw.argmax(axis=1) if raw.shape[1] > 1 else np.zeros(len(raw), dtype=int)
    np.testing.assert_allclose(explanation.output, raw[np.arange(len(raw)), picked], atol=1e-4)
    table = explanation.frame()
    assert list(table.columns[:4]) == COLUMNS and {"output", "baseline", "gap", "steps", "explained"} <= set(table)


def test_the_baseline_is_a_typical_record_from_the_profile(mlp: modelmill.Pipeline) -> None:
    explanation = mlp.explain(make_frame(5, seed=1))
    base = explanation.baseline_record
    assert base is not None and set(base) == set(COLUMNS)
    assert abs(float(base["x"])) < 0.5  # the median of a standard normal column
    frequencies = mlp.profile_["features"]["colour"]["frequencies"]
    assert base["colour"] == max(frequencies, key=frequencies.get)
    assert base["flag"] in ("yes", "no") and str(base["when"]).startswith(("2020", "2021", "2022"))
    # the baseline's output is the model's output on that record
    baseline_raw = float(mlp.parts.raw(pd.DataFrame([base])).double()[0, 0])
    assert explanation.baseline[0] == pytest.approx(baseline_raw, abs=1e-4)


def test_fixed_steps_are_used_as_given(mlp: modelmill.Pipeline) -> None:
    explanation = mlp.explain(make_frame(5, seed=1), steps=8)
    assert explanation.steps is not None and set(explanation.steps) == {8}


def test_treeshap_contributions_sum_to_the_raw_score() -> None:
    for target in (None, {"name": "kind", "type": "category"}):
        pipeline = fitted({"type": "gbdt", "trees": 40}, target)
        records = make_frame(60, seed=6)
        explanation = pipeline.explain(records)
        assert explanation.method == "treeshap" and explanation.columns == COLUMNS  # the date's parts summed back
        assert explanation.gap.max() <= 1e-6
        np.testing.assert_allclose(explanation.attributions.sum(axis=1) + explanation.baseline,
                                   explanation.output, atol=1e-6)
        raw = pipeline.parts.raw(records).numpy()
        picked = raw.argmax(axis=1) if raw.shape[1] > 1 else np.zeros(len(raw), dtype=int)
        np.testing.assert_allclose(explanation.output, raw[np.arange(len(raw)), picked], atol=1e-9)


def test_an_ensemble_is_explained_by_permutation_sampling_exactly_complete() -> None:
    pipeline = fitted({"type": "ensemble", "members": [{"type": "linear"}, {"type": "gbdt", "trees": 30}],
                       "folds": 0})
    records = make_frame(10, seed=7)
    explanation = pipeline.explain(records)
    assert explanation.method == "shapley_sampling"
    assert explanation.gap.max() <= 1e-6
    np.testing.assert_allclose(explanation.output, pipeline.parts.raw(records).double().numpy()[:, 0], atol=1e-6)


def test_sampling_agrees_with_integrated_gradients_on_a_linear_model() -> None:
    pipeline = fitted({"type": "linear"})
    records = make_frame(8, seed=2)
    gradients = pipeline.explain(records)
    sampled = pipeline.explain(records, method="shapley_sampling")
    # a model additive over its columns has one set of attributions: every method finds it
    np.testing.assert_allclose(gradients.attributions, sampled.attributions, atol=1e-4)


def signal_table(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 10))
    score = 2.0 * x[:, 3] - 2.0 * x[:, 7] + rng.normal(scale=0.3, size=rows)
    frame = pd.DataFrame(x, columns=[f"c{i}" for i in range(10)])
    frame["label"] = np.where(score > 0, "yes", "no")
    return frame


@pytest.mark.parametrize("model", [{"type": "mlp", "hidden": [16]}, {"type": "gbdt", "trees": 60},
                                   {"type": "auto", "folds": 0}], ids=["mlp", "gbdt", "auto"])
def test_importance_ranks_the_two_signal_columns_first(model: dict[str, Any]) -> None:
    features = [{"name": f"c{i}", "type": "number"} for i in range(10)]
    config = base_config(features=features, model=model, evaluation=QUICK)
    config["training"]["epochs"] = 10
    pipeline = modelmill.Pipeline(config).fit(signal_table(500, seed=0))
    ranking = importance(pipeline.parts, signal_table(300, seed=1), repeats=3, seed=0)
    assert set(list(ranking)[:2]) == {"c3", "c7"}
    assert min(ranking["c3"][0], ranking["c7"][0]) > 5 * max(m for c, (m, _) in ranking.items()
                                                            if c not in ("c3", "c7"))


@pytest.mark.parametrize("model", [{"type": "mlp", "hidden": [16]}, {"type": "gbdt", "trees": 30},
                                   {"type": "auto", "folds": 0}], ids=["mlp", "gbdt", "auto"])
def test_shuffling_a_columns_input_slots_is_shuffling_the_column(model: dict[str, Any]) -> None:
    # importance shuffles the encoded tensors, not the column: the same thing only while every
    # feature (and every view of it) transforms each row on its own
    predictor = fitted(model, rows=300).parts
    frame = make_frame(80, seed=3)[COLUMNS]
    inputs = predictor.inputs(frame)
    order = np.random.default_rng(0).permutation(len(frame))
    for column, slots in zip(COLUMNS, predictor.input_slots(), strict=True):
        shuffled = frame.copy()
        shuffled[column] = frame[column].to_numpy()[order]
        moved = [x[torch.from_numpy(order)] if i in slots else x for i, x in enumerate(inputs)]
        expected = predictor.raw(shuffled)
        torch.testing.assert_close(predictor.runtime.raw(moved, predictor.lengths(moved)), expected)
        assert not torch.equal(expected, predictor.raw(frame)), column  # the shuffle changed something


def by_definition(predictor: Any, frame: pd.DataFrame, *, repeats: int, seed: int) -> dict[str, tuple[float, float]]:
    """Permutation importance as defined (Breiman 2001), on the frame itself: a column's values
    shuffled, the rows encoded again, the model run on them alone; the shuffles drawn in
    importance's order (column by column, repeat by repeat)."""
    from modelmill.scoring import metrics_of

    target = predictor.target
    truth = target.codes(frame[target.name])

    def roc_auc(rows: pd.DataFrame) -> float:
        return float(metrics_of(target, predictor.raw(rows), truth)["roc_auc"])

    baseline, rng, found = roc_auc(frame), np.random.default_rng(seed), {}
    for name in [f.name for f in predictor.features]:
        drops = [baseline - roc_auc(frame.assign(**{name: frame[name].to_numpy()[rng.permutation(len(frame))]}))
                 for _ in range(repeats)]
        found[name] = (float(np.mean(drops)), float(np.std(drops)))
    return found


def test_importance_is_the_definitions_whatever_number_of_shuffles_share_a_pass(
        mlp: modelmill.Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    module = importlib.import_module("modelmill.explain.importance")  # the package's name is its function's
    frame = make_frame(90, seed=4)
    frame = frame.loc[mlp.parts.target.labelled(frame["label"])].reset_index(drop=True)

    def flat(ranking: dict[str, tuple[float, float]]) -> dict[str, float]:
        return {f"{column} {part}": value for column, pair in ranking.items() for part, value in zip("ms", pair)}

    expected = flat(by_definition(mlp.parts, frame, repeats=3, seed=0))
    assert any(value != 0 for value in expected.values())
    per_row = sum(x[:1].numel() for x in mlp.parts.inputs(frame[COLUMNS]))
    for copies in (None, 1, 4, 7):  # the default, one shuffle a pass, and passes splitting the 12 evenly and not
        if copies is not None:
            monkeypatch.setattr(module, "STACKED_VALUES", copies * per_row * len(frame))
        assert flat(importance(mlp.parts, frame, repeats=3, seed=0)) == pytest.approx(expected, rel=1e-5, abs=1e-7)


def test_missing_column_and_inapplicable_method_are_clear_errors(mlp: modelmill.Pipeline) -> None:
    with pytest.raises(DataError, match=r"missing column\(s\): 'colour'"):
        mlp.explain(make_frame(5).drop(columns=["colour"]))
    with pytest.raises(DataError, match=r"0 rows to explain"):
        mlp.explain(make_frame(5).iloc[:0])
    with pytest.raises(ModelError, match=r"model type 'mlp' on torch cannot be explained by treeshap\. Methods "
                                         r"that apply to it: integrated_gradients .*; shapley_sampling"):
        mlp.explain(make_frame(5), method="treeshap")
    with pytest.raises(ConfigError, match=r"unknown explanation method 'shap'.*shapley_sampling"):
        mlp.explain(make_frame(5), method="shap")
    with pytest.raises(DataError, match=r"missing column\(s\): 'label'"):
        importance(mlp.parts, make_frame(20).drop(columns=["label"]))


def run_cli(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    from modelmill.cli import main

    monkeypatch.setattr(sys, "argv", ["modelmill", *args])
    with pytest.raises(SystemExit) as exit:
        main()
    return int(exit.value.code or 0)


def test_cli_writes_attributions_importance_and_a_page(mlp: modelmill.Pipeline, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    bundle = mlp.save(tmp_path / "bundle")
    make_frame(60, seed=4).to_csv(tmp_path / "new.csv", index=False)
    out = tmp_path / "why"
    assert run_cli(monkeypatch, "explain", str(bundle), str(tmp_path / "new.csv"), "-o", str(out),
                   "--records", "7", "--repeats", "2") == 0
    table = pd.read_csv(out / "attributions.csv")
    assert len(table) == 7 and list(table.columns[1:5]) == COLUMNS and table["gap"].max() <= 0.01
    ranking = pd.read_csv(out / "importance.csv")
    assert sorted(ranking["column"]) == sorted(COLUMNS)
    assert ranking["importance"].is_monotonic_decreasing
    page = (out / "explanations.html").read_text()
    assert page.count("<h2>Record ") == 7 and "<script" not in page
    assert "colour = " in page and "roc_auc&#x27;s drop" in page  # the values explained, the metric scored by
    # the same attributions as the Python API on the loaded bundle
    again = modelmill.load(bundle).explain(make_frame(60, seed=4).head(7))
    np.testing.assert_allclose(table[COLUMNS].to_numpy(), again.attributions, atol=1e-6)


def test_cli_bad_input_exits_2_and_writes_nothing(mlp: modelmill.Pipeline, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    bundle = mlp.save(tmp_path / "bundle")
    make_frame(20, seed=4).drop(columns=["flag"]).to_csv(tmp_path / "bad.csv", index=False)
    out = tmp_path / "why"
    assert run_cli(monkeypatch, "explain", str(bundle), str(tmp_path / "bad.csv"), "-o", str(out)) == 2
    message = capsys.readouterr().err
    assert "missing column(s): 'flag'" in " ".join(message.split()) and "Traceback" not in message
    assert not out.exists() and not list(tmp_path.glob(".why*"))
    make_frame(20, seed=4).to_csv(tmp_path / "good.csv", index=False)
    assert run_cli(monkeypatch, "explain", str(bundle), str(tmp_path / "good.csv"), "-o", str(out),
                   "--method", "treeshap", "--no-importance") == 2
    assert "Methods that apply to it" in " ".join(capsys.readouterr().err.split()) and not out.exists()


def test_integrated_gradients_are_complete_for_a_tiny_cnn() -> None:
    from tests.features.test_image import config, frame_of, make_images

    images, labels = make_images(160)
    frame = frame_of(images, labels)
    frame["noise"] = np.random.default_rng(0).normal(size=len(frame))
    setup = config()
    setup["features"].append({"name": "noise", "type": "number"})
    setup["training"]["epochs"] = 2
    setup["evaluation"] = QUICK
    pipeline = modelmill.Pipeline(setup).fit(frame)
    explanation = pipeline.explain(frame.head(12))
    assert explanation.method == "integrated_gradients" and explanation.columns == ["image", "noise"]
    assert explanation.gap.max() <= 0.01
    assert explanation.baseline_record is not None and "image" in explanation.baseline_record


def test_the_cached_rule_gives_what_captums_public_attribute_gives(mlp: modelmill.Pipeline) -> None:
    from captum.attr import IntegratedGradients

    from modelmill.explain.gradients import _integrate, _Top, encodings

    net = mlp.parts.model
    x, _ = encodings(net, mlp.parts.inputs(make_frame(6, seed=3)))
    baseline = x[:1]
    classes = torch.zeros(len(x), dtype=torch.int64)
    method = IntegratedGradients(_Top(net))
    expected = method.attribute(x, baselines=baseline, target=classes, n_steps=64, method="gausslegendre")
    torch.testing.assert_close(_integrate(method, x, baseline, classes, 64), expected.detach(), rtol=0, atol=1e-10)


def test_tfidf_logistic_gets_exact_additive_attributions() -> None:
    features = [{"name": "x", "type": "number"}, {"name": "colour", "type": "category"},
                {"name": "review", "type": "text", "tokenizer": {"min_frequency": 1}}]
    pipeline = fitted({"type": "tfidf_logistic"}, features=features)
    records = make_frame(12, seed=4)
    explanation = pipeline.explain(records)
    assert explanation.method == "linear" and explanation.gap.max() <= 1e-6
    assert explanation.baseline_record is not None and explanation.baseline_record["review"] == ""
    sampled = pipeline.explain(records, method="shapley_sampling")  # any order gives the same: additive
    np.testing.assert_allclose(sampled.attributions, explanation.attributions, atol=1e-6)


def test_the_package_imports_no_training_evaluation_or_optional_library() -> None:
    import json
    import subprocess

    probe = ("import json, sys, modelmill.explain; print(json.dumps([m for m in ['matplotlib', 'sklearn', "
             "'captum', 'lightgbm', 'modelmill.training', 'modelmill.api', 'modelmill.evaluation', "
             "'modelmill.scoring'] if m in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []  # a server explaining records stays light
