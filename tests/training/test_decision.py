"""How a class target decides, chosen on held-out predictions: the threshold by costs or F1,
calibration maps that lower the calibration error, what the bundle keeps and predictions
apply, and the clear errors of settings that cannot hold."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

import modelmill
from modelmill.errors import ConfigError
from modelmill.evaluation.metrics import expected_calibration_error
from modelmill.training.decision import best_f1_threshold, fit_calibrator, lowest_cost_threshold, total_cost
from tests.conftest import base_config, make_frame

TABLE = [{"name": "x", "type": "number"}, {"name": "colour", "type": "category"}, {"name": "flag", "type": "binary"}]


@pytest.mark.parametrize("seed", range(5))
def test_thresholds_are_the_best_of_every_cut(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = rng.random(300)
    y = (rng.random(300) < p ** 2).astype(int)
    cuts = np.unique(np.concatenate([p, [0.5]]))
    cost = lowest_cost_threshold(p, y, 1.0, 5.0)
    assert total_cost(p, y, cost, 1.0, 5.0) == min(total_cost(p, y, t, 1.0, 5.0) for t in cuts)

    def f1(t: float) -> float:
        tp, fp, fn = np.sum((p >= t) & (y == 1)), np.sum((p >= t) & (y == 0)), np.sum((p < t) & (y == 1))
        return float(2 * tp / (2 * tp + fp + fn))

    assert f1(best_f1_threshold(p, y)) == pytest.approx(max(f1(t) for t in cuts))


@pytest.mark.parametrize("method", ["sigmoid", "isotonic"])
def test_calibration_lowers_the_error_on_fresh_rows(method: str) -> None:
    rng = np.random.default_rng(0)

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        truth = rng.random(n)
        return truth ** 3, (rng.random(n) < truth).astype(float)  # predictions far too low

    p, y = sample(5000)
    calibrator = fit_calibrator(method, p, y)
    fresh_p, fresh_y = sample(5000)
    before = expected_calibration_error(fresh_y, fresh_p)
    after = expected_calibration_error(fresh_y, calibrator.apply(fresh_p))
    # Platt's two numbers cannot undo a cube exactly; the step function nearly can
    assert before > 0.2 and after < {"sigmoid": 0.05, "isotonic": 0.02}[method]


def decision_config(target: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return base_config(features=list(TABLE), target={"name": "label", "type": "binary", **target},
                       model={"type": "gbdt"}, **changes)


def test_costs_choose_a_threshold_that_the_bundle_and_predictions_keep(tmp_path: Path) -> None:
    config = decision_config({"costs": {"false_positive": 1, "false_negative": 5}, "calibration": "sigmoid"})
    pipeline = modelmill.Pipeline(config).fit(make_frame(800))
    target = pipeline.parts.target
    assert target.config.threshold == "auto" and target.threshold_ < 0.5  # missing a positive costs 5x
    decision = pipeline.decision_
    assert decision["held-out cost at the threshold"] <= decision["held-out cost at 0.5"]
    metrics = pipeline.metrics_
    assert metrics["threshold"] == target.threshold_ and {"cost", "cost_at_0.5", "ece"} <= set(metrics)
    loaded = modelmill.load(pipeline.save(tmp_path / "bundle"))
    assert loaded.parts.target.threshold_ == target.threshold_
    new = make_frame(200, seed=4)
    predicted = loaded.predict(new)
    pd.testing.assert_frame_equal(predicted, pipeline.predict(new), check_exact=True)
    positive = predicted["label_probability_good"].to_numpy()
    assert ((positive >= target.threshold_) == (predicted["label_predicted"] == "good")).all()
    assert "Threshold and calibration" in (tmp_path / "bundle" / "report.html").read_text()


def test_isotonic_is_refused_on_too_few_held_out_rows() -> None:
    config = decision_config({"calibration": "isotonic"})
    with pytest.raises(ConfigError, match="isotonic calibration needs at least 1,000 held-out rows"):
        modelmill.Pipeline(config).fit(make_frame(600))


def test_held_out_choices_need_held_out_rows() -> None:
    config = decision_config({"threshold": "auto"})
    config["data"]["split"]["valid"] = 0
    with pytest.raises(ConfigError, match="held-out"):
        modelmill.Pipeline(config).fit(make_frame(300))


@pytest.mark.parametrize("target,message", [
    ({"name": "amount", "type": "number", "calibration": "isotonic"}, "a number target has none"),
    ({"name": "label", "type": "binary", "costs": {"false_negative": -5}}, "greater than or equal to 0"),
    ({"name": "label", "type": "binary", "threshold": 0.3, "costs": {"false_negative": 5}}, "set threshold: auto"),
])
def test_bad_decision_settings_exit_2_before_any_run(tmp_path: Path, target: dict[str, Any], message: str) -> None:
    make_frame(100).to_csv(tmp_path / "data.csv", index=False)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(base_config(target=target)))
    done = subprocess.run([sys.executable, "-m", "modelmill.cli", "train", "c.yaml", "--runs", "runs"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and message in " ".join(done.stderr.split()), done.stderr
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("bundle"))
