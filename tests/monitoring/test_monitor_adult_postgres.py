"""The monitoring protocol on real data behind the real service: adult (32,561 rows) served by
``modelmill serve`` (real uvicorn on loopback) logging to a real PostgreSQL. Twenty windows of
1,000 rows drawn with replacement from the test split raise no alarm; a window with older
ages over-sampled and one with a common occupation's share doubled each raise an alarm that
ranks the shifted column first; windowed metrics are scikit-learn's on the same rows; the
label-free estimate is within 0.02 of the realised ROC-AUC and accuracy; the server's
``/metrics`` carries the drift gauges; the dashboard draws the log in a real headless
Chromium (``MODELMILL_DOCS_SCREENSHOT=docs/dashboard.png`` keeps its screenshot for the
docs)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn import metrics as skm

from modelmill.api import Pipeline
from modelmill.bundle import read_bundle
from modelmill.data.datasets import fetch_dataset
from modelmill.data.split import SplitRecord
from modelmill.monitoring.dashboard import build_app
from modelmill.monitoring.export import log_frame, open_log
from modelmill.monitoring.watch import monitor_log
from tests.browser import BROWSER, DRAWN, Chromium, live
from tests.monitoring.service import start_server, stop_server
from tests.postgres import postgres_cluster

ROOT = Path(__file__).resolve().parents[2]
WINDOW = 1000
TOKEN = "feedback-token-for-the-monitoring-test"
INPUTS = ["age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation",
          "relationship", "race", "sex", "capital-gain", "capital-loss", "hours-per-week", "native-country"]


@pytest.fixture(scope="module")
def adult(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """The example config with gradient-boosted trees, its bundle as version 1, its test split."""
    config = yaml.safe_load((ROOT / "examples" / "adult" / "adult.yaml").read_text())
    config.update(model={"type": "gbdt"}, training={"progress": False}, monitoring={"refresh_s": 1})
    root = tmp_path_factory.mktemp("adult-models")
    Pipeline(config).fit().save(root / "1")
    split = read_bundle(root / "1").split()
    assert split is not None
    test = SplitRecord.from_json(split).test_split(pd.read_csv(fetch_dataset("adult"))).reset_index(drop=True)
    return root, test


def windows(test: pd.DataFrame) -> tuple[list[pd.DataFrame], pd.DataFrame, pd.DataFrame]:
    """Twenty unshifted windows; one with ages of 50 and over four times as likely; one with
    Prof-specialty (12% of the rows) twice as common."""
    rng = np.random.default_rng(0)
    steady = [test.iloc[rng.integers(0, len(test), WINDOW)] for _ in range(20)]
    older = np.where(test["age"] >= 50, 4.0, 1.0)
    profession = test["occupation"].eq("Prof-specialty").to_numpy()
    share = profession.mean()
    doubled = np.where(profession, 2.0, (1 - 2 * share) / (1 - share))
    return (steady, test.iloc[rng.choice(len(test), WINDOW, p=older / older.sum())],
            test.iloc[rng.choice(len(test), WINDOW, p=doubled / doubled.sum())])


def send(url: str, frame: pd.DataFrame, first: int, *, labels: bool) -> None:
    """Records 500 to a request, request ids in sending order; their labels by feedback."""
    with httpx.Client(base_url=url, timeout=60) as http:
        for start in range(0, len(frame), 500):
            part = frame.iloc[start:start + 500]
            request_id = f"req{first + start:08d}"
            records = json.loads(part[INPUTS].to_json(orient="records"))
            answer = http.post("/v1/predict", json={"instances": records}, headers={"X-Request-ID": request_id})
            assert answer.status_code == 200, answer.text
            if labels:
                truth = [{"request_id": request_id, "row": row, "value": value}
                         for row, value in enumerate(part["income"].tolist())]
                answer = http.post("/v1/feedback", json={"labels": truth}, headers={"Authorization": f"Bearer {TOKEN}"})
                assert answer.status_code == 200, answer.text
            time.sleep(0.01)  # one logging time per request, strictly increasing


def stored(url: str, rows: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        store = open_log(url)
        try:
            if store.count() >= rows:
                return
        finally:
            store.close()
        time.sleep(0.5)
    raise AssertionError(f"fewer than {rows} records stored in {timeout} s")


def gauges(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    found = {f"score:{m[1]}": float(m[2]) for m in re.finditer(r'^modelmill_drift_score\{column="([^"]+)"\} (\S+)$',
                                                                text, re.M)}
    found.update({f"alarm:{m[1]}": float(m[2]) for m in
                  re.finditer(r'^modelmill_drift_alarm\{column="([^"]+)"\} (\S+)$', text, re.M)})
    alarm = re.search(r"^modelmill_monitoring_alarm (\S+)$", text, re.M)
    found["alarm"] = float(alarm.group(1)) if alarm else float("nan")
    return found


def monitor(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "modelmill.cli", "monitor", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.timeout(600)
def test_adult_windows_behind_the_real_service_and_postgres(adult: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    models, test = adult
    steady, older, doubled = windows(test)
    with postgres_cluster() as database:
        server = start_server(models, "--log", database.url, "--log-flush-interval", "0.3",
                              env={"MODELMILL_FEEDBACK_TOKEN": TOKEN})
        try:
            send(server.url, pd.concat(steady, ignore_index=True), 0, labels=True)
            stored(database.url, 20 * WINDOW)
            time.sleep(2.5)  # the gauges judge the latest window every second
            calm_gauges = gauges(server.url)
            calm = monitor(str(models), "--log", database.url, "--window", str(WINDOW), "-o", "calm", cwd=tmp_path)
            by_accuracy = monitor_log(models, database.url, window=WINDOW, metric="accuracy")
            store = open_log(database.url)
            try:
                logged = log_frame(store)
            finally:
                store.close()
            send(server.url, pd.concat([older, doubled], ignore_index=True), 20 * WINDOW, labels=True)
            stored(database.url, 22 * WINDOW)
            time.sleep(2.5)
            loud_gauges = gauges(server.url)
            loud = monitor(str(models), "--log", database.url, "--window", str(WINDOW), "-o", "loud", cwd=tmp_path)
            page = dashboard(models, database.url, tmp_path)
        finally:
            assert stop_server(server) == 0, server.text()

    # no shift: no alarm, exit 0
    assert calm.returncode == 0, calm.stdout + calm.stderr
    summary = json.loads((tmp_path / "calm" / "summary.json").read_text())
    assert len(summary["windows"]) == 20 and summary["alarms"] == []
    # windowed metrics: scikit-learn's on the same logged rows and labels
    for window, start in zip(summary["windows"], range(0, 20 * WINDOW, WINDOW)):
        rows = logged.iloc[start:start + WINDOW]
        truth = (rows["income"] == ">50K").astype(int)
        expected = skm.roc_auc_score(truth, rows["income_probability_>50K"])
        assert window["performance"]["realised"]["value"] == pytest.approx(expected, rel=1e-12, abs=1e-12)
    # the label-free estimate beside the realised figure
    errors = {"roc_auc": [abs(w["performance"]["estimated"] - w["performance"]["realised"]["value"])
                          for w in summary["windows"]]}
    assert not by_accuracy.alarm
    errors["accuracy"] = [abs(w.performance.estimated - w.performance.realised.value)  # type: ignore[operator,union-attr]
                          for w in by_accuracy.windows]
    mean_errors = {metric: float(np.mean(values)) for metric, values in errors.items()}
    print("mean absolute error of the label-free estimate over the unshifted windows:", mean_errors)
    assert mean_errors["roc_auc"] <= 0.02 and mean_errors["accuracy"] <= 0.02, mean_errors

    # the shifted windows: an alarm each, the shifted column first
    assert loud.returncode == 3, loud.stdout + loud.stderr
    summary = json.loads((tmp_path / "loud" / "summary.json").read_text())
    assert {a["window"] for a in summary["alarms"]} == {20, 21}, summary["alarms"]
    assert summary["windows"][20]["drift"][0]["column"] == "age"
    assert summary["windows"][21]["drift"][0]["column"] == "occupation"
    assert "distribution" in summary["windows"][21]["drift"][0]["alarms"]
    print("shifted windows, ROC-AUC estimated and realised:",
          [(w["performance"]["estimated"], w["performance"]["realised"]["value"]) for w in summary["windows"][20:]])

    # the server's gauges: the latest window then the occupation-doubled one
    assert calm_gauges["alarm"] == 0 and calm_gauges["alarm:occupation"] == 0, calm_gauges
    assert loud_gauges["alarm"] == 1 and loud_gauges["alarm:occupation"] == 1, loud_gauges
    assert loud_gauges["score:occupation"] == max(v for k, v in loud_gauges.items()
                                                   if k.startswith("score:") and k != "score:prediction")

    # the dashboard over the same PostgreSQL log
    assert page["errors"] == [], page["errors"]
    assert page["ranked"][0] == "occupation" and set(INPUTS) <= set(page["ranked"]), page["ranked"]
    assert "occupation: the distribution moved" in page["banner"]
    assert page["drawn"] and all(count > 2000 for count in page["drawn"].values()), page["drawn"]


def dashboard(models: Path, url: str, tmp_path: Path) -> dict[str, object]:
    """The page drawn in headless Chromium: its ranked columns, alarm banner, drawn charts."""
    if BROWSER is None:
        raise AssertionError("no chromium on this machine: ./test installs it (scripts/test-deps.sh)")
    with live(build_app(models, url, refresh_s=60, window=WINDOW)) as base, Chromium(height=1400) as browser:
        browser.open(f"{base}/")
        assert browser.wait_for("document.body.dataset.state !== 'loading' && document.body.dataset.state",
                                timeout=120) == "ready"
        found = {
            "ranked": browser.evaluate("[...document.querySelectorAll('#drift-table tbody tr')]"
                                       ".map((row) => row.cells[0].textContent)"),
            "banner": browser.evaluate("document.getElementById('alarm-banner').textContent"),
            "drawn": dict(browser.evaluate(DRAWN)),
            "errors": browser.console_errors(),
        }
        keep = os.environ.get("MODELMILL_DOCS_SCREENSHOT")
        browser.screenshot(Path(keep) if keep else tmp_path / "dashboard.png")
    return found
