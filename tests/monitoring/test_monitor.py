"""``modelmill monitor`` on logs filled in process (SQLite): windows by count and by time,
windowed metrics that are scikit-learn's on the same rows, the label-free estimate, exit
codes 0 / 3, the summary against its published JSON Schema, and the bad inputs (exit 2)."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from modelmill.api import Pipeline
from modelmill.cli import main
from modelmill.errors import ConfigError, ModelmillError, ServingError
from modelmill.monitoring import LogStore, ModelIdentity
from modelmill.evaluation.estimate import expected_roc_auc
from modelmill.monitoring.decay import estimated
from modelmill.monitoring.summary import schema_text
from modelmill.monitoring.watch import Monitor, Reference, monitor_log
from modelmill.features import Predictions
from tests.commands import cli_here
from tests.conftest import base_config, make_frame
from tests.monitoring.filling import fill_log

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "docs" / "monitor-summary.schema.json"


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "modelmill.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def _fit(folder: Path, target: dict[str, str]) -> Path:
    config = base_config(target=target, training={"epochs": 4, "batch_size": 64, "progress": False})
    Pipeline(config).fit(make_frame(800, seed=1)).save(folder)
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One small model per task: binary (label), multi-class (kind), regression (amount)."""
    root = tmp_path_factory.mktemp("monitor-models")
    return {"binary": _fit(root / "binary", {"name": "label", "type": "binary"}),
            "category": _fit(root / "category", {"name": "kind", "type": "category"}),
            "number": _fit(root / "number", {"name": "amount", "type": "number"})}


def shifted(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame["x"] = frame["x"] + 1.0  # one standard deviation
    return frame


@pytest.mark.parametrize("task", ["binary", "category", "number"])
def test_windowed_metrics_are_scikit_learns_on_the_same_rows(models: dict[str, Path], tmp_path: Path,
                                                              task: str) -> None:
    frame = make_frame(600, seed=5)
    url = f"sqlite:///{tmp_path / 'log.db'}"
    fill_log(url, models[task], frame, labels=True)
    summary = monitor_log(models[task], url, window=200)
    reference = Reference.load(models[task])
    target = reference.predictor.target
    predictions = reference.predictor.predict(frame)
    assert [w.rows for w in summary.windows] == [200, 200, 200] and summary.log.labelled == 600
    for window, rows in zip(summary.windows, (slice(0, 200), slice(200, 400), slice(400, 600))):
        truth = target.codes(frame[target.name].iloc[rows])
        realised = window.performance.realised
        assert realised is not None and realised.rows == 200
        if task == "binary":
            expected = skm.roc_auc_score(truth, predictions.proba[rows, 1])
        elif task == "category":
            expected = skm.accuracy_score(truth, predictions.codes[rows])
        else:
            expected = math.sqrt(skm.mean_squared_error(truth, predictions.codes[rows]))
        assert realised.value == pytest.approx(expected, rel=1e-12, abs=1e-12)
        assert realised.low is not None and realised.high is not None
        assert realised.low <= realised.value <= realised.high
        assert (window.performance.estimated is None) == (task == "number")


def test_labels_that_arrived_for_part_of_a_window_and_the_estimate_beside_them(models: dict[str, Path],
                                                                               tmp_path: Path) -> None:
    frame = make_frame(400, seed=6)
    url = f"sqlite:///{tmp_path / 'log.db'}"
    fill_log(url, models["binary"], frame.iloc[:300], labels=True)
    fill_log(url, models["binary"], frame.iloc[300:], start=1_790_000_500.0, prefix="later", labels=False)
    summary = monitor_log(models["binary"], url, window=200, metric="accuracy")
    first, second = summary.windows
    assert first.labelled == 200 and second.labelled == 100
    assert first.performance.realised is not None and second.performance.realised is not None
    assert second.performance.realised.rows == 100
    assert all(w.performance.estimated is not None for w in summary.windows)
    assert summary.settings.metric == "accuracy"


def test_the_label_free_estimate_matches_calibrated_probabilities() -> None:
    """When labels are drawn from the probabilities themselves (perfect calibration), the
    estimate is what the labels then realise."""
    rng = np.random.default_rng(0)
    p = rng.beta(0.7, 1.6, size=40_000)
    truth = (rng.random(p.size) < p).astype(int)
    predicted = (p >= 0.5).astype(int)
    binary = Predictions(labels=predicted, codes=predicted, proba=np.c_[1 - p, p], class_names=["0", "1"])
    assert estimated("binary", "roc_auc", binary) == pytest.approx(skm.roc_auc_score(truth, p), abs=0.01)
    assert estimated("binary", "accuracy", binary) == pytest.approx(skm.accuracy_score(truth, predicted), abs=0.01)
    assert estimated("binary", "f1", binary) == pytest.approx(skm.f1_score(truth, predicted), abs=0.01)
    assert estimated("binary", "log_loss", binary) is None
    proba = rng.dirichlet([1.0, 1.0, 1.0], size=30_000)
    drawn = np.array([rng.choice(3, p=row) for row in proba])
    category = Predictions(labels=proba.argmax(1), codes=proba.argmax(1), proba=proba, class_names=["a", "b", "c"])
    assert estimated("category", "accuracy", category) == pytest.approx(
        skm.accuracy_score(drawn, proba.argmax(1)), abs=0.01)
    assert estimated("category", "roc_auc", category) == pytest.approx(
        skm.roc_auc_score(drawn, proba, multi_class="ovr"), abs=0.01)
    assert expected_roc_auc(np.ones(5)) is None


def test_time_windows(models: dict[str, Path], tmp_path: Path) -> None:
    frame = make_frame(300, seed=7)
    url = f"sqlite:///{tmp_path / 'log.db'}"
    start = 1_790_000_000.0 - 1_790_000_000.0 % 3600  # on the hour
    fill_log(url, models["binary"], frame, start=start, step=30.0)  # 300 records over 2.5 hours
    summary = monitor_log(models["binary"], url, window="1h")
    assert [w.rows for w in summary.windows] == [120, 120, 60]
    assert [w.judged for w in summary.windows] == [True, True, False]  # 60 < monitoring.min_rows


def test_monitor_exits_0_without_and_3_with_an_alarm_and_writes_a_valid_summary(models: dict[str, Path],
                                                                                 tmp_path: Path) -> None:
    steady, moved = f"sqlite:///{tmp_path / 'steady.db'}", f"sqlite:///{tmp_path / 'moved.db'}"
    fill_log(steady, models["binary"], make_frame(600, seed=8))
    fill_log(moved, models["binary"], pd.concat([make_frame(400, seed=8), shifted(make_frame(200, seed=9))],
                                                 ignore_index=True))
    schema = json.loads(SCHEMA.read_text())
    calm = cli("monitor", str(models["binary"]), "--log", steady, "--window", "200", "-o", "calm", cwd=tmp_path)
    assert calm.returncode == 0, calm.stderr
    summary = json.loads((tmp_path / "calm" / "summary.json").read_text())
    jsonschema.validate(summary, schema)
    assert summary["alarm"] is False and summary["alarms"] == [] and len(summary["windows"]) == 3
    assert "<h1>Monitoring: tiny" in (tmp_path / "calm" / "report.html").read_text()

    loud = cli("monitor", str(models["binary"]), "--log", moved, "--window", "200", "-o", "loud", cwd=tmp_path)
    assert loud.returncode == 3, loud.stderr
    summary = json.loads((tmp_path / "loud" / "summary.json").read_text())
    jsonschema.validate(summary, schema)
    assert {a["window"] for a in summary["alarms"]} == {2}
    latest = summary["windows"][2]
    assert latest["drift"][0]["column"] == "x" and "distribution" in latest["drift"][0]["alarms"]
    assert summary["ranking"][0]["column"] == "x"
    assert "alarm window 2, drift: x: the distribution moved" in " ".join(loud.stderr.split())


def test_the_published_schema_is_current() -> None:
    assert SCHEMA.read_text() == schema_text(), "regenerate docs/monitor-summary.schema.json (see its module)"


def test_bad_input_is_one_clear_message_and_exit_2(models: dict[str, Path], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    store = LogStore(empty)
    store.open(Reference.load(models["binary"]).identity)
    store.close()
    other = f"sqlite:///{tmp_path / 'other.db'}"
    store = LogStore(other)
    store.open(ModelIdentity("credit", {"age": "number"}, {"name": "default", "type": "binary"}))
    store.close()
    small = f"sqlite:///{tmp_path / 'small.db'}"
    fill_log(small, models["binary"], make_frame(150, seed=2))
    cases = {
        (empty,): "the prediction log holds no records",
        (other,): "holds another model's records (model 'credit' in the store, 'tiny' served",
        (small, "--window", "1000"): "the window of 1000 rows (--window or monitoring.window) is larger than the log (150",
        (small, "--metric", "auc"): "unknown metric for a binary target 'auc'",
        (small, "--window", "soon"): "'soon' is neither a number of rows",
        (f"sqlite:///{tmp_path / 'absent.db'}",): "no prediction log at",
    }
    for (url, *options), message in cases.items():  # in process, through the command line's own entry point
        monkeypatch.setattr(sys, "argv", ["modelmill", "monitor", str(models["binary"]), "--log", url, *options,
                                          "-o", str(tmp_path / "out")])
        with pytest.raises(SystemExit) as exited:
            main()
        text = " ".join(capsys.readouterr().err.split())
        assert exited.value.code == 2, (url, options, text)
        assert message in text and "Traceback" not in text, text
        assert not (tmp_path / "out").exists()  # nothing half-written
    with pytest.raises(ConfigError, match="training loss is not a metric"):
        Monitor(Reference.load(models["binary"]), metric="loss")
    with pytest.raises(ServingError, match="larger than the log"):
        monitor_log(models["binary"], small, window=151)


def test_a_broken_newest_version_is_passed_over_as_the_server_passes_it_over(models: dict[str, Path],
                                                                            tmp_path: Path) -> None:
    from tests.damage import flip_one_byte

    folder = tmp_path / "versions"
    shutil.copytree(models["binary"], folder / "1")
    shutil.copytree(models["binary"], folder / "2")
    flip_one_byte(folder / "2" / "weights.safetensors")
    url = f"sqlite:///{tmp_path / 'log.db'}"
    fill_log(url, folder / "1", make_frame(200, seed=12), version="1")
    assert monitor_log(folder, url, window=200).model.version == "1"
    with pytest.raises(ModelmillError, match="integrity"):
        monitor_log(folder, url, window=200, version="2")  # named: its own error


def test_predictions_and_performance_are_judged_on_the_reference_versions_rows(models: Path,
                                                                               tmp_path: Path) -> None:
    """After a deploy, the old version's predictions are another model's: inputs are compared
    whatever served them, predictions and metrics only on the reference version's rows."""
    frame = make_frame(400, seed=10)
    url = f"sqlite:///{tmp_path / 'log.db'}"
    fill_log(url, models["binary"], frame.iloc[:150], labels=True, version="0")
    fill_log(url, models["binary"], frame.iloc[150:], start=1_790_000_500.0, prefix="v", labels=True)
    summary = monitor_log(models["binary"], url, window=200)
    first, second = summary.windows
    assert first.versions == {"0": 150, "binary": 50} and second.versions == {"binary": 200}
    assert first.performance.rows == 50 and first.performance.labels == 50 and second.performance.rows == 200
    assert first.performance.realised is not None and first.performance.realised.rows == 50
    assert {c.column for c in first.drift} >= {"x", "colour", "prediction"}
    with pytest.raises(ServingError, match=r"--version '0' is not in .* \(versions: binary\)"):
        monitor_log(models["binary"], url, window=200, version="0")


def test_unknown_labels_are_counted_and_an_alarm_in_an_old_window_exits_3_only_when_asked(
        models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    frame = pd.concat([shifted(make_frame(200, seed=11)), make_frame(400, seed=12)], ignore_index=True)
    frame.loc[frame.index[-5:], "label"] = "maybe"  # a class the model never saw
    url = f"sqlite:///{tmp_path / 'log.db'}"
    fill_log(url, models["binary"], frame, labels=True)
    summary = monitor_log(models["binary"], url, window=200)
    assert summary.alarm and not summary.latest_alarm and {a.window for a in summary.alarms} == {0}
    assert summary.windows[-1].performance.unknown_labels == 5
    assert summary.windows[-1].performance.realised is not None and summary.windows[-1].performance.realised.rows == 195
    # through the command's entry point in this process (the test above runs it in its own for exits 0 and 3)
    latest, _, said = cli_here("monitor", str(models["binary"]), "--log", url, "--window", "200", "-o", "a",
                               cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
    every, _, said_too = cli_here("monitor", str(models["binary"]), "--log", url, "--window", "200", "--fail-on",
                                  "any", "-o", "b", cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
    assert (latest, every) == (0, 3), said + said_too


def test_a_database_that_goes_away_while_reading_is_a_clear_error(models: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy.exc import OperationalError

    from modelmill.monitoring import watch

    url = f"sqlite:///{tmp_path / 'log.db'}"
    fill_log(url, models["binary"], make_frame(100, seed=13))

    def gone(*_: object, **__: object) -> pd.DataFrame:
        raise OperationalError("SELECT", {}, ConnectionResetError("server closed the connection unexpectedly"))

    monkeypatch.setattr(watch, "log_frame", gone)
    with pytest.raises(ServingError, match="cannot be read: .*Fix: check that the database runs"):
        monitor_log(models["binary"], url, window=50)
