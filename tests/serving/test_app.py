"""The REST endpoints and their answers to bad input, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import http.client as httplib
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from tests.serving.conftest import LiveServer, live_server, record


@pytest.fixture(scope="module")
def served(runtime_versions: tuple[Path, str]) -> Iterator[LiveServer]:
    """The service on each runtime: the torch bundles, and their exported ONNX graphs."""
    root, runtime = runtime_versions
    with live_server(root, runtime=runtime) as live:
        assert live.state.current.predictor.runtime.name == runtime
        yield live


@pytest.fixture
def http(served: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, timeout=30) as client:
        yield client


def assert_no_leak(response: httpx.Response) -> None:
    """No stack trace and no file path in any answer (RELIABILITY.md, rule 19)."""
    text = response.text
    assert "Traceback" not in text and "/tmp" not in text and "site-packages" not in text, text


def test_predict_one_and_many_records(http: httpx.Client) -> None:
    one = http.post("/v1/predict", json={"instances": [record()]})
    assert one.status_code == 200, one.text
    body = one.json()
    assert body["model"] == "tiny" and body["version"] == "2"  # the newest version
    assert body["request_id"] == one.headers["x-request-id"]
    prediction = body["predictions"][0]
    assert prediction["label_predicted"] in ("good", "bad")
    assert prediction["label_probability_good"] + prediction["label_probability_bad"] == pytest.approx(1, abs=1e-5)
    many = http.post("/v1/predict", json={"instances": [record(x=v) for v in (-2.0, 0.0, 2.0)]})
    assert [p["label_predicted"] for p in many.json()["predictions"]] == ["bad", "bad", "good"] or \
        len(many.json()["predictions"]) == 3


def test_served_predictions_equal_the_pipelines(http: httpx.Client, trained_versions: Path) -> None:
    """Same fitted state in training and serving: the service answers what Pipeline.predict does."""
    import pandas as pd

    import modelmill

    records = [record(x=v, colour=c, flag=f) for v, c, f in
               [(-1.2, "blue", "no"), (0.3, "red", "yes"), (2.5, "green", None), (None, None, "no")]]
    served = http.post("/v1/predict", json={"instances": records}).json()["predictions"]
    local = modelmill.load(trained_versions / "2").predict(pd.DataFrame(records))
    for row, expected in zip(served, local.to_dict(orient="records")):
        assert row["label_predicted"] == expected["label_predicted"]
        assert row["label_probability_good"] == pytest.approx(expected["label_probability_good"], abs=1e-6)


def test_request_id_is_echoed_when_safe(http: httpx.Client) -> None:
    given = http.post("/v1/predict", json={"instances": [record()]}, headers={"X-Request-ID": "order-42"})
    assert given.json()["request_id"] == "order-42" == given.headers["x-request-id"]
    unsafe = http.get("/healthz", headers={"X-Request-ID": "../../etc/passwd"})
    assert unsafe.headers["x-request-id"] != "../../etc/passwd" and len(unsafe.headers["x-request-id"]) == 32


@pytest.mark.parametrize(("body", "status", "where"), [
    (b'{"instances": [', 400, None),
    (b"not json at all", 400, None),
    (b"[" * 100_000 + b"]" * 100_000, 400, None),
    (b'{"instances": [' + b"[" * 5000 + b"]" * 5000 + b"]}", 400, None),
])
def test_malformed_bodies_get_4xx(http: httpx.Client, body: bytes, status: int, where: object) -> None:
    response = http.post("/v1/predict", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] in ("invalid_json", "too_large")
    assert_no_leak(response)


@pytest.mark.parametrize(("instance", "loc", "fragment"), [
    (record(x="forty"), ["instances", 0, "x"], "valid number"),
    (record(x=True), ["instances", 0, "x"], "valid number"),
    ({k: v for k, v in record().items() if k != "colour"}, ["instances", 0, "colour"], "required"),
    (record(shoe_size=44), ["instances", 0, "shoe_size"], "Extra inputs"),
    (record(colour="redd"), ["instances", 0, "colour"], "did you mean 'red'"),
    (record(flag="maybe"), ["instances", 0, "flag"], "known: 'no', 'yes'"),
    (record(review="x" * 200_000), ["instances", 0, "review"], "at most"),
    (record(x={"deep": [1, 2]}), ["instances", 0, "x"], "valid number"),
])
def test_invalid_records_get_422_with_the_field_path(http: httpx.Client, instance: dict[str, object],
                                                      loc: list[object], fragment: str) -> None:
    response = http.post("/v1/predict", json={"instances": [record(), instance]})
    assert response.status_code == 422, response.text
    details = response.json()["error"]["details"]
    expected = [loc[0], 1, *loc[2:]]
    matching = [d for d in details if d["loc"] == expected]
    assert matching and fragment in matching[0]["msg"], details
    assert_no_leak(response)


def test_nan_and_infinity_are_rejected(http: httpx.Client) -> None:
    for literal in (b"NaN", b"Infinity", b"-Infinity"):
        body = json.dumps({"instances": [record()]}).encode().replace(b'"x": 0.5', b'"x": ' + literal)
        response = http.post("/v1/predict", content=body)
        assert response.status_code == 422, (literal, response.text)
        assert response.json()["error"]["details"][0]["loc"] == ["instances", 0, "x"]


def test_empty_missing_and_too_many_instances(http: httpx.Client) -> None:
    assert http.post("/v1/predict", json={"instances": []}).status_code == 422
    assert http.post("/v1/predict", json={"records": [record()]}).status_code == 422
    assert http.post("/v1/predict", json=[record()]).status_code == 422
    too_many = http.post("/v1/predict", json={"instances": [record()] * 1001})
    assert too_many.status_code == 422 and too_many.json()["error"]["details"][0]["type"] == "too_long"


def test_nulls_are_missing_values_filled_like_in_training(http: httpx.Client) -> None:
    empty = {k: None for k in record()}
    response = http.post("/v1/predict", json={"instances": [empty]})
    assert response.status_code == 200, response.text


def test_with_unknown_categories_accepted_nulls_and_new_values_are_taken(trained_versions: Path) -> None:
    from modelmill.bundle import read_bundle
    from modelmill.predictor import Predictor
    from modelmill.serving.schema import build_contract

    bundle = read_bundle(trained_versions / "1")
    contract = build_contract(Predictor.from_bundle(bundle).features, bundle.profile(), max_records=10,
                              unknown_categories="accept")
    body = {"instances": [record(colour=None), record(colour="purple"), {k: None for k in record()}]}
    instances = contract.adapter.validate_json(json.dumps(body))["instances"]
    assert [i["colour"] for i in instances] == [None, "purple", None]
    with pytest.raises(ValueError, match="at most 1024 characters"):
        contract.adapter.validate_python({"instances": [record(colour="x" * 1025)]})


def test_a_million_element_list_gets_4xx(http: httpx.Client) -> None:
    """2 MB of zeros fits the body limit: the list length check answers (one error, not 10^6)."""
    zeros = http.post("/v1/predict", content=b'{"instances": [' + b"0," * 999_999 + b"0]}")
    assert zeros.status_code == 422
    assert zeros.json()["error"]["details"] == [
        {"loc": ["instances"], "msg": "List should have at most 1000 items after validation, not 1000000",
         "type": "too_long"}]
    floats = http.post("/v1/predict", content=b'{"instances": [' + b"0.25," * 999_999 + b"0]}")
    assert floats.status_code == 413 and "limit" in floats.json()["error"]["message"]


def test_body_over_the_limit_without_content_length_gets_413(served: LiveServer) -> None:
    """Chunked transfer: no Content-Length, so the limit applies while reading."""
    url = urlparse(served.url)
    connection = httplib.HTTPConnection(url.hostname, url.port, timeout=30)

    def chunks() -> Iterator[bytes]:
        yield b'{"instances": ['
        for _ in range(3000):
            yield b'{"x": 1.0, "colour": "red", "flag": "yes", "when": null, "review": "' + b"a" * 1000 + b'"},'
        yield b"{}]}"

    connection.request("POST", "/v1/predict", body=chunks(), encode_chunked=True,
                       headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
    response = connection.getresponse()
    assert response.status == 413
    assert json.loads(response.read())["error"]["code"] == "too_large"
    connection.close()


def test_content_length_over_the_limit_is_refused_at_once(served: LiveServer) -> None:
    """The header alone decides: the server answers without waiting for the 3 MiB it announced."""
    url = urlparse(served.url)
    connection = httplib.HTTPConnection(url.hostname, url.port, timeout=10)
    connection.putrequest("POST", "/v1/predict")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", str(3 * 1024 * 1024))
    connection.endheaders()
    connection.send(b'{"instances": [')  # and never the rest
    response = connection.getresponse()
    assert response.status == 413
    connection.close()


def test_model_metadata(http: httpx.Client) -> None:
    info = http.get("/v1/model").json()
    assert info["name"] == "tiny" and info["version"] == "2" and info["versions"] == ["1", "2"]
    assert {c["name"] for c in info["inputs"]} == {"x", "colour", "flag", "when", "review"}
    colour = next(c for c in info["inputs"] if c["name"] == "colour")
    assert sorted(colour["values"]) == ["blue", "green", "red"]
    assert "roc_auc" in json.dumps(info["metrics"])
    assert info["limits"]["max_records"] == 1000


def test_openapi_request_schema_is_the_models_input_schema(http: httpx.Client) -> None:
    document = http.get("/openapi.json").json()
    record_schema = document["components"]["schemas"]["Record"]
    assert set(record_schema["required"]) == {"x", "colour", "flag", "when", "review"}
    assert record_schema["additionalProperties"] is False
    colour = record_schema["properties"]["colour"]["anyOf"][0]
    assert colour["type"] == "string" and sorted(colour["enum"]) == ["blue", "green", "red"]
    assert record_schema["properties"]["x"]["anyOf"][0]["type"] == "number"
    body = document["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/PredictRequest"}
    # the example in the docs is itself a valid request
    assert http.post("/v1/predict", json=body["example"]).status_code == 200
    assert http.get("/docs").status_code == 200


def test_probes_and_metrics(http: httpx.Client, served: LiveServer) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}
    ready = http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["version"] == "2"
    http.post("/v1/predict", json={"instances": [record(), record()]})
    http.post("/v1/predict", content=b"{")
    metrics = http.get("/metrics").text
    assert 'modelmill_requests_total{route="/v1/predict",status="200"}' in metrics
    assert 'modelmill_requests_total{route="/v1/predict",status="400"}' in metrics
    for name in ("modelmill_request_seconds_bucket", "modelmill_batch_records_bucket", "modelmill_queue_depth",
                 'modelmill_model_info{name="tiny",version="2"} 1.0', "modelmill_ready 1.0"):
        assert name in metrics


def test_unknown_routes_and_methods_answer_in_the_error_shape(http: httpx.Client) -> None:
    missing = http.get("/v1/nothing")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong = http.get("/v1/predict")
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"
    assert 'route="other",status="404"' in http.get("/metrics").text


def test_readiness_flips_to_503_when_draining(trained_versions: Path) -> None:
    with live_server(trained_versions) as live, httpx.Client(base_url=live.url) as http:
        assert http.get("/readyz").status_code == 200
        live.state.begin_drain()
        draining = http.get("/readyz")
        assert draining.status_code == 503 and draining.json() == {"status": "draining"}
        assert draining.headers["retry-after"] == "1"
        # requests already arriving are still answered while draining
        assert http.post("/v1/predict", json={"instances": [record()]}).status_code == 200
        assert http.get("/healthz").status_code == 200
