"""Every CLI command on tiny data, through a real subprocess, and the bad inputs that
must end in one clear message (exit 2, no traceback) with nothing half-written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import base_config, make_frame


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "modelmill.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def write_config(folder: Path, **overrides: object) -> Path:
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(base_config(**overrides)))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("e2e")
    make_frame(400).to_csv(folder / "data.csv", index=False)
    make_frame(150, seed=3).to_csv(folder / "test.csv", index=False)
    write_config(folder)
    done = cli("train", "tiny.yaml", cwd=folder)
    assert done.returncode == 0, done.stderr
    assert "report:" in done.stdout
    return folder


def test_train_writes_run_with_bundle_and_latest(trained: Path) -> None:
    latest = trained / "runs" / "tiny" / "latest"
    assert (latest / "bundle" / "report.html").is_file()
    assert (latest / "checkpoints" / "last.safetensors").is_file()
    assert (latest / "train.log").is_file()
    report = json.loads((latest / "bundle" / "cleaning_report.json").read_text())
    assert report["rows_in"] == 400


def test_predict_equals_in_process_pipeline(trained: Path) -> None:
    import modelmill

    done = cli("predict", "runs/tiny/latest", "test.csv", "-o", "out/predictions.csv", cwd=trained)
    assert done.returncode == 0, done.stderr
    written = pd.read_csv(trained / "out" / "predictions.csv")
    expected = modelmill.load(trained / "runs/tiny/latest").predict(pd.read_csv(trained / "test.csv"))
    assert list(written.columns) == list(expected.columns)
    assert (written["label_predicted"] == expected["label_predicted"]).all()
    pd.testing.assert_series_equal(written["label_probability_good"], expected["label_probability_good"],
                                   check_exact=True)


def test_evaluate_writes_metrics_plots_report(trained: Path) -> None:
    done = cli("evaluate", "runs/tiny/latest", "test.csv", "-o", "evaluation", cwd=trained)
    assert done.returncode == 0, done.stderr
    metrics = json.loads((trained / "evaluation" / "metrics.json").read_text())
    assert 0.5 < metrics["roc_auc"] <= 1.0
    assert (trained / "evaluation" / "report.html").is_file()
    assert list((trained / "evaluation" / "plots").glob("*.png"))


def test_render_config_fills_defaults(trained: Path) -> None:
    done = cli("render-config", "tiny.yaml", cwd=trained)
    assert done.returncode == 0
    rendered = yaml.safe_load(done.stdout)
    assert rendered["training"]["optimizer"]["lr"] == 0.001
    assert rendered["cleaning"]["duplicates"] == "drop"


def test_init_infers_a_config_that_trains(tmp_path: Path) -> None:
    make_frame(300).to_csv(tmp_path / "shop.csv", index=False)
    done = cli("init", "shop.csv", "--target", "label", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (tmp_path / "shop.yaml").write_text(done.stdout)
    config = yaml.safe_load(done.stdout)
    kinds = {f["name"]: f["type"] for f in config["features"]}
    assert kinds["x"] == "number" and kinds["colour"] == "category" and kinds["flag"] == "binary"
    assert config["target"] == {"name": "label", "type": "binary"}


def test_init_forecast_writes_a_config_that_renders(tmp_path: Path) -> None:
    months = pd.date_range("2016-01-01", periods=48, freq="MS")
    pd.DataFrame({"month": months.strftime("%Y %b"), "demand": range(48), "price": [1.0, 2.0] * 24}) \
        .to_csv(tmp_path / "demand.csv", index=False)
    done = cli("init", "demand.csv", "--target", "demand", "--task", "forecast", "-o", "demand.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rendered = cli("render-config", "demand.yaml", cwd=tmp_path)
    assert rendered.returncode == 0, rendered.stderr
    config = yaml.safe_load(rendered.stdout)
    assert config["task"] == "forecast"
    assert config["series"]["time"] == "month" and config["series"]["horizon"] == 12  # capped: 48 // 4
    assert config["series"]["future"] == []  # price is only a commented candidate


def test_init_refuses_a_horizon_without_a_forecast(tmp_path: Path) -> None:
    make_frame(30).to_csv(tmp_path / "shop.csv", index=False)
    expect_user_error(cli("init", "shop.csv", "--target", "label", "--horizon", "3", cwd=tmp_path),
                      "--horizon: a horizon is for forecasts", "Fix: add --task forecast")
    expect_user_error(cli("init", "shop.csv", "--target", "label", "--task", "forcast", cwd=tmp_path),
                      "--task: expected predict, forecast or recommend, got 'forcast' (did you mean 'forecast'?)")


# ------------------------------------------------------------------ bad input


def expect_user_error(done: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    flat = " ".join(done.stderr.split())
    for fragment in fragments:
        assert fragment in flat, (fragment, done.stderr)


def nothing_written(folder: Path) -> bool:
    runs = folder / "runs"
    return not runs.exists() or not any(p for p in runs.rglob("*") if p.is_file())


@pytest.mark.parametrize("content,fragments", [
    (b"", ["data.csv", "0 rows"]),
    (b"x,colour,flag,when,review,label\n", ["data.csv", "0 rows"]),
    (b"x,colour,flag,when,review,label\n1,red,yes,2020-01-01,ok,good\n2,bl\xffue,no,2020-01-02,ok,bad\n",
     ["data.csv", "line 3"]),
])
def test_broken_files(tmp_path: Path, content: bytes, fragments: list[str]) -> None:
    (tmp_path / "data.csv").write_bytes(content)
    write_config(tmp_path)
    expect_user_error(cli("train", "tiny.yaml", cwd=tmp_path), *fragments)
    assert nothing_written(tmp_path)


@pytest.mark.parametrize("change,fragments", [
    (lambda f: f.drop(columns=["label"]), ["missing column", "'label'"]),
    (lambda f: f.assign(x=["cheap" if i % 50 == 0 else v for i, v in enumerate(f["x"])]),
     ["column 'x'", "not numbers", "'cheap'"]),
    (lambda f: f.assign(x=None), ["column 'x'", "empty"]),
    (lambda f: f.assign(label="good"), ["column 'label'", "single"]),
])
def test_bad_data(tmp_path: Path, change: object, fragments: list[str]) -> None:
    change(make_frame(200)).to_csv(tmp_path / "data.csv", index=False)  # type: ignore[operator]
    write_config(tmp_path)
    expect_user_error(cli("train", "tiny.yaml", cwd=tmp_path), *fragments)
    assert nothing_written(tmp_path)


def test_bad_config(tmp_path: Path) -> None:
    make_frame(100).to_csv(tmp_path / "data.csv", index=False)
    write_config(tmp_path, trainig={"epochs": 3})
    expect_user_error(cli("train", "tiny.yaml", cwd=tmp_path), "trainig", "did you mean 'training'")
    write_config(tmp_path, model={"type": "cnnn"})
    expect_user_error(cli("train", "tiny.yaml", cwd=tmp_path), "model.type", "valid: linear, mlp")
    assert nothing_written(tmp_path)


def test_leakage_is_warned(tmp_path: Path) -> None:
    make_frame(300).assign(copy=lambda f: f["label"].map({"good": "G", "bad": "B"})).to_csv(
        tmp_path / "data.csv", index=False)
    config = base_config()
    config["features"].append({"name": "copy", "type": "category"})
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    done = cli("train", "tiny.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "leakage" in done.stderr and "'copy'" in done.stderr


def test_evaluate_missing_bundle_is_a_user_error(tmp_path: Path) -> None:
    expect_user_error(cli("evaluate", "nowhere", "x.csv", cwd=tmp_path), "nowhere", "does not exist")
