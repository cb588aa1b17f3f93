"""``POST /v1/forecast`` of a `task: forecast` bundle, over real HTTP on 127.0.0.1: the same
forecasts as the predictor, the history or a kept series, and a 4xx in the one error shape for
every bad input (never a 5xx); the shared machinery (limits, probes, metrics, model info,
OpenAPI, versions) and the options a forecast refuses."""

from __future__ import annotations

import http.client as httplib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pandas as pd
import pytest

from modelmill.bundle import read_bundle
from modelmill.errors import ServingError
from modelmill.forecasting.predictor import ForecastPredictor
from modelmill.serving.server import load_state
from tests.serving.conftest import TOKEN, LiveServer, free_port, live_server
from tests.serving.forecast_bundles import (  # noqa: F401  (fixtures)
    FIRST_STEP, HORIZON, forecast_versions, future_records, history_records, monthly_bundle, shop_frame)
from tests.serving.test_process import _start, _wait_ready

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def served(forecast_versions: Path) -> Iterator[LiveServer]:
    with live_server(forecast_versions) as live:
        yield live


@pytest.fixture
def http(served: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, timeout=30) as client:
        yield client


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    """The error of an answer that must be ``status``, in the shared shape, with no trace or path."""
    assert response.status_code == status, response.text
    assert "Traceback" not in response.text and "/tmp" not in response.text, response.text
    body = response.json()
    assert set(body) == {"error", "request_id"} and body["request_id"] == response.headers["x-request-id"]
    error: dict[str, Any] = body["error"]
    return error


def local_forecast(bundle: Path, frame: pd.DataFrame | None, series: list[str] | None) -> list[dict[str, Any]]:
    predictor = ForecastPredictor.from_bundle(read_bundle(bundle))
    out = predictor.forecast(frame, series=series)
    return out.assign(date=out["date"].dt.strftime("%Y-%m-%d")).to_dict(orient="records")  # type: ignore[no-any-return]


def assert_same(served: list[dict[str, Any]], local: list[dict[str, Any]]) -> None:
    assert [(f["store"], f["date"]) for f in served] == [(f["store"], f["date"]) for f in local]
    for got, expected in zip(served, local, strict=True):
        for key in ("forecast", "lower", "upper"):
            assert got[key] == pytest.approx(expected[key], rel=1e-12), (got, expected)


# ------------------------------------------------------------------- answers


def test_a_kept_series_is_forecast_as_the_predictor_does(http: httpx.Client, forecast_versions: Path) -> None:
    response = http.post("/v1/forecast", json={"series": ["A"], "future": future_records("A")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "shops" and body["version"] == "2" and body["interval"] == 0.8
    assert body["request_id"] == response.headers["x-request-id"]
    forecasts = body["forecasts"]
    assert len(forecasts) == HORIZON and set(forecasts[0]) == {"store", "date", "forecast", "lower", "upper"}
    assert [f["date"] for f in forecasts] == [d.date().isoformat() for d in pd.date_range(FIRST_STEP, periods=7)]
    assert all(f["lower"] < f["forecast"] < f["upper"] for f in forecasts)
    future = pd.DataFrame(future_records("A")).assign(size=float("nan"))
    assert_same(forecasts, local_forecast(forecast_versions / "2", future, ["A"]))


def test_sent_history_is_forecast_and_kept_series_beside_it(http: httpx.Client, forecast_versions: Path) -> None:
    """A new store's history, a known store's newer history and a kept series in one request."""
    history = history_records("C", days=21, offset=5.0) + history_records("B", days=14)
    last = {"C": "2024-02-29", "B": "2024-02-29"}
    future = future_records("C") + future_records("B") + future_records("A")
    response = http.post("/v1/forecast", json={"history": history, "series": ["A"], "future": future})
    assert response.status_code == 200, response.text
    forecasts = response.json()["forecasts"]
    assert {f["store"] for f in forecasts} == {"A", "B", "C"} and len(forecasts) == 3 * HORIZON
    assert min(f["date"] for f in forecasts) > max(last.values())
    frame = pd.concat([pd.DataFrame(history), pd.DataFrame(future).assign(sales=float("nan"), size=float("nan"))])
    local = local_forecast(forecast_versions / "2", frame.reset_index(drop=True), ["A"])
    key = lambda f: (f["store"], f["date"])  # noqa: E731
    assert_same(sorted(forecasts, key=key), sorted(local, key=key))
    # the forecast follows the sent history, not the kept one: C's level is 5 higher than A's
    c_level = sum(f["forecast"] for f in forecasts if f["store"] == "C") / HORIZON
    a_level = sum(f["forecast"] for f in forecasts if f["store"] == "A") / HORIZON
    assert c_level > a_level + 3


def test_integer_series_ids_are_read_as_their_digits(forecast_versions: Path, tmp_path: Path) -> None:
    from tests.serving.forecast_bundles import fit_bundle, shop_config

    frame = shop_frame(stores=("1", "2"))
    frame["store"] = frame["store"].astype(int)
    bundle = fit_bundle(shop_config(), frame, tmp_path / "bundle")
    with live_server(bundle) as live, httpx.Client(base_url=live.url) as http:
        future = [{**r, "store": 2} for r in future_records("2")]
        response = http.post("/v1/forecast", json={"series": [2], "future": future})
        assert response.status_code == 200, response.text
        assert {f["store"] for f in response.json()["forecasts"]} == {"2"}


def test_one_series_without_an_id_column(monthly_bundle: Path) -> None:
    with live_server(monthly_bundle) as live, httpx.Client(base_url=live.url) as http:
        kept = http.post("/v1/forecast", json={})
        assert kept.status_code == 200, kept.text
        forecasts = kept.json()["forecasts"]
        assert [f["month"] for f in forecasts] == [f"2023-{m:02d}-01" for m in range(1, 7)]
        assert set(forecasts[0]) == {"month", "forecast", "lower", "upper"}
        history = [{"month": f"2021-{m:02d}", "visitors": 50.0 + m} for m in range(1, 13)] + \
                  [{"month": f"2022-{m:02d}", "visitors": 60.0 + m} for m in range(1, 13)]
        sent = http.post("/v1/forecast", json={"history": history})
        assert sent.status_code == 200, sent.text
        assert [f["forecast"] for f in sent.json()["forecasts"]] == [61.0, 62.0, 63.0, 64.0, 65.0, 66.0]
        assert sent.json()["forecasts"][0]["month"] == "2023-01-01"
        future = error_of(http.post("/v1/forecast", json={"future": []}), 422)  # no future covariates here
        assert future["details"][0]["loc"] == ["future"] and "Extra inputs" in future["details"][0]["msg"]


# ------------------------------------------------------------------- bad input


def test_missing_future_covariates_name_the_column_series_and_steps(http: httpx.Client) -> None:
    error = error_of(http.post("/v1/forecast", json={"series": ["A"], "future": future_records("A", steps=5)}), 422)
    assert error["code"] == "invalid_series"
    message = error["message"]
    assert "'price'" in message and "series 'A'" in message and "2024-03-06" in message, message
    assert "Fix:" in message
    nothing = error_of(http.post("/v1/forecast", json={"series": ["A"]}), 422)
    assert "'price'" in nothing["message"] and "7 forecast step(s)" in nothing["message"], nothing


def test_a_null_or_text_covariate_gets_422_with_its_path(http: httpx.Client) -> None:
    future = future_records("A")
    future[3]["price"] = None
    error = error_of(http.post("/v1/forecast", json={"series": ["A"], "future": future}), 422)
    assert error["details"][0]["loc"] == ["future", 3, "price"], error
    future[3]["price"] = "cheap"
    assert error_of(http.post("/v1/forecast", json={"series": ["A"], "future": future}), 422)["details"][0]["loc"] \
        == ["future", 3, "price"]


def test_duplicate_timestamps_name_both_records(http: httpx.Client) -> None:
    history = history_records("C", days=14)
    history[9]["date"] = history[8]["date"]
    error = error_of(http.post("/v1/forecast", json={"history": history, "future": future_records("C")}), 422)
    assert "share a time step" in error["message"] and "'date'" in error["message"], error
    assert [d["loc"] for d in error["details"]] == [["history", 8, "date"], ["history", 9, "date"]], error
    assert "history[8], history[9]" in error["message"]


def test_irregular_timestamps_name_the_record(http: httpx.Client) -> None:
    history = history_records("C", days=14)
    del history[5]  # a missing day
    error = error_of(http.post("/v1/forecast", json={"history": history, "future": future_records("C")}), 422)
    assert "not regular" in error["message"] and "history[5]" in error["message"], error
    assert error["details"][0]["loc"] == ["history", 5, "date"]


def test_bad_times_name_the_record(http: httpx.Client) -> None:
    history = history_records("C", days=14)
    history[2]["date"] = "the day after"
    error = error_of(http.post("/v1/forecast", json={"history": history, "future": future_records("C")}), 422)
    assert "not times" in error["message"] and error["details"][0]["loc"] == ["history", 2, "date"], error
    history[2]["date"] = 20240103
    assert error_of(http.post("/v1/forecast", json={"history": history}), 422)["details"][0]["loc"] == \
        ["history", 2, "date"]


@pytest.mark.parametrize("value", ["12.5", True, None, {"x": 1}])
def test_a_target_that_is_no_number_gets_422_with_its_path(http: httpx.Client, value: object) -> None:
    history = history_records("C", days=14)
    history[4]["sales"] = value
    error = error_of(http.post("/v1/forecast", json={"history": history, "future": future_records("C")}), 422)
    assert error["code"] == "invalid_request" and error["details"][0]["loc"] == ["history", 4, "sales"], error


def test_nan_and_infinity_are_rejected(http: httpx.Client) -> None:
    history = history_records("C", days=14)
    for literal in (b"NaN", b"Infinity", b"-Infinity"):
        body = json.dumps({"history": history}).encode().replace(b'"sales": ' + str(history[0]["sales"]).encode(),
                                                                 b'"sales": ' + literal, 1)
        error = error_of(http.post("/v1/forecast", content=body), 422)
        assert error["details"][0]["loc"] == ["history", 0, "sales"], (literal, error)


def test_an_unknown_series_gets_422_naming_the_kept_ones(http: httpx.Client) -> None:
    error = error_of(http.post("/v1/forecast", json={"series": ["A1"], "future": future_records("A1")}), 422)
    detail = next(d for d in error["details"] if d["loc"] == ["series", 0])
    assert "unknown series 'A1' (did you mean 'A'?)" in detail["msg"] and "'B'" in detail["msg"], detail
    # future covariates of a series neither sent nor kept
    only_future = error_of(http.post("/v1/forecast", json={"series": ["A"],
                                                           "future": future_records("A") + future_records("Z")}), 422)
    assert "unknown series 'Z'" in only_future["message"], only_future


def test_a_series_named_twice_gets_422(http: httpx.Client) -> None:
    error = error_of(http.post("/v1/forecast", json={"series": ["A", "A"], "future": future_records("A")}), 422)
    assert error["details"][0]["loc"] == ["series"] and "named twice" in error["details"][0]["msg"]


def test_too_little_history_gets_422(http: httpx.Client) -> None:
    error = error_of(http.post("/v1/forecast", json={"history": history_records("C", days=3),
                                                     "future": future_records("C")}), 422)
    assert "fewer steps than the model reads (7)" in error["message"] and "'C'" in error["message"], error


def test_future_rows_inside_the_history_get_422(http: httpx.Client) -> None:
    history = history_records("C", days=14)
    future = [{"store": "C", "date": history[3]["date"], "price": 1.0}] + future_records("C")
    error = error_of(http.post("/v1/forecast", json={"history": history, "future": future}), 422)
    assert "share a time step" in error["message"] and ["future", 0, "date"] in [d["loc"] for d in error["details"]]


@pytest.mark.parametrize(("body", "where"), [
    ({}, []),
    ({"history": []}, ["history"]),
    ({"series": []}, ["series"]),
    ({"series": ["A"], "future": future_records("A"), "horizon": 3}, ["horizon"]),
    ({"instances": [{"store": "A"}]}, ["instances"]),
    ({"history": [{"store": "A", "date": "2024-03-01", "sales": 1.0}]}, ["history", 0, "price"]),
    ({"history": [{**history_records("C", 1)[0], "colour": "red"}]}, ["history", 0, "colour"]),
    ({"series": ["A"], "future": [{"store": "A", "date": "2024-03-01", "price": 1.0, "sales": 3.0}]},
     ["future", 0, "sales"]),
    ({"series": ["x" * 300]}, ["series", 0]),
])
def test_bodies_that_do_not_match_the_schema_get_422(http: httpx.Client, body: object, where: list[object]) -> None:
    error = error_of(http.post("/v1/forecast", json=body), 422)
    assert where in [d["loc"] for d in error["details"]], error


@pytest.mark.parametrize("body", [b'{"series": [', b"not json", b"[" * 100_000 + b"]" * 100_000, b""])
def test_malformed_json_gets_400(http: httpx.Client, body: bytes) -> None:
    error = error_of(http.post("/v1/forecast", content=body, headers={"content-type": "application/json"}), 400)
    assert error["code"] == "invalid_json"


def test_json_that_is_no_object_gets_422(http: httpx.Client) -> None:
    assert error_of(http.post("/v1/forecast", json=["A"]), 422)["code"] == "invalid_request"


# ------------------------------------------------------------------- limits


def test_records_over_max_records_get_422(forecast_versions: Path) -> None:
    with live_server(forecast_versions, max_records=20) as live, httpx.Client(base_url=live.url) as http:
        history = history_records("C", days=14)
        total = error_of(http.post("/v1/forecast", json={"history": history, "future": future_records("C")}), 422)
        assert "21 records (history and future together); the limit is 20" in total["details"][0]["msg"], total
        long = error_of(http.post("/v1/forecast", json={"history": history_records("C", days=21)}), 422)
        assert long["details"][0]["loc"] == ["history"] and long["details"][0]["type"] == "too_long"
        within = http.post("/v1/forecast", json={"history": history[1:], "future": future_records("C")})
        assert within.status_code == 200, within.text  # 20 records: the limit
        assert http.get("/v1/model").json()["limits"]["max_records"] == 20


def test_a_horizon_past_max_records_refuses_to_start(forecast_versions: Path) -> None:
    with pytest.raises(ServingError, match="max_records is 5.*horizon \\(7\\).*--max-records 7"):
        load_state(forecast_versions / "1", {"port": 0, "max_records": 5})


def test_bodies_over_max_body_bytes_get_413(forecast_versions: Path) -> None:
    with live_server(forecast_versions, max_body_bytes=4096) as live, httpx.Client(base_url=live.url) as http:
        big = {"history": history_records("C", days=60), "future": future_records("C")}
        error = error_of(http.post("/v1/forecast", json=big), 413)
        assert error["code"] == "too_large" and "4096" in error["message"]
        url = urlparse(live.url)  # chunked: no Content-Length, the limit applies while reading
        connection = httplib.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)
        record = b'{"store": "C", "date": "2024-01-01", "sales": 1},'
        chunks = (b'{"history": [' if i == 0 else record for i in range(200))
        connection.request("POST", "/v1/forecast", body=chunks, encode_chunked=True,
                           headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
        response = connection.getresponse()
        assert response.status == 413 and json.loads(response.read())["error"]["code"] == "too_large"
        connection.close()


def test_a_forecast_past_the_timeout_gets_504(forecast_versions: Path) -> None:
    with live_server(forecast_versions, timeout_s=0.001) as live, httpx.Client(base_url=live.url) as http:
        body = {"history": history_records("C", days=30), "future": future_records("C")}
        error = error_of(http.post("/v1/forecast", json=body), 504)
        assert error["code"] == "timeout" and "forecasts were not ready within 0.001 s" in error["message"]
        assert http.get("/readyz").status_code == 200  # the server goes on


def test_forecasts_past_the_queue_get_503_at_once(forecast_versions: Path) -> None:
    """One forecast runs at a time; with serving.queue_size 1, those that find it busy are refused."""
    body = {"history": history_records("C", days=60), "future": future_records("C")}
    with live_server(forecast_versions, queue_size=1) as live:
        def post(_: int) -> int:
            with httpx.Client(base_url=live.url, timeout=60) as http:
                return http.post("/v1/forecast", json=body).status_code

        with ThreadPoolExecutor(max_workers=12) as pool:
            codes = list(pool.map(post, range(24)))
    assert set(codes) == {200, 503} and codes.count(200) >= 1, codes


def test_an_api_key_is_needed_when_keys_are_set(forecast_versions: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELMILL_API_KEYS", "key-1,key-2")
    with live_server(forecast_versions) as live, httpx.Client(base_url=live.url) as http:
        body = {"series": ["B"], "future": future_records("B")}
        assert error_of(http.post("/v1/forecast", json=body), 401)["code"] == "unauthorized"
        assert http.post("/v1/forecast", json=body, headers={"Authorization": "Bearer key-2"}).status_code == 200


# ------------------------------------------------------------ shared machinery


def test_model_info_probes_and_metrics(http: httpx.Client) -> None:
    info = http.get("/v1/model").json()
    assert info["name"] == "shops" and info["version"] == "2" and info["task"] == "forecast"
    assert info["versions"] == ["1", "2"] and info["model_type"] == "seasonal_naive"
    assert info["inputs"] == [{"name": "date", "role": "time"}, {"name": "store", "role": "id"},
                              {"name": "sales", "role": "target"}, {"name": "price", "role": "future"},
                              {"name": "size", "role": "static"}]
    assert info["series"]["horizon"] == HORIZON and info["series"]["frequency"] == "D"
    assert info["series"]["needed_history"] == 7 and info["series"]["kept_steps"] == 30
    assert info["kept_series"] == {"count": 2, "ids": ["A", "B"]} and info["interval"] == 0.8
    assert "mase" in info["metrics"] and set(info["limits"]) == {"max_records", "max_body_bytes", "timeout_s",
                                                                 "queue_size"}
    assert info["shadow"] is None
    assert http.get("/healthz").json() == {"status": "ok"}
    assert http.get("/readyz").json() == {"status": "ready", "model": "shops", "version": "2"}
    http.post("/v1/forecast", json=info["example"])
    http.post("/v1/forecast", content=b"{")
    metrics = http.get("/metrics").text
    assert 'modelmill_requests_total{route="/v1/forecast",status="200"}' in metrics
    assert 'modelmill_requests_total{route="/v1/forecast",status="400"}' in metrics
    assert 'modelmill_model_info{name="shops",version="2"} 1.0' in metrics


def test_predict_routes_are_not_served_and_say_where_to_go(http: httpx.Client) -> None:
    error = error_of(http.post("/v1/predict", json={"instances": [{}]}), 404)
    assert "POST /v1/forecast" in error["message"]
    for path in ("/v1/explain", "/v1/feedback", "/v1/admin/shadow"):
        assert http.post(path, json={}).status_code == 404


def test_openapi_describes_the_forecast_in_the_bundles_columns(http: httpx.Client) -> None:
    document = http.get("/openapi.json").json()
    assert set(document["paths"]) == {"/v1/forecast", "/v1/model", "/healthz", "/readyz", "/metrics",
                                      "/v1/admin/reload", "/v1/admin/rollback"}
    schemas = document["components"]["schemas"]
    history = schemas["HistoryRecord"]
    assert set(history["required"]) == {"date", "store", "sales", "price", "size"}
    assert history["additionalProperties"] is False
    assert set(schemas["FutureRecord"]["required"]) == {"date", "store", "price"}
    request = schemas["ForecastRequest"]
    assert set(request["properties"]) == {"history", "series", "future"}
    assert request["properties"]["series"]["items"]["enum"] == ["A", "B"]
    forecast = schemas["ForecastResponse"]["properties"]["forecasts"]["items"]
    assert forecast["required"] == ["store", "date", "forecast", "lower", "upper"]
    operation = document["paths"]["/v1/forecast"]["post"]
    assert {"400", "413", "422", "503", "504"} <= set(operation["responses"])
    example = operation["requestBody"]["content"]["application/json"]["example"]
    assert example["series"] == ["A"] and len(example["future"]) == HORIZON
    assert http.post("/v1/forecast", json=example).status_code == 200  # the docs' example is a valid request
    assert http.get("/docs").status_code == 200


def test_reload_and_rollback_between_forecast_versions(forecast_versions: Path, admin_token: str) -> None:
    body = {"series": ["A"], "future": future_records("A")}
    with live_server(forecast_versions) as live, httpx.Client(base_url=live.url, headers=AUTH) as http:
        newest = http.post("/v1/forecast", json=body).json()
        assert http.post("/v1/admin/rollback").json()["version"] == "1"
        older = http.post("/v1/forecast", json=body).json()
        assert older["version"] == "1"
        # version 2 was fitted on sales one higher: its forecasts are one higher too
        assert [n["forecast"] - o["forecast"] for n, o in zip(newest["forecasts"], older["forecasts"])] == \
            pytest.approx([1.0] * HORIZON)
        assert http.post("/v1/admin/reload").json()["version"] == "2"


def test_a_version_of_another_task_is_refused_on_reload(forecast_versions: Path, trained_versions: Path,
                                                        tmp_path: Path, admin_token: str) -> None:
    root = tmp_path / "models"
    shutil.copytree(forecast_versions, root)
    with live_server(root) as live, httpx.Client(base_url=live.url, headers=AUTH) as http:
        shutil.copytree(trained_versions / "1", root / "3")  # a `task: predict` bundle
        error = error_of(http.post("/v1/admin/reload"), 409)
        assert error["code"] == "wrong_task" and "task: predict" in error["message"], error
        info = http.get("/v1/model").json()
        assert info["version"] == "2" and info["broken_versions"] == []
        assert http.post("/v1/forecast", json={"series": ["A"], "future": future_records("A")}).status_code == 200


def test_the_prediction_log_and_shadow_mode_are_refused(forecast_versions: Path, tmp_path: Path) -> None:
    for overrides, named in (({"log": {"url": f"sqlite:///{tmp_path / 'log.db'}"}}, "serving.log.url (--log)"),
                             ({"shadow": "challenger"}, "serving.shadow (--shadow)")):
        with pytest.raises(ServingError, match="without the prediction log") as caught:
            load_state(forecast_versions, {"port": 0, **overrides})
        assert named in str(caught.value)
    process = subprocess.run([sys.executable, "-m", "modelmill.cli", "serve", str(forecast_versions), "--port", "0",
                              "--log", f"sqlite:///{tmp_path / 'log.db'}"], capture_output=True, text=True, timeout=120)
    assert process.returncode == 2, process.stderr
    message = " ".join(process.stderr.split())
    assert "Traceback" not in message and "a `task: forecast` model is served without the prediction log" in message
    assert not (tmp_path / "log.db").exists()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_modelmill_serve_with_two_workers_follows_a_reload_and_stops_cleanly(forecast_versions: Path) -> None:
    """The real command: worker processes, an admin reload that both follow, SIGTERM → exit 0."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    os.environ["MODELMILL_ADMIN_TOKEN"] = TOKEN
    try:
        process = _start(forecast_versions, port, "--workers", "2", "--grace", "10")
    finally:
        del os.environ["MODELMILL_ADMIN_TOKEN"]
    try:
        _wait_ready(process, url)
        time.sleep(2)  # both workers up
        body = {"series": ["B"], "future": future_records("B")}
        with httpx.Client(base_url=url, timeout=30) as http:
            assert http.post("/v1/forecast", json=body).json()["version"] == "2"
            assert http.post("/v1/admin/reload", json={"version": "1"}, headers=AUTH).status_code == 200
        time.sleep(3)  # the other worker follows within a second or so
        answered = set()
        for _ in range(20):  # new connections spread over the workers
            with httpx.Client(base_url=url, timeout=30) as fresh:
                answered.add(fresh.post("/v1/forecast", json=body).json()["version"])
        assert answered == {"1"}
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()


def test_ray_serve_refuses_a_forecast_before_any_cluster(forecast_versions: Path) -> None:
    from modelmill.serving.ray_engine import serve_replicas

    with pytest.raises(ServingError, match="--engine ray serves `task: predict` models.*--engine uvicorn"):
        serve_replicas(forecast_versions, {}, replicas=1)


def test_serving_a_forecast_imports_no_plots_no_report_and_no_database(forecast_versions: Path) -> None:
    kept_out = ["matplotlib", "sqlalchemy", "modelmill.monitoring", "modelmill.evaluation",
                "modelmill.forecasting.pipeline", "modelmill.forecasting.backtest", "modelmill.forecasting.plots"]
    probe = (
        "import json, sys\n"
        "from modelmill.serving.app import create_app\n"
        "from modelmill.serving.server import load_state\n"
        "state = load_state(sys.argv[1], {'port': 0})\n"
        "create_app(state)\n"
        "print(json.dumps([m for m in json.loads(sys.argv[2]) if m in sys.modules]))\n")
    done = subprocess.run([sys.executable, "-c", probe, str(forecast_versions), json.dumps(kept_out)],
                          capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [], done.stderr[-2000:]


def test_the_client_forecasts_from_frames(served: LiveServer) -> None:
    from modelmill.serving import Client

    history = pd.DataFrame(history_records("C", days=21)).assign(date=lambda f: pd.to_datetime(f["date"]))
    future = pd.DataFrame(future_records("C") + future_records("A"))
    with Client(served.url) as client:
        forecasts = client.forecast(history, series=["A"], future=future)
    assert list(forecasts.columns) == ["store", "date", "forecast", "lower", "upper"]
    assert len(forecasts) == 2 * HORIZON and set(forecasts["store"]) == {"A", "C"}
    assert forecasts["date"].min() == pd.Timestamp(FIRST_STEP)
