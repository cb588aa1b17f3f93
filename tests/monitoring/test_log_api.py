"""Late labels and the log as a table: ``POST /v1/feedback`` (its own token, one answer per
label), ``modelmill log export`` and ``modelmill log labels`` on a real server's log, and the
optional API key of ``/v1/predict``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from typer.testing import CliRunner

from modelmill.cli import app
from modelmill.monitoring.records import hash_personal, sampled_in
from tests.monitoring.conftest import PII_KEY
from tests.monitoring.service import record
from tests.serving.conftest import live_server

TOKEN = "feedback-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELMILL_PII_KEY", PII_KEY)
    monkeypatch.setenv("MODELMILL_FEEDBACK_TOKEN", TOKEN)


def predict(http: httpx.Client, request_id: str, rows: int = 2) -> dict[str, Any]:
    answer = http.post("/v1/predict", json={"instances": [record(i) for i in range(rows)]},
                       headers={"X-Request-ID": request_id})
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def wait_logged(live: Any, records: int) -> None:
    deadline = time.monotonic() + 20
    while live.state.prediction_log.totals["logged"] + live.state.prediction_log.totals["sampled_out"] < records:
        assert time.monotonic() < deadline, live.state.prediction_log.totals
        time.sleep(0.05)


def test_labels_join_their_predictions_and_are_answered_one_by_one(pii_models: Path, tmp_path: Path,
                                                                    env: None) -> None:
    url = f"sqlite:///{tmp_path / 'monitor.db'}"
    sampled_out = next(f"out{i}" for i in range(1000) if not sampled_in(f"out{i}", 0, 0.5))
    ghost = next(f"ghost{i}" for i in range(1000) if sampled_in(f"ghost{i}", 0, 0.5))  # kept, were it served
    kept = [f"in{i}" for i in range(1000) if sampled_in(f"in{i}", 0, 0.5) and sampled_in(f"in{i}", 1, 0.5)][:2]
    with live_server(pii_models, log={"url": url, "flush_interval_s": 0.05, "sample": 0.5}) as live, \
            httpx.Client(base_url=live.url) as http:
        for request_id in [*kept, sampled_out]:
            predict(http, request_id)
        wait_logged(live, 6)
        labels = [{"request_id": kept[0], "row": 0, "value": "good"},
                  {"request_id": kept[0], "row": 1, "value": "bad"},
                  {"request_id": ghost, "row": 0, "value": "bad"},
                  {"request_id": sampled_out, "row": 0, "value": "good"}]
        answer = http.post("/v1/feedback", json={"labels": labels}, headers=AUTH)
        assert answer.status_code == 200, answer.text
        results = answer.json()["results"]
        assert [r["status"] for r in results] == ["stored", "stored", "unknown", "sampled_out"]
        assert answer.json()["stored"] == 2 and [r["index"] for r in results] == [0, 1, 2, 3]
        # the token is the feedback's own: none, a wrong one, or the admin token → 401
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer test-admin-token"}):
            refused = http.post("/v1/feedback", json={"labels": labels[:1]}, headers=headers)
            assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
        # a label the target cannot take → 422 naming it; nothing stored
        wrong = http.post("/v1/feedback", headers=AUTH, json={"labels": [
            {"request_id": kept[1], "row": 0, "value": "good"}, {"request_id": kept[1], "row": 1, "value": 3.5}]})
        assert wrong.status_code == 422, wrong.text
        detail = wrong.json()["error"]["details"][0]
        assert detail["loc"] == ["labels", 1, "value"] and "classes 'bad', 'good'; got 3.5" in detail["msg"]
        for body in ({"labels": []}, {"labels": [{"row": 0, "value": "good"}]},
                     {"labels": [{"request_id": "a/../b", "row": 0, "value": "good"}]}, {"nope": 1}):
            assert http.post("/v1/feedback", json=body, headers=AUTH).status_code == 422, body
        assert http.post("/v1/feedback", content=b"{not json", headers=AUTH).status_code == 400
        spec = http.get("/openapi.json").json()
        assert "FeedbackRequest" in spec["components"]["schemas"]
        assert "401" in spec["paths"]["/v1/feedback"]["post"]["responses"]
    out = tmp_path / "recent.parquet"
    result = CliRunner().invoke(app, ["log", "export", "--log", url, "-o", str(out)])
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(out)
    assert len(frame) == 4 and set(frame["request_id"]) == set(kept)  # the sampled-out record is not there
    labelled = frame.set_index(["request_id", "row"])["label"]
    assert labelled[(kept[0], 0)] == "good" and labelled[(kept[0], 1)] == "bad" and pd.isna(labelled[(kept[1], 0)])
    assert {"x", "colour", "flag", "when", "review", "label_predicted", "label_probability_good",
            "logged_at", "version", "latency_ms"} <= set(frame.columns)
    assert frame["colour"].tolist()[:2] == ["red", "green"]
    # personal data comes back as it is stored: hashed, the same value the same hash
    assert frame["review"].iloc[0] == hash_personal(PII_KEY.encode(), record(0)["review"])
    only = CliRunner().invoke(app, ["log", "export", "--log", url, "--labelled", "-o", str(tmp_path / "l.csv")])
    assert only.exit_code == 0 and len(pd.read_csv(tmp_path / "l.csv")) == 2, only.output


def test_feedback_is_off_without_its_token_and_without_a_log(pii_models: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELMILL_PII_KEY", PII_KEY)
    monkeypatch.delenv("MODELMILL_FEEDBACK_TOKEN", raising=False)
    body = {"labels": [{"request_id": "a", "row": 0, "value": "good"}]}
    with live_server(pii_models, log={"url": f"sqlite:///{tmp_path / 'm.db'}"}) as live:
        answer = httpx.post(f"{live.url}/v1/feedback", json=body, headers=AUTH)
    assert answer.status_code == 403 and "MODELMILL_FEEDBACK_TOKEN" in answer.json()["error"]["message"]
    monkeypatch.setenv("MODELMILL_FEEDBACK_TOKEN", TOKEN)
    with live_server(pii_models) as live:
        answer = httpx.post(f"{live.url}/v1/feedback", json=body, headers=AUTH)
    assert answer.status_code == 409 and "--log" in answer.json()["error"]["message"]


def test_labels_by_record_key_and_from_a_file(pii_models: Path, tmp_path: Path, env: None) -> None:
    url = f"sqlite:///{tmp_path / 'monitor.db'}"
    settings = {"url": url, "flush_interval_s": 0.05, "key_column": "review"}  # a personal column: hashed
    with live_server(pii_models, log=settings) as live, httpx.Client(base_url=live.url) as http:
        first = predict(http, "first", rows=3)["request_id"]
        predict(http, "second", rows=1)
        wait_logged(live, 4)
        by_key = http.post("/v1/feedback", headers=AUTH, json={"labels": [
            {"key": record(1)["review"], "value": "bad"}, {"key": "nobody@example.org", "value": "bad"}]})
        assert by_key.status_code == 200, by_key.text
        assert [(r["status"], r.get("records")) for r in by_key.json()["results"]] == [("stored", 1), ("unknown", None)]
    table = tmp_path / "labels.csv"
    pd.DataFrame({"request_id": [first, first, "ghost"], "row": [0, 2, 0], "label": ["good", "good", "bad"]}
                 ).to_csv(table, index=False)
    result = CliRunner().invoke(app, ["log", "labels", str(table), "--log", url])
    assert result.exit_code == 0, result.output
    assert "2 labels stored, 1 unknown" in " ".join(result.output.split())
    keyed = tmp_path / "keyed.csv"
    pd.DataFrame({"review": [record(0)["review"]], "label": ["bad"]}).to_csv(keyed, index=False)
    result = CliRunner().invoke(app, ["log", "labels", str(keyed), "--log", url, "--key", "review"])
    assert result.exit_code == 0 and "1 labels stored" in result.output, result.output
    assert CliRunner().invoke(app, ["log", "export", "--log", url, "-o", str(tmp_path / "x.parquet")]).exit_code == 0
    frame = pd.read_parquet(tmp_path / "x.parquet")
    labels = frame.set_index(["request_id", "row"])["label"].to_dict()
    # row 0 of "first": labelled good by id, then bad by key (record(0) is its review): the later wins
    assert labels[(first, 0)] == "bad" and labels[(first, 1)] == "bad" and labels[(first, 2)] == "good"
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"request_id": [first], "row": [0], "label": ["maybe"]}).to_csv(bad, index=False)
    refused = CliRunner().invoke(app, ["log", "labels", str(bad), "--log", url])
    assert refused.exit_code != 0 and "classes 'bad', 'good'; got 'maybe'" in str(refused.exception)


def test_export_mistakes_are_clear(tmp_path: Path) -> None:
    missing = CliRunner().invoke(app, ["log", "export", "--log", f"sqlite:///{tmp_path / 'no.db'}", "-o",
                                       str(tmp_path / "x.parquet")])
    assert "no prediction log at" in str(missing.exception) and not (tmp_path / "no.db").exists()
    for args, expected in ((["-o", str(tmp_path / "x.xlsx")], "neither .parquet nor .csv"),
                           (["-o", str(tmp_path / "x.csv"), "--since", "yesterday"], "is not a date")):
        result = CliRunner().invoke(app, ["log", "export", "--log", f"sqlite:///{tmp_path / 'no.db'}", *args])
        assert expected in str(result.exception), result.output


def test_an_api_key_guards_predict_when_set(pii_models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELMILL_API_KEYS", "key-one, key-two")
    with live_server(pii_models) as live, httpx.Client(base_url=live.url) as http:
        body = {"instances": [record(0)]}
        assert http.post("/v1/predict", json=body).status_code == 401
        assert http.post("/v1/predict", json=body, headers={"Authorization": "Bearer nope"}).status_code == 401
        assert http.post("/v1/predict", json=body, headers={"Authorization": "Bearer key-two"}).status_code == 200
        assert http.get("/healthz").status_code == 200


def test_a_version_with_other_inputs_is_not_served_into_the_same_log(pii_models: Path, tmp_path: Path, env: None,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from modelmill.api import Pipeline
    from tests.conftest import base_config, make_frame
    from tests.serving.conftest import TOKEN as ADMIN

    models = tmp_path / "models"
    shutil.copytree(pii_models, models)
    config = base_config(training={"epochs": 1, "batch_size": 64, "progress": False})
    config["features"] = [f for f in config["features"] if f["name"] != "review"]
    Pipeline(config).fit(make_frame(rows=200, seed=3)).save(models / "2")
    monkeypatch.setenv("MODELMILL_ADMIN_TOKEN", ADMIN)
    # version 2 is the newest: start on version 1 by hiding 2, then bring it back and reload
    hidden = tmp_path / "hidden"
    (models / "2").rename(hidden)
    with live_server(models, log={"url": f"sqlite:///{tmp_path / 'monitor.db'}"}) as live, \
            httpx.Client(base_url=live.url) as http:
        hidden.rename(models / "2")
        answer = http.post("/v1/admin/reload", json={"version": "2"}, headers={"Authorization": f"Bearer {ADMIN}"})
        assert answer.status_code == 409 and answer.json()["error"]["code"] == "log_mismatch", answer.text
        assert "input 'review' is in the store but not in the served model" in answer.json()["error"]["message"]
        assert http.get("/v1/model").json()["version"] == "1"


def test_the_python_client_sends_labels_for_the_ids_it_was_answered(pii_models: Path, tmp_path: Path, env: None,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from modelmill import Client

    monkeypatch.setenv("MODELMILL_API_KEYS", "client-key")
    with live_server(pii_models, log={"url": f"sqlite:///{tmp_path / 'm.db'}", "flush_interval_s": 0.05}) as live:
        with Client(live.url, api_key="client-key", feedback_token=TOKEN) as client:
            predicted = client.predict(pd.DataFrame([record(i) for i in range(3)]), ids=True)
            assert list(predicted["row"]) == [0, 1, 2] and predicted["request_id"].nunique() == 1
            wait_logged(live, 3)
            labels = predicted[["request_id", "row"]].assign(value=["good", "bad", "good"])
            results = client.feedback(labels)
        with Client(live.url) as anonymous:  # no API key: refused
            with pytest.raises(Exception, match="401"):
                anonymous.predict([record(0)])
    assert list(results["status"]) == ["stored"] * 3
