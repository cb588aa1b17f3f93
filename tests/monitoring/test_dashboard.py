"""The dashboard: real uvicorn, a real prediction log, and the page drawn in a real
headless Chromium; the token guard and the empty log through FastAPI's test client."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from modelmill.api import Pipeline
from modelmill.errors import ServingError
from modelmill.monitoring import LogStore
from modelmill.monitoring.dashboard import Cached, build_app, check_dashboard, read_versions, run_dashboard
from modelmill.monitoring.export import open_log
from modelmill.monitoring.summary import Summary
from modelmill.monitoring.watch import Reference
from tests.browser import BROWSER, DRAWN, Chromium, live
from tests.conftest import base_config, make_frame
from tests.damage import flip_one_byte, unbuildable
from tests.monitoring.filling import fill_log

START = 1_790_000_000.0
STEP = 60.0  # a record a minute
COLUMNS = ["x", "colour", "flag", "when", "review"]
TOKEN = "dashboard-test-token-0123456789"


def shifted(frame: pd.DataFrame) -> pd.DataFrame:
    """x moved by two standard deviations, most colours green: the drift the page must show."""
    frame = frame.copy()
    frame["x"] = frame["x"] + 2.0
    frame["colour"] = np.where(np.arange(len(frame)) % 10 < 8, "green", frame["colour"])
    return frame


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """models/credit/ with versions 1/ and 2/."""
    root = tmp_path_factory.mktemp("dashboard") / "credit"
    for seed in (1, 2):
        config = base_config(training={"epochs": 2, "batch_size": 64, "progress": False, "seed": seed})
        Pipeline(config).fit(make_frame(rows=300, seed=seed)).save(root / str(seed))
    return root


@pytest.fixture(scope="module")
def log_url(models: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """600 records: 200 served by version 1, 200 by version 2, then 200 shifted ones."""
    url = f"sqlite:///{tmp_path_factory.mktemp('log') / 'log.db'}"
    fill_log(url, models, make_frame(rows=200, seed=5), labels=True, step=STEP, prefix="a", version="1")
    fill_log(url, models, make_frame(rows=200, seed=6), labels=True, step=STEP, prefix="b",
             start=START + 200 * STEP)
    fill_log(url, models, shifted(make_frame(rows=200, seed=7)), labels=True, step=STEP, prefix="c",
             start=START + 400 * STEP)
    return url


@pytest.mark.skipif(BROWSER is None, reason="no chromium on this machine (apt-get install chromium)")
def test_the_page_draws_the_log_and_refreshes(models: Path, log_url: str, tmp_path: Path) -> None:
    copy = tmp_path / "predictions.db"  # a copy this test may add records to
    copy.write_bytes(Path(log_url.removeprefix("sqlite:///")).read_bytes())
    url = f"sqlite:///{copy}"
    store = open_log(url)
    try:  # a retraining decision, as modelmill retrain records it
        store.write_decision({"decided_at": START, "outcome": "refused", "trigger": "drift", "champion": "2",
                              "challenger": None, "reason": "not better on the 120 held-back recent records",
                              "figures": {"recent": {"metric": "roc_auc", "rows": 120, "champion": 0.8,
                                                     "challenger": 0.79, "gain": -0.01, "low": -0.05, "high": 0.03}},
                              "lineage": {}})
    finally:
        store.close()
    with live(build_app(models, url, refresh_s=1.0, window=200)) as base, Chromium() as browser:
        browser.open(f"{base}/")
        assert browser.wait_for("document.body.dataset.state !== 'loading' && document.body.dataset.state") == "ready"
        assert browser.evaluate("document.getElementById('model-name').textContent") == "tiny"
        assert "version 2" in browser.evaluate("document.getElementById('model-version').textContent")
        assert "600 records" in browser.evaluate("document.getElementById('log-info').textContent")
        ranked = browser.evaluate("[...document.querySelectorAll('#drift-table tbody tr')]"
                                  ".map((row) => row.cells[0].textContent)")
        assert ranked[:2] == ["x", "colour"] and set(COLUMNS) <= set(ranked), ranked  # the shifted columns first
        assert browser.evaluate("!document.getElementById('alarm-banner').hidden")
        assert "x: the distribution moved" in browser.evaluate("document.getElementById('alarm-banner').textContent")
        drawn = dict(browser.evaluate(DRAWN))
        assert set(drawn) == {"drift-chart", "performance-chart", "traffic-chart"}
        assert all(count > 2000 for count in drawn.values()), drawn
        versions = browser.evaluate("[...document.querySelectorAll('#versions-table tbody tr')]"
                                    ".map((row) => row.cells[0].textContent)")
        assert versions[0].startswith("2") and versions[1] == "1"
        decision = browser.evaluate("[...document.querySelectorAll('#decisions-table tbody tr')]"
                                    ".map((row) => [...row.cells].map((cell) => cell.textContent))")
        assert len(decision) == 1 and decision[0][1:4] == ["drift", "refused", "2"], decision
        assert decision[0][4] == "roc_auc -0.01 [-0.05, 0.03] on 120"
        assert decision[0][6] == "not better on the 120 held-back recent records"
        assert browser.evaluate("document.getElementById('decisions-empty').hidden")
        shot = browser.screenshot(tmp_path / "dashboard.png")
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

        # New records reach the open page within a refresh interval or two.
        fill_log(url, models, make_frame(rows=200, seed=8), labels=True, step=STEP, prefix="d",
                 start=START + 600 * STEP)
        browser.wait_for("document.getElementById('log-info').textContent.includes('800 records')", timeout=15)
        assert browser.console_errors() == []


def test_the_summary_is_computed_at_most_every_refresh_interval() -> None:
    now = [0.0]
    calls = []

    def compute() -> int:
        calls.append(now[0])
        return len(calls)

    cached = Cached(compute, 60.0, clock=lambda: now[0])

    async def read() -> int | None:
        value, error = await cached.get()
        assert error is None
        return value

    async def scenario() -> list[int | None]:
        first = await asyncio.gather(read(), read(), read())  # viewers at once share one computation
        now[0] = 59.0
        cached_value = await read()
        now[0] = 60.0
        stale = await read()  # answered at once with the last value; the refresh runs behind it
        assert cached._task is not None
        await cached._task
        return [*first, cached_value, stale, await read()]

    assert asyncio.run(scenario()) == [1, 1, 1, 1, 1, 2]
    assert calls == [0.0, 60.0]


def test_an_empty_log_is_a_message_not_an_error(models: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    store = LogStore(url)
    store.open(Reference.load(models).identity)
    store.close()
    with TestClient(build_app(models, url, window=200)) as client:
        page = client.get("/")
        assert page.status_code == 200 and "holds no records (yet)" in page.text
        assert 'data-state="error"' in page.text
        answer = client.get("/api/summary")
        assert answer.status_code == 409 and "holds no records (yet)" in answer.json()["detail"]
        assert [v["version"] for v in client.get("/api/versions").json()] == ["1", "2"]


def test_broken_versions_are_not_shown_healthy(models: Path, tmp_path: Path) -> None:
    """3 fails verification, 2 verifies but cannot be built: both carry their error; 1, the
    version a restarted server would serve, is the first one loaded that works."""
    copy = tmp_path / "credit"
    shutil.copytree(models, copy)
    shutil.copytree(copy / "1", copy / "3")
    flip_one_byte(copy / "3" / "weights.safetensors")
    unbuildable(copy / "2")
    loaded: dict[tuple[str, str], str | None] = {}
    found = {v.version: v.error for v in read_versions(copy, loaded)}
    assert list(found) == ["1", "2", "3"] and found["1"] is None, found
    assert "integrity check failed" in (found["3"] or "")
    assert (found["2"] or "").startswith("version '2' failed to load or warm up: RuntimeError")
    assert "bogus" in (found["2"] or "")
    assert sorted(version for version, _ in loaded) == ["1", "2"]  # each tried once, then remembered
    assert read_versions(copy)[1].error is None  # without the loading: verification only
    with TestClient(build_app(copy, "sqlite://", summarise=lambda: pytest.fail("no summary asked"))) as client:
        answer = client.get("/api/versions").json()
    assert [bool(v["error"]) for v in answer] == [False, True, True]


def test_an_exposed_dashboard_needs_a_token(models: Path, log_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELMILL_DASHBOARD_TOKEN", raising=False)
    with pytest.raises(ServingError, match="needs a token there.*MODELMILL_DASHBOARD_TOKEN"):
        run_dashboard(models, log_url, host="0.0.0.0")  # refused before uvicorn starts
    monkeypatch.setenv("MODELMILL_DASHBOARD_TOKEN", TOKEN)
    assert check_dashboard(models, log_url, host="0.0.0.0").token == TOKEN


def test_wrong_paths_are_refused_before_starting(models: Path, log_url: str, tmp_path: Path) -> None:
    with pytest.raises(ServingError, match="does not exist. Fix: give a bundle"):
        run_dashboard(tmp_path / "nothing", log_url)
    with pytest.raises(ServingError, match=r"--version '7' is not in .* \(versions: 1, 2\)"):
        run_dashboard(models, log_url, version="7")
    with pytest.raises(ServingError):
        run_dashboard(models, f"sqlite:///{tmp_path / 'no-log.db'}")


def test_with_a_token_the_data_needs_it_and_the_first_visit_sets_a_cookie(models: Path, log_url: str) -> None:
    with TestClient(build_app(models, log_url, window=200, token=TOKEN)) as client:
        for path in ("/", "/api/summary", "/api/versions"):
            refused = client.get(path)
            assert refused.status_code == 401 and "missing or wrong token" in refused.json()["detail"], path
            assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
            assert client.get(path, headers={"Cookie": "modelmill_dashboard=wrong"}).status_code == 401
        assert client.get("/api/summary?token=" + TOKEN).status_code == 401  # the URL opens the page only
        assert client.get("/healthz").status_code == 200
        assert client.get("/static/chart.umd.min.js").status_code == 200  # nothing secret in the page's code
        assert client.get("/api/summary", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        first = client.get(f"/?token={TOKEN}", follow_redirects=False)
        assert first.status_code == 303 and first.headers["location"] == "/"  # the token leaves the address bar
        cookie = first.headers["set-cookie"]
        assert "modelmill_dashboard=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
        page = client.get("/")  # the client keeps the cookie, as a browser does
        assert page.status_code == 200 and TOKEN not in page.text
        assert client.get("/api/summary").status_code == 200


def test_on_loopback_only_loopback_names_are_answered(models: Path, log_url: str) -> None:
    """A page elsewhere that points its own domain at 127.0.0.1 (DNS rebinding) gets nothing."""
    app = build_app(models, log_url, window=200, allowed_hosts=["127.0.0.1", "localhost"])
    with TestClient(app, base_url="http://127.0.0.1:8050") as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/healthz", headers={"Host": "attacker.example:8050"}).status_code == 400


def test_the_command_refuses_an_exposed_address_without_a_token(models: Path, log_url: str,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    from modelmill.cli import main

    monkeypatch.delenv("MODELMILL_DASHBOARD_TOKEN", raising=False)
    monkeypatch.setattr(sys, "argv", ["modelmill", "dashboard", "--models", str(models), "--log", log_url,
                                      "--host", "0.0.0.0"])
    with pytest.raises(SystemExit) as exited:
        main()
    text = " ".join(capsys.readouterr().err.split())
    assert exited.value.code == 2 and "needs a token there" in text and "Traceback" not in text


def test_a_database_gone_away_is_a_message_not_a_500(models: Path, log_url: str) -> None:
    from sqlalchemy.exc import OperationalError

    def down() -> Summary:
        raise OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))

    with TestClient(build_app(models, log_url, summarise=down)) as client:
        answer = client.get("/api/summary")
        assert answer.status_code == 409 and "the prediction log cannot be read" in answer.json()["detail"]
        page = client.get("/")
        assert page.status_code == 200 and "cannot be read" in page.text


def test_an_older_version_can_be_the_one_judged_against(models: Path, log_url: str) -> None:
    with TestClient(build_app(models, log_url, window=200, version="1")) as client:
        summary = client.get("/api/summary").json()
    assert summary["model"]["version"] == "1"
    assert summary["windows"][0]["performance"]["rows"] == 200  # the 200 records version 1 served
    assert summary["windows"][-1]["performance"]["rows"] == 0  # none of the shifted ones
